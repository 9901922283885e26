"""announcements delivered per channel

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:30:00

`notification.delivered_at` (one delivery for all channels: once Slack showed an
announcement, email never would) becomes a `notificationdelivery` row per announcement and
channel. Until now only the email digest (the demo's .eml file) delivered announcements, so
existing deliveries are kept as email ones.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'notificationdelivery',
        sa.Column('notification_id', sa.Integer(), nullable=False),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('delivered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['notification_id'], ['notification.id'], ),
        sa.PrimaryKeyConstraint('notification_id', 'channel'),
    )
    op.execute("INSERT INTO notificationdelivery (notification_id, channel, delivered_at) "
               "SELECT id, 'email', delivered_at FROM notification "
               "WHERE delivered_at IS NOT NULL")
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_delivered_at'))
        batch_op.drop_column('delivered_at')


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivered_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                      nullable=True))
        batch_op.create_index(batch_op.f('ix_notification_delivered_at'), ['delivered_at'],
                              unique=False)
    op.execute("UPDATE notification SET delivered_at = (SELECT min(d.delivered_at) FROM "
               "notificationdelivery d WHERE d.notification_id = notification.id)")
    op.drop_table('notificationdelivery')
