"""SQL tables: the source of truth for bots, keys, the knowledge base, conversations and reviews."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from core.status import GapStatus, SuggestionStatus, WatchStatus

# None: ids are random (uuid4). A simulation (core.replay) seeds them, so that every order
# that falls back on ids, and so the whole run, repeats exactly for the same seed.
_seeded_ids: random.Random | None = None


def new_id() -> str:
    if _seeded_ids is None:
        return uuid.uuid4().hex
    return uuid.UUID(int=_seeded_ids.getrandbits(128), version=4).hex


@contextmanager
def seeded_ids(seed: int) -> Iterator[None]:
    """Within the block, ids come from a generator seeded with `seed` (simulations only:
    seeded ids are guessable)."""
    global _seeded_ids
    previous, _seeded_ids = _seeded_ids, random.Random(f"ids:{seed}")
    try:
        yield
    finally:
        _seeded_ids = previous


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Bot(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    slug: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """An API key, stored as a SHA-256 hash. bot_id None means the admin key."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str | None = Field(default=None, foreign_key="bot.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    key_hash: str = Field(index=True, unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    # core.bots.KeyScope: chatbot | reviewer | admin (the admin key: admin).
    scope: str = Field(default="chatbot", max_length=16)


class KBEntry(SQLModel, table=True):
    """The current version of a knowledge-base entry."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str = Field(foreign_key="bot.id", index=True, max_length=32)
    question: str
    answer: str
    variants: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    category: str | None = Field(default=None, max_length=100)
    active: bool = True
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class KBEntryVersion(SQLModel, table=True):
    """Every version an entry ever had, kept for history and revert."""

    __table_args__ = (UniqueConstraint("entry_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: str = Field(foreign_key="kbentry.id", index=True, max_length=32)
    version: int
    question: str
    answer: str
    variants: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    category: str | None = Field(default=None, max_length=100)
    active: bool = True
    changed_by: str = Field(max_length=200)
    changed_at: datetime = Field(default_factory=utcnow)
    reason: str | None = None
    suggestion_id: str | None = Field(default=None, max_length=32)


class IndexOutbox(SQLModel, table=True):
    """An entry whose phrasings must be (re)synced to the vector index.

    Written in the same transaction as the entry change, so Chroma converges even if it was
    down when the change was made: the relay reads the entry's current state and upserts it.
    """

    id: int | None = Field(default=None, primary_key=True)
    bot_id: str = Field(max_length=32)
    entry_id: str = Field(max_length=32, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    last_error: str | None = None


class LearnedPhrasing(SQLModel, table=True):
    """A customer's question a human agent answered (core.learning): with an entry's answer,
    the bot learns to recognise it as that entry's; with something no entry says (`entry_id`
    None), it learns that such questions are nobody's. It serves recognition only — it is not
    a KB trigger, and a reviewer who rejects it for an entry blocks it for good."""

    __table_args__ = (UniqueConstraint("bot_id", "entry_id", "text_key"),)

    id: int | None = Field(default=None, primary_key=True)
    bot_id: str = Field(foreign_key="bot.id", index=True, max_length=32)
    entry_id: str | None = Field(default=None, foreign_key="kbentry.id", index=True,
                                 max_length=32)
    text: str
    # The phrasing's index id digest: one row per way of asking, whatever its case or spaces.
    text_key: str = Field(max_length=40)
    conversation_id: str | None = Field(default=None, max_length=32)
    # The agent's reply (its distinctive part), kept for "nobody" rows: once an entry says
    # what it says, the question becomes that entry's.
    reply_embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    learned_at: datetime = Field(default_factory=utcnow)
    # Set when a reviewer rejected these questions for this entry: never served nor relearned.
    blocked_at: datetime | None = None


class Conversation(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("bot_id", "external_id"),
        Index("ix_conversation_bot_started", "bot_id", "started_at"),
        Index("ix_conversation_bot_pending", "bot_id", "analyzed_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str = Field(foreign_key="bot.id", max_length=32)
    external_id: str = Field(max_length=200)
    started_at: datetime
    ended_at: datetime
    messages: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    feedback: list[dict[str, Any]] = Field(default_factory=list,
                                           sa_column=Column(JSON, nullable=False))
    csat: int | None = None
    channel: str | None = Field(default=None, max_length=100)
    received_at: datetime = Field(default_factory=utcnow)
    # Outcome flags, derived from the transcript at ingestion (core.pipeline.signals.detect),
    # so metrics are one query instead of a re-read of every transcript.
    bot_answered: bool = False
    escalated: bool = False
    negative_feedback: bool = False
    abandoned: bool = False
    resolved_automatically: bool = False
    resolution_seconds: float | None = None
    # None until a cycle has looked at this transcript; re-sending it resets this.
    analyzed_at: datetime | None = None


class ConversationAnswer(SQLModel, table=True):
    """A KB entry the bot answered with in a conversation, and whether that answer satisfied
    the customer (core.metrics.answer_outcomes), written at ingestion: an entry's
    satisfaction is then one grouped query instead of a read of every transcript."""

    __table_args__ = (Index("ix_conversationanswer_bot_started", "bot_id", "started_at"),)

    conversation_id: str = Field(foreign_key="conversation.id", primary_key=True,
                                 max_length=32)
    entry_id: str = Field(primary_key=True, max_length=64)
    bot_id: str = Field(max_length=32)
    started_at: datetime
    satisfied: bool


class Gap(SQLModel, table=True):
    """A group of related failures that one suggestion should fix."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str = Field(foreign_key="bot.id", index=True, max_length=32)
    kind: str = Field(max_length=32)
    status: str = Field(default=GapStatus.open, max_length=16, index=True)
    entry_id: str | None = Field(default=None, max_length=32)
    centroid: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    reply_centroid: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    size: int = 0
    replies: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Lifecycle (docs/signals.md): open → published (a suggestion approved; still watched) →
    # closed once no failure joined it for core.cycle.QUIET_DAYS; or rejected (frozen).
    published_at: datetime | None = None
    last_failure_at: datetime | None = None  # the newest failure that joined it


class GapEvidence(SQLModel, table=True):
    """One failed customer question attached to a gap, with the agent's reply if any."""

    __table_args__ = (Index("ix_gapevidence_gap", "gap_id"),)

    id: int | None = Field(default=None, primary_key=True)
    gap_id: str = Field(foreign_key="gap.id", max_length=32)
    conversation_id: str = Field(max_length=32, index=True)
    question: str
    agent_reply: str | None = None
    signal: str = Field(max_length=32)
    at: datetime
    bot_entry_id: str | None = Field(default=None, max_length=64)
    embedding: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    reply_embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary))


class Suggestion(SQLModel, table=True):
    __table_args__ = (Index("ix_suggestion_bot_status", "bot_id", "status"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str = Field(foreign_key="bot.id", max_length=32)
    gap_id: str | None = Field(default=None, foreign_key="gap.id", max_length=32)
    kind: str = Field(max_length=32)
    priority: str = Field(max_length=16)
    score: float = 0.0
    confidence: int = 0
    question: str
    answer: str
    variants: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    entry_id: str | None = Field(default=None, max_length=32)
    category: str | None = Field(default=None, max_length=100)
    # "auto" (the cycle's classifier) or "admin" (corrected by a person; the cycle keeps it).
    category_source: str | None = Field(default=None, max_length=16)
    warning: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=SuggestionStatus.pending, max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    decided_by: str | None = Field(default=None, max_length=200)
    decided_channel: str | None = Field(default=None, max_length=16)
    defer_until: datetime | None = None
    reject_reason: str | None = None


class AuditEvent(SQLModel, table=True):
    __table_args__ = (Index("ix_audit_bot_at", "bot_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    bot_id: str = Field(foreign_key="bot.id", max_length=32)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=200)
    channel: str = Field(max_length=16)
    action: str = Field(max_length=64)
    entry_id: str | None = Field(default=None, max_length=32, index=True)
    suggestion_id: str | None = Field(default=None, max_length=32)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class CycleRun(SQLModel, table=True):
    """One cycle of one bot. While it runs (`finished_at` NULL) it is also the bot's cycle
    lease: the partial unique index lets only one run per bot be unfinished, whichever
    process starts it (core.cycle)."""

    __table_args__ = (Index("ux_cyclerun_running", "bot_id", unique=True,
                            sqlite_where=text("finished_at IS NULL"),
                            postgresql_where=text("finished_at IS NULL")),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str = Field(foreign_key="bot.id", index=True, max_length=32)
    as_of: datetime
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CycleSlot(SQLModel, table=True):
    """One scheduled cycle of one bot (its period's start, "2026-12-02T16:00Z"), recorded
    before it is queued: a slot Redis lost is found here and queued again, and claiming it
    (due → running, one conditional UPDATE) lets only one worker run it (core.cycle.slots)."""

    __table_args__ = (Index("ix_cycleslot_state", "state", "bot_id"),)

    bot_id: str = Field(foreign_key="bot.id", primary_key=True, max_length=32)
    slot: str = Field(primary_key=True, max_length=32, index=True)
    # due → running → done | failed (a permanent error) | skipped (a newer slot of the bot
    # covers it: a cycle reads everything not yet analysed, so running both is wasted work)
    state: str = Field(default="due", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    error: str | None = Field(default=None, max_length=500)


class Notification(SQLModel, table=True):
    """Something the reviewers must be told (auto-published, rolled back, a deferred suggestion
    back in the queue, ...), written in the same transaction as the change it announces; each
    review channel (Slack, email) delivers it once (NotificationDelivery)."""

    __table_args__ = (Index("ix_notification_bot_at", "bot_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    bot_id: str = Field(foreign_key="bot.id", max_length=32)
    kind: str = Field(max_length=32)
    text: str
    suggestion_id: str | None = Field(default=None, max_length=32)
    entry_id: str | None = Field(default=None, max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class NotificationDelivery(SQLModel, table=True):
    """One announcement delivered on one review channel: Slack showing it does not stop the
    next email digest from carrying it. The primary key makes a second delivery on the same
    channel (a job run twice) a no-op."""

    notification_id: int = Field(foreign_key="notification.id", primary_key=True)
    channel: str = Field(primary_key=True, max_length=16)
    delivered_at: datetime = Field(default_factory=utcnow)


class PostedCard(SQLModel, table=True):
    """A suggestion's card as posted on a review channel (a Slack message: `address` is the
    channel id, `ref` its ts). The primary key keeps a card from being posted twice; the
    status it shows lets a decision taken elsewhere (API, email) update it."""

    suggestion_id: str = Field(foreign_key="suggestion.id", primary_key=True, max_length=32)
    channel: str = Field(primary_key=True, max_length=16)
    bot_id: str = Field(foreign_key="bot.id", max_length=32, index=True)
    address: str = Field(max_length=64)
    ref: str = Field(max_length=64)
    # "card": a message of its own; "digest": one of the cards of a digest message (several
    # rows share its ref, and an update re-renders the whole digest).
    message: str = Field(default="card", max_length=16)
    shown_status: str = Field(max_length=16)
    posted_at: datetime = Field(default_factory=utcnow)


class DigestSent(SQLModel, table=True):
    """A scheduled digest sent on a channel for one period ("2026-12-01" daily, "2026-W49"
    weekly, in the bot's timezone): the unique key lets one process send each digest once."""

    __table_args__ = (UniqueConstraint("bot_id", "channel", "period"),)

    id: int | None = Field(default=None, primary_key=True)
    bot_id: str = Field(foreign_key="bot.id", max_length=32)
    channel: str = Field(max_length=16)
    period: str = Field(max_length=32)
    sent_at: datetime = Field(default_factory=utcnow)


class EntryWatch(SQLModel, table=True):
    """A published change under watch (core.policy.watch): how the entry fared before it, and
    what the watch concluded."""

    __table_args__ = (Index("ix_entrywatch_bot_status", "bot_id", "status"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str = Field(foreign_key="bot.id", max_length=32)
    entry_id: str = Field(max_length=32, index=True)
    suggestion_id: str | None = Field(default=None, max_length=32)
    # The version before the change (None: the change created the entry) and after it.
    from_version: int | None = None
    to_version: int
    auto: bool = False  # published by autonomy, not by a person
    started_at: datetime
    ends_at: datetime
    # The entry's record over the 30 days before the change (0 answered: no baseline).
    baseline_answered: int = 0
    baseline_satisfied: int = 0
    baseline_negative: int = 0
    # watching → passed (the window ended without a drop) | alerted (a rollback suggestion
    # was raised) | rolled_back (deactivated or reverted automatically) | superseded (a newer
    # change to the entry is watched instead)
    status: str = Field(default=WatchStatus.watching, max_length=16)
    checked_at: datetime | None = None
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class MailDigest(SQLModel, table=True):
    """An email digest as sent: the numbers its items carry, so a reply's "approve 3" or
    "undo 7" means what the manager read, whatever changed in the queue since."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str = Field(foreign_key="bot.id", max_length=32, index=True)
    # The schedule's period ("2026-W49"), or None for one sent on demand.
    period: str | None = Field(default=None, max_length=32)
    # [{"n": 1, "suggestion_id": "…"}, {"n": 7, "announcement_id": 12}, …]
    items: list[dict[str, Any]] = Field(default_factory=list,
                                        sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class ReplyKey(SQLModel, table=True):
    """The key in one recipient's Reply-To address for one digest, stored as a SHA-256 hash:
    a reply is acted on only from that recipient, for that bot and digest, until it expires."""

    key_hash: str = Field(primary_key=True, max_length=64)
    digest_id: str = Field(foreign_key="maildigest.id", max_length=32, index=True)
    bot_id: str = Field(foreign_key="bot.id", max_length=32)
    recipient: str = Field(max_length=320)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class InboundMail(SQLModel, table=True):
    """A message received on any inbound route, by Message-ID (hashed: ids can be long): the
    primary key makes the same message arriving twice (SMTP retry, IMAP re-poll, webhook
    retry) processed once."""

    id_hash: str = Field(primary_key=True, max_length=64)
    message_id: str = Field(max_length=255)
    source: str = Field(max_length=16)
    bot_id: str | None = Field(default=None, max_length=32, index=True)
    # What came of it: applied, or why not (auto_reply, bounce, unknown_key, …).
    outcome: str = Field(default="received", max_length=32)
    detail: str | None = Field(default=None, max_length=500)
    received_at: datetime = Field(default_factory=utcnow)


class MailNotice(SQLModel, table=True):
    """A refusal notice sent to an address on a day: at most one per address, kind and day,
    so a misconfigured auto-forwarder cannot start a mail loop."""

    address: str = Field(primary_key=True, max_length=320)
    kind: str = Field(primary_key=True, max_length=32)
    day: str = Field(primary_key=True, max_length=10)
    sent_at: datetime = Field(default_factory=utcnow)


class LinkUse(SQLModel, table=True):
    """A one-click link's token once used: a second POST with it is refused."""

    token_id: str = Field(primary_key=True, max_length=64)
    recipient: str = Field(max_length=320)
    action: str = Field(max_length=16)
    used_at: datetime = Field(default_factory=utcnow)


class OutgoingMail(SQLModel, table=True):
    """Every message autotrain sends, recorded before the first attempt: a failed send is
    retried with backoff until it goes, never dropped."""

    __table_args__ = (Index("ix_outgoingmail_due", "sent_at", "next_attempt_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bot_id: str | None = Field(default=None, max_length=32, index=True)
    recipient: str = Field(max_length=320)
    purpose: str = Field(max_length=32)  # digest, confirmation, notice
    subject: str = Field(max_length=500)
    message_id: str = Field(max_length=255)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, max_length=500)
    sent_at: datetime | None = None
