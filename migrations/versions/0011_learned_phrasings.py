"""learned phrasings: questions the agents answered, recognised as an entry's or as nobody's

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 16:45:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'learnedphrasing',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bot_id', S(length=32), nullable=False),
        sa.Column('entry_id', S(length=32), nullable=True),
        sa.Column('text', S(), nullable=False),
        sa.Column('text_key', S(length=40), nullable=False),
        sa.Column('conversation_id', S(length=32), nullable=True),
        sa.Column('reply_embedding', sa.LargeBinary(), nullable=True),
        sa.Column('learned_at', T(), nullable=False),
        sa.Column('blocked_at', T(), nullable=True),
        sa.ForeignKeyConstraint(['bot_id'], ['bot.id'], ),
        sa.ForeignKeyConstraint(['entry_id'], ['kbentry.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('bot_id', 'entry_id', 'text_key'),
    )
    with op.batch_alter_table('learnedphrasing') as batch:
        batch.create_index(batch.f('ix_learnedphrasing_bot_id'), ['bot_id'], unique=False)
        batch.create_index(batch.f('ix_learnedphrasing_entry_id'), ['entry_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('learnedphrasing') as batch:
        batch.drop_index(batch.f('ix_learnedphrasing_entry_id'))
        batch.drop_index(batch.f('ix_learnedphrasing_bot_id'))
    op.drop_table('learnedphrasing')
