"""The review vocabulary: statuses of suggestions, gaps and watches, and the one priority order."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol


class SuggestionStatus(StrEnum):
    pending = "pending"  # in the queue, waiting for a reviewer (or autonomy)
    deferred = "deferred"  # put aside until `defer_until`, then pending again
    approved = "approved"  # published by a person
    auto_published = "auto_published"  # published by autonomy
    rejected = "rejected"
    undone = "undone"  # published, then taken back
    withdrawn = "withdrawn"  # taken out of the queue by the cycle or a category correction


class GapStatus(StrEnum):
    """Gap lifecycle (docs/signals.md): open → published (a suggestion approved; still
    watched) → closed once quiet; rejected gaps are frozen; merged and superseded gaps handed
    their evidence to another gap; declined questions are set aside in one group per bot."""

    open = "open"
    published = "published"
    closed = "closed"
    rejected = "rejected"
    merged = "merged"
    superseded = "superseded"
    # The bot's one group of questions its agents declined with a stock refusal (off-topic):
    # counted and listed, never proposed (core.cycle.declines).
    declined = "declined"


class WatchStatus(StrEnum):
    """A published change under watch: watching → passed (no drop) | alerted (a rollback
    suggestion was raised) | rolled_back (automatically) | superseded (a newer change to the
    entry is watched instead)."""

    watching = "watching"
    passed = "passed"
    alerted = "alerted"
    rolled_back = "rolled_back"
    superseded = "superseded"


class Priority(StrEnum):
    critical = "critical"
    medium = "medium"
    low = "low"


class SuggestionKind(StrEnum):
    new_answer = "new_answer"
    improve_answer = "improve_answer"
    add_variants = "add_variants"
    rollback = "rollback"


# Suggestions a reviewer can still decide; everything else has left the queue.
OPEN_SUGGESTION_STATUSES: tuple[SuggestionStatus, ...] = (SuggestionStatus.pending,
                                                          SuggestionStatus.deferred)
# Suggestions whose change is live (and can be undone).
PUBLISHED_SUGGESTION_STATUSES: tuple[SuggestionStatus, ...] = (SuggestionStatus.approved,
                                                               SuggestionStatus.auto_published)

PRIORITY_ORDER: dict[str, int] = {Priority.critical: 0, Priority.medium: 1, Priority.low: 2}


def priority_rank(priority: str) -> int:
    """0 for critical, 1 medium, 2 low; an unknown level sorts last."""
    return PRIORITY_ORDER.get(priority, len(PRIORITY_ORDER))


class Ranked(Protocol):
    @property
    def priority(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def confidence(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def question(self) -> str: ...
    @property
    def id(self) -> str: ...


def urgency_key(s: Ranked) -> tuple[int, float, int, datetime, str, str]:
    """The one order of the review queue, everywhere (API, Slack, digest, autonomy, replay):
    most urgent level, then the highest score; on a tie the surest first (the quickest
    decision), then the one waiting longest, then by question so the order never depends on
    random ids."""
    created = s.created_at if s.created_at.tzinfo else s.created_at.replace(tzinfo=UTC)
    return (priority_rank(s.priority), -s.score, -s.confidence, created, s.question, s.id)
