"""gap lifecycle: a published gap is watched until its questions stop failing

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 20:00:00

Gaps gain `published_at` (when a suggestion for it was approved) and `last_failure_at` (the
newest failure that joined it). Gaps an approval had marked "resolved" become "published",
watched from their last update; their newest failure is backfilled from their evidence.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('gap', schema=None) as batch_op:
        batch_op.add_column(sa.Column('published_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('last_failure_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                      nullable=True))
    op.execute("UPDATE gap SET last_failure_at = (SELECT MAX(gapevidence.at) FROM gapevidence "
               "WHERE gapevidence.gap_id = gap.id)")
    op.execute("UPDATE gap SET status = 'published', published_at = updated_at "
               "WHERE status = 'resolved'")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("UPDATE gap SET status = 'resolved' WHERE status = 'published'")
    with op.batch_alter_table('gap', schema=None) as batch_op:
        batch_op.drop_column('last_failure_at')
        batch_op.drop_column('published_at')
