"""posted cards and digests: a suggestion's message on a review channel, digests sent

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:45:00

One row per suggestion and channel (a Slack message: channel id and ts), so a card is never
posted twice and a decision taken on another channel updates the card it left behind; one
row per scheduled digest and period, so each is sent once whichever process sends it.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'postedcard',
        sa.Column('suggestion_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('bot_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('message', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('shown_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('posted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['bot_id'], ['bot.id'], ),
        sa.ForeignKeyConstraint(['suggestion_id'], ['suggestion.id'], ),
        sa.PrimaryKeyConstraint('suggestion_id', 'channel'),
    )
    with op.batch_alter_table('postedcard', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_postedcard_bot_id'), ['bot_id'], unique=False)
    op.create_table(
        'digestsent',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bot_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['bot_id'], ['bot.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('bot_id', 'channel', 'period'),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('digestsent')
    with op.batch_alter_table('postedcard', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_postedcard_bot_id'))
    op.drop_table('postedcard')
