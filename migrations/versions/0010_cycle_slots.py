"""cycle slots: each bot's scheduled cycles recorded in SQL, claimed once across workers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 16:10:00

A slot row is written before its job is queued, so a job Redis lost is swept from here and
queued again; a worker claims a slot with one conditional UPDATE (due → running), so two
workers given the same slot run one cycle.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'cycleslot',
        sa.Column('bot_id', S(length=32), nullable=False),
        sa.Column('slot', S(length=32), nullable=False),
        sa.Column('state', S(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', S(length=500), nullable=True),
        sa.ForeignKeyConstraint(['bot_id'], ['bot.id']),
        sa.PrimaryKeyConstraint('bot_id', 'slot'),
    )
    op.create_index('ix_cycleslot_state', 'cycleslot', ['state', 'bot_id'], unique=False)
    op.create_index(op.f('ix_cycleslot_slot'), 'cycleslot', ['slot'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_cycleslot_slot'), table_name='cycleslot')
    op.drop_index('ix_cycleslot_state', table_name='cycleslot')
    op.drop_table('cycleslot')
