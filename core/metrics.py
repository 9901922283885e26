"""Support metrics per day, week or month, computed from the stored conversation outcomes.

Definitions (docs/metrics.md): over the conversations that started in a bucket,
- automatic_resolution_rate: share the bot resolved alone (it answered; no handover, no
  negative feedback, not abandoned);
- escalation_rate: share handed over to a human agent;
- negative_feedback_rate: share with a thumbs-down, CSAT 1-2, or a complaint, a request for
  a human or a rephrase of the question right after a bot answer;
- abandonment_rate: share where the customer left right after a bot answer without
  resolution (no handover, no negative and no positive feedback);
- csat: mean of the CSAT scores given (null when none);
- avg_resolution_seconds: mean first-to-last message time of conversations resolved by the
  bot or by an agent (null when none).

An entry's satisfaction (what improve_answer priorities use): among the conversations that
started in the 30 days up to the cycle's as_of in which the bot answered with the entry, the
share that were satisfied (`answer_satisfied`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, Integer, cast, func
from sqlmodel import Session, col, select

from core.models import Conversation, ConversationAnswer, Suggestion, as_utc
from core.status import PUBLISHED_SUGGESTION_STATUSES

THIN_DATA_CONVERSATIONS = 200
SATISFACTION_DAYS = 30


class Bucket(StrEnum):
    day = "day"
    week = "week"
    month = "month"


def bucket_start(at: datetime, bucket: Bucket) -> datetime:
    at = as_utc(at)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == Bucket.day:
        return day
    if bucket == Bucket.week:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def activated_at(engine: Engine, *, bot_id: str) -> datetime | None:
    """When auto-training started changing the bot: its first published suggestion."""
    with Session(engine) as session:
        first = session.exec(
            select(Suggestion.decided_at).where(
                Suggestion.bot_id == bot_id,
                col(Suggestion.status).in_(PUBLISHED_SUGGESTION_STATUSES),
                col(Suggestion.decided_at).is_not(None))
            .order_by(col(Suggestion.decided_at)).limit(1)).first()
    return as_utc(first) if first else None


def compute_metrics(engine: Engine, *, bot_id: str, bucket: Bucket,
                    since: datetime | None = None,
                    until: datetime | None = None) -> list[dict[str, Any]]:
    stmt = select(Conversation.started_at, Conversation.resolved_automatically,
                  Conversation.escalated, Conversation.negative_feedback, Conversation.abandoned,
                  Conversation.csat, Conversation.resolution_seconds
                  ).where(Conversation.bot_id == bot_id)
    if since is not None:
        stmt = stmt.where(col(Conversation.started_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Conversation.started_at) < until)
    acc: dict[datetime, dict[str, Any]] = {}
    with Session(engine) as session:
        for started, resolved, escalated, negative, abandoned, csat, seconds in session.exec(stmt):
            b = acc.setdefault(bucket_start(started, bucket), {
                "n": 0, "resolved": 0, "escalated": 0, "negative": 0, "abandoned": 0,
                "csat": [], "seconds": []})
            b["n"] += 1
            b["resolved"] += bool(resolved)
            b["escalated"] += bool(escalated)
            b["negative"] += bool(negative)
            b["abandoned"] += bool(abandoned)
            if csat is not None:
                b["csat"].append(csat)
            if seconds is not None:
                b["seconds"].append(seconds)
    out = []
    for start in sorted(acc):
        b = acc[start]
        n = b["n"]
        out.append({
            "start": start.isoformat(),
            "conversations": n,
            "automatic_resolution_rate": round(b["resolved"] / n, 4),
            "escalation_rate": round(b["escalated"] / n, 4),
            "negative_feedback_rate": round(b["negative"] / n, 4),
            "abandonment_rate": round(b["abandoned"] / n, 4),
            "csat": round(sum(b["csat"]) / len(b["csat"]), 2) if b["csat"] else None,
            "avg_resolution_seconds": round(sum(b["seconds"]) / len(b["seconds"]), 1)
            if b["seconds"] else None,
        })
    return out


@dataclass(frozen=True)
class Satisfaction:
    answered: int  # conversations in the window where the bot answered with the entry
    satisfied: int

    @property
    def share(self) -> float | None:
        return self.satisfied / self.answered if self.answered else None


def answer_satisfied(*, entry_id: str, messages: list[dict[str, Any]],
                     feedback: list[dict[str, Any]], resolved_automatically: bool) -> bool:
    """Was the customer satisfied with the bot's answers from `entry_id` in this conversation?

    The explicit thumb on those answers wins (down: no, up: yes); otherwise the conversation
    must have ended resolved by the bot alone (no handover, no negative feedback, not
    abandoned; a CSAT of 4-5 already keeps a silent ending from counting as abandoned). A
    good CSAT after a handover rates the agent, not the entry, so it does not count.
    """
    ratings = {str(f["rating"]) for f in feedback
               if 0 <= int(f["message_index"]) < len(messages)
               and messages[int(f["message_index"])].get("entry_id") == entry_id}
    if "down" in ratings:
        return False
    return "up" in ratings or resolved_automatically


def answer_outcomes(*, messages: list[dict[str, Any]], feedback: list[dict[str, Any]],
                    resolved_automatically: bool) -> dict[str, bool]:
    """Each entry the bot answered with in one conversation -> whether it satisfied."""
    entries = dict.fromkeys(m["entry_id"] for m in messages
                            if m.get("entry_id") and m.get("role") == "bot")
    return {e: answer_satisfied(entry_id=e, messages=messages, feedback=feedback,
                                resolved_automatically=resolved_automatically)
            for e in entries}


def entry_satisfaction(engine: Engine, *, bot_id: str, as_of: datetime,
                       days: int = SATISFACTION_DAYS) -> dict[str, Satisfaction]:
    """Satisfaction of every entry the bot answered with in the `days` up to `as_of`: one
    grouped query over the answers recorded at ingestion."""
    since = as_of - timedelta(days=days)
    with Session(engine) as session:
        rows = session.exec(
            select(ConversationAnswer.entry_id, func.count(),
                   func.sum(cast(ConversationAnswer.satisfied, Integer)))
            .where(ConversationAnswer.bot_id == bot_id,
                   col(ConversationAnswer.started_at) > since,
                   col(ConversationAnswer.started_at) <= as_of)
            .group_by(ConversationAnswer.entry_id)).all()
    return {entry_id: Satisfaction(int(n), int(ok or 0)) for entry_id, n, ok in rows}


class SatisfactionBook:
    """Entry satisfaction for one cycle, read on first use (a cycle that meets no gap about
    an existing answer does not query it)."""

    def __init__(self, engine: Engine, *, bot_id: str, as_of: datetime) -> None:
        self._engine, self._bot_id, self._as_of = engine, bot_id, as_of
        self._book: dict[str, Satisfaction] | None = None

    def of(self, entry_id: str) -> Satisfaction:
        if self._book is None:
            self._book = entry_satisfaction(self._engine, bot_id=self._bot_id,
                                            as_of=self._as_of)
        return self._book.get(entry_id, Satisfaction(0, 0))
