"""conversation answers: the entries the bot answered with, and whether each satisfied

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 20:30:00

One row per (conversation, entry the bot answered with), written at ingestion, so an
entry's satisfaction over 30 days (improve_answer priorities) is one grouped query instead
of a read of every transcript. Existing conversations are backfilled from their stored
transcripts with the rule of core.metrics.answer_satisfied (copied here so this revision
keeps meaning what it meant when later code changes).
"""
from typing import Any, Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CHUNK = 2_000


def _outcomes(messages: list[dict[str, Any]], feedback: list[dict[str, Any]],
              resolved: bool) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for m in messages:
        entry_id = m.get("entry_id")
        if m.get("role") != "bot" or not entry_id or entry_id in out:
            continue
        ratings = {str(f["rating"]) for f in feedback
                   if 0 <= int(f["message_index"]) < len(messages)
                   and messages[int(f["message_index"])].get("entry_id") == entry_id}
        out[entry_id] = "down" not in ratings and ("up" in ratings or bool(resolved))
    return out


def upgrade() -> None:
    """Upgrade schema."""
    answers = op.create_table('conversationanswer',
    sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('entry_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('bot_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('satisfied', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversation.id'], ),
    sa.PrimaryKeyConstraint('conversation_id', 'entry_id')
    )
    with op.batch_alter_table('conversationanswer', schema=None) as batch_op:
        batch_op.create_index('ix_conversationanswer_bot_started', ['bot_id', 'started_at'],
                              unique=False)

    conversation = sa.table(
        'conversation', sa.column('id', sa.String()), sa.column('bot_id', sa.String()),
        sa.column('started_at', sqlmodel.sql.sqltypes.UTCDateTime()),
        sa.column('messages', sa.JSON()), sa.column('feedback', sa.JSON()),
        sa.column('resolved_automatically', sa.Boolean()))
    bind = op.get_bind()
    last = ''
    while True:
        rows = bind.execute(
            sa.select(conversation.c.id, conversation.c.bot_id, conversation.c.started_at,
                      conversation.c.messages, conversation.c.feedback,
                      conversation.c.resolved_automatically)
            .where(conversation.c.id > last).order_by(conversation.c.id).limit(CHUNK)).all()
        if not rows:
            break
        batch = [{"conversation_id": cid, "entry_id": entry_id, "bot_id": bot_id,
                  "started_at": started_at, "satisfied": ok}
                 for cid, bot_id, started_at, messages, feedback, resolved in rows
                 for entry_id, ok in _outcomes(messages or [], feedback or [],
                                               resolved).items()]
        if batch:
            bind.execute(sa.insert(answers), batch)
        last = rows[-1][0]


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('conversationanswer', schema=None) as batch_op:
        batch_op.drop_index('ix_conversationanswer_bot_started')
    op.drop_table('conversationanswer')
