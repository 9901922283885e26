"""Watch after publish: does a published change leave its entry's customers worse off?

Every published change to an entry (an approved or auto-published suggestion, or a person's
edit of its answer) is watched for the bot's `watch_days`. Once `watch_min_answers`
customers got the entry since the change, their record is compared with the entry's record
over the 30 days before it:

- satisfaction (core.metrics: answered, no thumbs-down, resolved) fell by more than
  `watch_max_drop` points, or
- the share of negative feedback rose by more than `watch_max_drop` points, or
- satisfaction is under the bot's `medium_satisfaction` (also when there is no "before": a
  new entry has none).

A finding raises a critical "consider rolling back" suggestion with the numbers; in advanced
autonomy an auto-published change is rolled back at once instead (core.policy.service).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, func
from sqlmodel import Session, col, select

from core.bots import BotSettings
from core.metrics import SATISFACTION_DAYS
from core.models import Conversation, ConversationAnswer, EntryWatch, Suggestion
from core.policy import queue
from core.status import OPEN_SUGGESTION_STATUSES, SuggestionKind, WatchStatus

# Fewer answers than this before the change make no baseline: only the floor applies.
MIN_BASELINE = 5


@dataclass(frozen=True)
class Record:
    answered: int
    satisfied: int
    negative: int

    @property
    def satisfaction(self) -> float:
        return self.satisfied / self.answered if self.answered else 0.0

    @property
    def negative_share(self) -> float:
        return self.negative / self.answered if self.answered else 0.0

    def public(self) -> dict[str, Any]:
        return {"answered": self.answered, "satisfied": self.satisfied,
                "negative": self.negative,
                "satisfaction_percent": round(100 * self.satisfaction),
                "negative_percent": round(100 * self.negative_share)}


@dataclass(frozen=True)
class Finding:
    """Why the change looks harmful, in words and numbers."""

    reason: str
    before: Record | None
    after: Record

    def public(self) -> dict[str, Any]:
        return {"reason": self.reason, "after": self.after.public(),
                "before": self.before.public() if self.before else None}


def entry_record(session: Session, *, entry_id: str, since: datetime,
                 until: datetime) -> Record:
    """How the customers who got `entry_id` in [since, until) fared (conversation start)."""
    answered, satisfied, negative = session.exec(
        select(func.count(), func.sum(cast(ConversationAnswer.satisfied, Integer)),
               func.sum(cast(Conversation.negative_feedback, Integer)))
        .select_from(ConversationAnswer)
        .join(Conversation, col(Conversation.id) == ConversationAnswer.conversation_id)
        .where(ConversationAnswer.entry_id == entry_id,
               col(ConversationAnswer.started_at) >= since,
               col(ConversationAnswer.started_at) < until)).one()
    return Record(int(answered or 0), int(satisfied or 0), int(negative or 0))


def start_watch(session: Session, *, bot_id: str, entry_id: str, from_version: int | None,
                to_version: int, suggestion_id: str | None, auto: bool, at: datetime,
                settings: BotSettings) -> EntryWatch:
    """Watch a change just made; an older watch of the same entry gives way to it (its
    "after" would now mix two versions)."""
    end_watches(session, entry_id=entry_id, at=at)
    before = entry_record(session, entry_id=entry_id,
                          since=at - timedelta(days=SATISFACTION_DAYS), until=at) \
        if from_version is not None else Record(0, 0, 0)
    watch = EntryWatch(bot_id=bot_id, entry_id=entry_id, suggestion_id=suggestion_id,
                       from_version=from_version, to_version=to_version, auto=auto,
                       started_at=at, ends_at=at + timedelta(days=settings.watch_days),
                       baseline_answered=before.answered, baseline_satisfied=before.satisfied,
                       baseline_negative=before.negative)
    session.add(watch)
    return watch


def _pct(share: float) -> str:
    return f"{round(100 * share)}%"


def evaluate(watch: EntryWatch, after: Record, settings: BotSettings) -> Finding | None:
    """A finding once enough customers got the changed entry, or None (fine, or too early)."""
    if after.answered < settings.watch_min_answers:
        return None
    before = Record(watch.baseline_answered, watch.baseline_satisfied,
                    watch.baseline_negative) if watch.baseline_answered >= MIN_BASELINE \
        else None
    margin = settings.watch_max_drop / 100
    floor = settings.medium_satisfaction / 100
    now = (f"{after.satisfied} of {after.answered} customers ({_pct(after.satisfaction)}) "
           "were satisfied since the change")
    reasons: list[str] = []
    if before is not None and after.satisfaction < before.satisfaction - margin:
        reasons.append(f"{now}, against {_pct(before.satisfaction)} of {before.answered} "
                       "in the 30 days before")
    elif after.satisfaction < floor:
        reasons.append(f"{now}, under the bot's {settings.medium_satisfaction}% bar")
    if before is not None and after.negative_share > before.negative_share + margin:
        reasons.append(f"negative feedback rose from {_pct(before.negative_share)} to "
                       f"{_pct(after.negative_share)} ({after.negative} of {after.answered})")
    if not reasons:
        return None
    return Finding("; ".join(reasons), before, after)


def end_watches(session: Session, *, entry_id: str, at: datetime) -> None:
    """The watched version of the entry is no longer live (changed again, reverted, switched
    off, rolled back): its watch ends, and so does any pending rollback of it."""
    for watch in session.exec(select(EntryWatch).where(EntryWatch.entry_id == entry_id,
                                                       EntryWatch.status == WatchStatus.watching)):
        watch.status = WatchStatus.superseded
        watch.checked_at = at
        session.add(watch)
    withdraw_rollbacks(session, entry_id=entry_id, at=at)


def withdraw_rollbacks(session: Session, *, entry_id: str, at: datetime) -> None:
    """The entry changed again: a pending "consider rolling back" about an earlier version
    would now undo the newer change too, so it leaves the queue."""
    for sug in session.exec(select(Suggestion).where(
            Suggestion.entry_id == entry_id, Suggestion.kind == SuggestionKind.rollback,
            col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))):
        queue.withdraw(session, sug, because=queue.ENTRY_CHANGED, at=at)
