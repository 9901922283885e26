"""Conversation ingestion: the transcript format, its limits, and idempotent storage."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from sqlalchemy import Engine, delete, insert
from sqlmodel import Session, col, select

from core.db import session_scope
from core.errors import InvalidInput
from core.metrics import answer_outcomes
from core.models import Conversation, ConversationAnswer, as_utc, new_id, utcnow
from core.pipeline.signals import detect, transcript_from_row

# Documented limits (README "Ingestion limits"): large enough for real transcripts, small
# enough that one request cannot exhaust memory or hold the database for long.
MAX_BATCH = 1_000
MAX_MESSAGES = 500
MAX_TEXT_CHARS = 10_000
MAX_ID_CHARS = 200


class Role(StrEnum):
    customer = "customer"
    bot = "bot"
    agent = "agent"


class Rating(StrEnum):
    up = "up"
    down = "down"


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    text: Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
    at: datetime
    entry_id: Annotated[str | None, Field(max_length=64)] = None


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_index: Annotated[StrictInt, Field(ge=0)]
    rating: Rating


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
    started_at: datetime
    messages: Annotated[list[MessageIn], Field(min_length=1, max_length=MAX_MESSAGES)]
    feedback: list[FeedbackIn] = Field(default_factory=list, max_length=MAX_MESSAGES)
    csat: Annotated[StrictInt | None, Field(ge=1, le=5)] = None
    channel: Annotated[str | None, Field(max_length=100)] = None

    @field_validator("started_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return as_utc(value)


class ConversationBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversations: Annotated[list[ConversationIn], Field(max_length=MAX_BATCH)]


def check_batch(conversations: list[ConversationIn]) -> None:
    """Rules across fields of a batch; raises InvalidInput whose field is the exact path."""
    if len(conversations) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} conversations per request",
                           field="conversations")
    seen: dict[str, int] = {}
    for i, conv in enumerate(conversations):
        if conv.id in seen:
            raise InvalidInput(
                f"conversations[{i}].id {conv.id!r} repeats conversations[{seen[conv.id]}].id; "
                "each conversation may appear once per batch", field=f"conversations.{i}.id")
        seen[conv.id] = i
        for j, fb in enumerate(conv.feedback):
            where = f"conversations.{i}.feedback.{j}.message_index"
            if fb.message_index >= len(conv.messages):
                raise InvalidInput(
                    f"conversations[{i}].feedback[{j}].message_index {fb.message_index} is past "
                    f"the last message (there are {len(conv.messages)})", field=where)
            role = conv.messages[fb.message_index].role
            if role != Role.bot:
                raise InvalidInput(
                    f"conversations[{i}].feedback[{j}].message_index {fb.message_index} points "
                    f"at a {role.value} message; ratings are on bot messages", field=where)


def _as_row_fields(conv: ConversationIn) -> dict[str, Any]:
    messages = [
        {"role": m.role.value, "text": m.text, "at": as_utc(m.at).isoformat(),
         "entry_id": m.entry_id}
        for m in conv.messages
    ]
    last = max([as_utc(m.at) for m in conv.messages] + [conv.started_at])
    feedback = [{"message_index": f.message_index, "rating": f.rating.value}
                for f in conv.feedback]
    _, outcome = detect(transcript_from_row(id=conv.id, started_at=conv.started_at,
                                            messages=messages, feedback=feedback,
                                            csat=conv.csat))
    return {
        "started_at": conv.started_at,
        "ended_at": last,
        "messages": messages,
        "feedback": feedback,
        "csat": conv.csat,
        "channel": conv.channel,
        "bot_answered": outcome.bot_answered,
        "escalated": outcome.escalated,
        "negative_feedback": outcome.negative_feedback,
        "abandoned": outcome.abandoned,
        "resolved_automatically": outcome.resolved_automatically,
        "resolution_seconds": outcome.resolution_seconds,
    }


def store_conversations(session: Session, *, bot_id: str,
                        conversations: list[ConversationIn]) -> tuple[int, int]:
    """Insert new transcripts and replace re-sent ones (by the chatbot's id).

    Returns (accepted, updated). The caller commits: the batch is one transaction, so a
    failure leaves nothing written.
    """
    check_batch(conversations)
    ids = [c.id for c in conversations]
    existing: dict[str, Conversation] = {}
    # Chunked IN lists keep every backend under its bound-parameter limit.
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for row in session.exec(select(Conversation).where(
                Conversation.bot_id == bot_id, col(Conversation.external_id).in_(chunk))):
            existing[row.external_id] = row
    accepted = updated = 0
    now = utcnow()
    new_rows: list[dict[str, Any]] = []
    # The entries each stored conversation was answered with (for entry satisfaction).
    answer_rows: list[dict[str, Any]] = []
    replaced: list[str] = []

    def answers(conversation_id: str, fields: dict[str, Any]) -> None:
        outcomes = answer_outcomes(messages=fields["messages"], feedback=fields["feedback"],
                                   resolved_automatically=fields["resolved_automatically"])
        answer_rows.extend({"conversation_id": conversation_id, "entry_id": entry_id,
                            "bot_id": bot_id, "started_at": fields["started_at"],
                            "satisfied": ok} for entry_id, ok in outcomes.items())

    for conv in conversations:
        fields = _as_row_fields(conv)
        row = existing.get(conv.id)
        if row is None:
            new_rows.append({"id": new_id(), "bot_id": bot_id, "external_id": conv.id,
                             "received_at": now, "analyzed_at": None, **fields})
            answers(new_rows[-1]["id"], fields)
            accepted += 1
            continue
        updated += 1
        changed = any(getattr(row, k) != v for k, v in fields.items()
                      if k not in ("started_at", "ended_at")) or \
            as_utc(row.started_at) != fields["started_at"]
        if changed:
            for k, v in fields.items():
                setattr(row, k, v)
            row.received_at = now
            # A changed transcript must be looked at again by the next cycle.
            row.analyzed_at = None
            session.add(row)
            replaced.append(row.id)
            answers(row.id, fields)
    if new_rows:
        # One executemany of plain rows: building ORM objects for a 1,000-conversation batch
        # costs more than the insert and holds the GIL that /answer threads need.
        # render_nulls: without it SQLAlchemy leaves a None (no CSAT, no resolution time) out
        # of its row's INSERT, and rows with different columns cannot share a statement: a
        # realistic batch became ~90 statements instead of one multi-row INSERT per ~1,000.
        session.execute(insert(Conversation).execution_options(render_nulls=True), new_rows)
    session.flush()
    for start in range(0, len(replaced), 500):
        session.execute(delete(ConversationAnswer).where(
            col(ConversationAnswer.conversation_id).in_(replaced[start:start + 500])))
    if answer_rows:
        session.execute(insert(ConversationAnswer), answer_rows)
        session.flush()
    return accepted, updated


def ingest_batch(engine: Engine, *, bot_id: str,
                 conversations: list[ConversationIn]) -> tuple[int, int]:
    """Store a validated batch in one transaction: (accepted, updated)."""
    with session_scope(engine) as session:
        return store_conversations(session, bot_id=bot_id, conversations=conversations)
