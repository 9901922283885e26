"""What the review door hands every channel: plain, frozen view objects, never table rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.bots import BotSettings
from core.pipeline.proposals import LOW_CONFIDENCE
from core.status import OPEN_SUGGESTION_STATUSES, SuggestionStatus

KIND_LABELS = {"new_answer": "New answer", "improve_answer": "Improve an answer",
               "add_variants": "Add phrasings", "rollback": "Consider rolling back"}
STATUS_WORDS = {
    SuggestionStatus.pending: "waiting for review",
    SuggestionStatus.deferred: "deferred",
    SuggestionStatus.approved: "approved",
    SuggestionStatus.auto_published: "published automatically",
    SuggestionStatus.rejected: "rejected",
    SuggestionStatus.undone: "undone",
    SuggestionStatus.withdrawn: "withdrawn",
}


@dataclass(frozen=True)
class BotRef:
    """The bot a channel acts for (resolved from an API key, a Slack channel, a recipient)."""

    id: str
    slug: str
    name: str
    settings: BotSettings
    created_at: datetime


@dataclass(frozen=True)
class Decided:
    """Who took a suggestion out of the queue, how and when."""

    by: str
    channel: str | None
    at: datetime | None


@dataclass(frozen=True)
class SuggestionView:
    """Everything a Slack card, a digest item, an API response or a page shows."""

    id: str
    bot_id: str
    kind: str
    priority: str
    score: float
    confidence: int
    question: str
    answer: str
    variants: list[str]
    entry_id: str | None
    entry_question: str | None  # the entry it changes, for an improvement or new phrasings
    category: str | None
    category_source: str | None
    warning: str | None
    reason: str  # why it is proposed, in words ("asked 7 times this week; unanswered")
    samples: list[str]  # a few customers' own questions (identifiers redacted)
    replay: str | None  # the evidence replay in one sentence
    autonomy: str | None  # why it was or was not published automatically
    needs_answer: bool  # the draft has no answer yet: only "edit" can approve it
    status: str
    created_at: datetime
    decided: Decided | None
    defer_until: datetime | None
    reject_reason: str | None
    withdrawn_because: str | None = None  # why the cycle or a correction took it out
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_SUGGESTION_STATUSES

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(SuggestionStatus(self.status), self.status) \
            if self.status in SuggestionStatus.__members__ else self.status


@dataclass(frozen=True)
class EntryView:
    id: str
    bot_id: str
    question: str
    answer: str
    variants: list[str]
    category: str | None
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "question", "answer", "variants",
                                               "category", "active", "version", "created_at",
                                               "updated_at")}


@dataclass(frozen=True)
class VersionView:
    version: int
    question: str
    answer: str
    variants: list[str]
    category: str | None
    active: bool
    changed_by: str
    changed_at: datetime
    reason: str | None
    suggestion_id: str | None


@dataclass(frozen=True)
class AuditView:
    at: datetime
    actor: str
    channel: str
    action: str
    entry_id: str | None
    suggestion_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class EntryHistory:
    """An entry now, every version it had, and who changed it (newest first)."""

    entry: EntryView
    versions: list[VersionView]
    audit: list[AuditView]


@dataclass(frozen=True)
class AnnouncementView:
    id: int
    kind: str
    text: str
    suggestion_id: str | None
    entry_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    delivered: dict[str, datetime]  # channel → when it delivered this announcement


@dataclass(frozen=True)
class WatchView:
    id: str
    entry_id: str
    suggestion_id: str | None
    from_version: int | None
    to_version: int
    auto: bool
    started_at: datetime
    ends_at: datetime
    status: str
    baseline: dict[str, int]
    checked_at: datetime | None
    result: dict[str, Any] | None


@dataclass(frozen=True)
class CategoryView:
    name: str
    description: str
    keywords: list[str]
    builtin: bool
    excluded_from_auto_publish: bool
    excluded_from_training: bool


class QuestionKind(StrEnum):
    """Failed questions kept out of the queue: asked once with nothing alike, or declined by
    the agents with a stock refusal."""

    one_off = "one_off"
    declined = "declined"


@dataclass(frozen=True)
class QuestionView:
    question: str  # identifiers redacted
    at: datetime
    signal: str
    conversation_id: str  # the chatbot's own id
    agent_reply: str | None  # identifiers redacted


@dataclass(frozen=True)
class QuestionsView:
    kind: QuestionKind
    days: int
    total: int  # in the window; `items` holds the newest `limit` of them
    items: list[QuestionView]


class Period(StrEnum):
    day = "day"
    week = "week"
    month = "month"


PERIOD_DAYS = {Period.day: 1, Period.week: 7, Period.month: 30}


@dataclass(frozen=True)
class Figures:
    """One period's numbers."""

    start: datetime
    end: datetime
    conversations: int
    resolution_rate: float | None  # resolved by the bot alone
    escalations: int
    escalation_rate: float | None
    negative_feedback: int
    negative_feedback_rate: float | None
    csat: float | None
    suggestions_decided: int  # by people, on any channel
    auto_published: int
    # Failed questions of the period kept out of the queue (GET /bots/{slug}/questions).
    one_off_questions: int = 0
    declined_questions: int = 0


@dataclass(frozen=True)
class StatsView:
    """This period against the one before: what `/autotrain stats` and the digest header show."""

    bot_slug: str
    period: Period
    current: Figures
    previous: Figures
    pending: int  # suggestions waiting for review now
    critical_pending: int


@dataclass(frozen=True)
class Outcome:
    """What a command did, for the channel to show: one sentence for the person who acted,
    and the fresh state of what changed (to re-render a card or a page)."""

    message: str
    status: str | None = None  # the suggestion's status after the command
    suggestion: SuggestionView | None = None
    entry: EntryView | None = None
    entry_action: str | None = None  # entry.created | entry.updated | entry.reverted | ...
    settings: dict[str, Any] | None = None
