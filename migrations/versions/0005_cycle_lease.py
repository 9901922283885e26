"""cycle lease: one unfinished cycle run per bot, across processes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 23:30:00

A partial unique index on cyclerun(bot_id) WHERE finished_at IS NULL makes the run row the
bot's cycle lease: a second process starting a cycle for the same bot (the server's
schedule and `autotrain cycle --full`, two workers) is refused instead of interleaving.
Runs left unfinished by a crash before this revision are closed first, marked abandoned.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("UPDATE cyclerun SET finished_at = started_at WHERE finished_at IS NULL")
    with op.batch_alter_table('cyclerun', schema=None) as batch_op:
        batch_op.create_index('ux_cyclerun_running', ['bot_id'], unique=True,
                              sqlite_where=sa.text('finished_at IS NULL'),
                              postgresql_where=sa.text('finished_at IS NULL'))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('cyclerun', schema=None) as batch_op:
        batch_op.drop_index('ux_cyclerun_running',
                            sqlite_where=sa.text('finished_at IS NULL'),
                            postgresql_where=sa.text('finished_at IS NULL'))
