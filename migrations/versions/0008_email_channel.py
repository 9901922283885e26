"""email channel: digests as numbered, reply keys, inbound mail, notices, links, outgoing mail

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:00:00

A digest keeps the numbers its items carried so a reply means what the manager read; each
recipient's reply key is stored hashed; every inbound message is recorded by Message-ID so it
is processed once; refusal notices are kept to one per address, kind and day; a one-click
link's token is spent once; every outgoing message is recorded before it is sent, so a failed
send is retried rather than lost.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'maildigest',
        sa.Column('id', S(length=32), nullable=False),
        sa.Column('bot_id', S(length=32), nullable=False),
        sa.Column('period', S(length=32), nullable=True),
        sa.Column('items', sa.JSON(), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.ForeignKeyConstraint(['bot_id'], ['bot.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('maildigest', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maildigest_bot_id'), ['bot_id'], unique=False)
    op.create_table(
        'replykey',
        sa.Column('key_hash', S(length=64), nullable=False),
        sa.Column('digest_id', S(length=32), nullable=False),
        sa.Column('bot_id', S(length=32), nullable=False),
        sa.Column('recipient', S(length=320), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('expires_at', T(), nullable=False),
        sa.ForeignKeyConstraint(['bot_id'], ['bot.id'], ),
        sa.ForeignKeyConstraint(['digest_id'], ['maildigest.id'], ),
        sa.PrimaryKeyConstraint('key_hash'),
    )
    with op.batch_alter_table('replykey', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replykey_digest_id'), ['digest_id'], unique=False)
    op.create_table(
        'inboundmail',
        sa.Column('id_hash', S(length=64), nullable=False),
        sa.Column('message_id', S(length=255), nullable=False),
        sa.Column('source', S(length=16), nullable=False),
        sa.Column('bot_id', S(length=32), nullable=True),
        sa.Column('outcome', S(length=32), nullable=False),
        sa.Column('detail', S(length=500), nullable=True),
        sa.Column('received_at', T(), nullable=False),
        sa.PrimaryKeyConstraint('id_hash'),
    )
    with op.batch_alter_table('inboundmail', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inboundmail_bot_id'), ['bot_id'], unique=False)
    op.create_table(
        'mailnotice',
        sa.Column('address', S(length=320), nullable=False),
        sa.Column('kind', S(length=32), nullable=False),
        sa.Column('day', S(length=10), nullable=False),
        sa.Column('sent_at', T(), nullable=False),
        sa.PrimaryKeyConstraint('address', 'kind', 'day'),
    )
    op.create_table(
        'linkuse',
        sa.Column('token_id', S(length=64), nullable=False),
        sa.Column('recipient', S(length=320), nullable=False),
        sa.Column('action', S(length=16), nullable=False),
        sa.Column('used_at', T(), nullable=False),
        sa.PrimaryKeyConstraint('token_id'),
    )
    op.create_table(
        'outgoingmail',
        sa.Column('id', S(length=32), nullable=False),
        sa.Column('bot_id', S(length=32), nullable=True),
        sa.Column('recipient', S(length=320), nullable=False),
        sa.Column('purpose', S(length=32), nullable=False),
        sa.Column('subject', S(length=500), nullable=False),
        sa.Column('message_id', S(length=255), nullable=False),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', T(), nullable=False),
        sa.Column('last_error', S(length=500), nullable=True),
        sa.Column('sent_at', T(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('outgoingmail', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outgoingmail_bot_id'), ['bot_id'], unique=False)
        batch_op.create_index('ix_outgoingmail_due', ['sent_at', 'next_attempt_at'],
                              unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('outgoingmail', schema=None) as batch_op:
        batch_op.drop_index('ix_outgoingmail_due')
        batch_op.drop_index(batch_op.f('ix_outgoingmail_bot_id'))
    op.drop_table('outgoingmail')
    op.drop_table('linkuse')
    op.drop_table('mailnotice')
    with op.batch_alter_table('inboundmail', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inboundmail_bot_id'))
    op.drop_table('inboundmail')
    with op.batch_alter_table('replykey', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replykey_digest_id'))
    op.drop_table('replykey')
    with op.batch_alter_table('maildigest', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_maildigest_bot_id'))
    op.drop_table('maildigest')
