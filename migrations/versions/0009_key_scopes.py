"""key scopes: a per-bot API key reaches chatbot, reviewer or admin routes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:00:00

Keys that exist already keep what they could do (every route of their bot): they become
`admin`. New keys are `chatbot` unless asked otherwise; the README says to reissue the key a
chatbot holds with that scope.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('apikey') as batch:
        batch.add_column(sa.Column('scope', S(length=16), nullable=False,
                                   server_default='admin'))
    # The server default only fills the rows there were; the model sets every new row's.
    with op.batch_alter_table('apikey') as batch:
        batch.alter_column('scope', server_default=None)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('apikey') as batch:
        batch.drop_column('scope')
