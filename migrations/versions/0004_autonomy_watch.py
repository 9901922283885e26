"""autonomy: notifications, watches on published changes, admin-set categories

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 23:00:00

Adds `notification` (what the reviewers must be told: auto-published changes, rollbacks,
deferred suggestions back in the queue), `entrywatch` (a published change watched for a drop
in satisfaction) and `suggestion.category_source` ("auto" or "admin"). New bot settings take their
defaults when read (core.bots.BotSettings), so stored settings need no rewrite.
"""
import json
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


NEW_SETTINGS = ("custom_categories", "training_excluded_categories",
                "moderate_auto_publish_above", "advanced_auto_publish_above", "watch_days",
                "watch_min_answers", "watch_max_drop")


def _drop_new_settings() -> None:
    """The older code refuses unknown settings keys: take this revision's keys out."""
    bot = sa.table('bot', sa.column('id', sa.String()), sa.column('settings', sa.JSON()))
    bind = op.get_bind()
    for bot_id, stored in bind.execute(sa.select(bot.c.id, bot.c.settings)).all():
        data = stored if isinstance(stored, dict) else json.loads(stored or "{}")
        kept = {k: v for k, v in data.items() if k not in NEW_SETTINGS}
        if kept != data:
            bind.execute(sa.update(bot).where(bot.c.id == bot_id).values(settings=kept))


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('notification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bot_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('suggestion_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('entry_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('delivered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['bot_id'], ['bot.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_bot_at', ['bot_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_delivered_at'), ['delivered_at'],
                              unique=False)

    op.create_table('entrywatch',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('bot_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('entry_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('suggestion_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('from_version', sa.Integer(), nullable=True),
    sa.Column('to_version', sa.Integer(), nullable=False),
    sa.Column('auto', sa.Boolean(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('ends_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('baseline_answered', sa.Integer(), nullable=False),
    sa.Column('baseline_satisfied', sa.Integer(), nullable=False),
    sa.Column('baseline_negative', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('checked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['bot_id'], ['bot.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('entrywatch', schema=None) as batch_op:
        batch_op.create_index('ix_entrywatch_bot_status', ['bot_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_entrywatch_entry_id'), ['entry_id'], unique=False)

    with op.batch_alter_table('suggestion', schema=None) as batch_op:
        batch_op.add_column(sa.Column('category_source',
                                      sqlmodel.sql.sqltypes.AutoString(length=16),
                                      nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    _drop_new_settings()
    with op.batch_alter_table('suggestion', schema=None) as batch_op:
        batch_op.drop_column('category_source')
    with op.batch_alter_table('entrywatch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entrywatch_entry_id'))
        batch_op.drop_index('ix_entrywatch_bot_status')
    op.drop_table('entrywatch')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_delivered_at'))
        batch_op.drop_index('ix_notification_bot_at')
    op.drop_table('notification')
