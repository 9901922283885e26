"""Request and response bodies of the HTTP API v1 (they generate the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from core.bots import KeyScope
from core.policy.commands import RejectReason

# The review door's views serve as response models where the API shows them as they are.
from core.review import AuditView, CategoryView, WatchView


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BotCreate(Strict):
    slug: Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
                               description="Lowercase letters, digits and dashes; 1-64 chars")]
    name: Annotated[str, Field(min_length=1, max_length=200)]


class BotOut(BaseModel):
    slug: str
    name: str
    settings: dict[str, Any]


class BotList(BaseModel):
    items: list[BotOut]


class KeyCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scope: KeyScope = Field(default=KeyScope.chatbot, description=(
        "chatbot: answer and conversations; reviewer: also suggestions, decisions, sandbox, "
        "audit, metrics, digest; admin: also settings, the knowledge base and keys"))


class KeyOut(BaseModel):
    id: str
    name: str
    scope: KeyScope
    key: str = Field(description="The key itself: shown once, only its hash is stored")


class EntryCreate(Strict):
    question: Annotated[str, Field(min_length=1, max_length=1_000)]
    answer: Annotated[str, Field(min_length=1, max_length=8_000)]
    variants: Annotated[list[Annotated[str, Field(max_length=1_000)]],
                        Field(max_length=200)] = Field(default_factory=list)
    category: Annotated[str | None, Field(max_length=100)] = None


class EntryUpdate(Strict):
    question: Annotated[str | None, Field(min_length=1, max_length=1_000)] = None
    answer: Annotated[str | None, Field(min_length=1, max_length=8_000)] = None
    variants: Annotated[list[Annotated[str, Field(max_length=1_000)]] | None,
                        Field(max_length=200)] = None
    category: Annotated[str | None, Field(max_length=100)] = None
    reason: Annotated[str | None, Field(max_length=500)] = None


class EntryState(BaseModel):
    """What an entry says at one version."""

    version: int
    question: str
    answer: str
    variants: list[str]
    category: str | None
    active: bool


class EntryOut(EntryState):
    id: str


class EntryList(BaseModel):
    items: list[EntryOut]


class VersionOut(EntryState):
    changed_by: str
    changed_at: datetime
    reason: str | None
    suggestion_id: str | None


class VersionList(BaseModel):
    items: list[VersionOut]


class RevertIn(Strict):
    version: Annotated[int, Field(ge=1)]


class AnswerIn(Strict):
    question: Annotated[str, Field(min_length=1, max_length=2_000)]


class AnswerOut(BaseModel):
    answer: str | None
    entry_id: str | None
    confidence: Annotated[int, Field(ge=0, le=100)]
    escalate: bool


class SandboxIn(Strict):
    question: Annotated[str, Field(min_length=1, max_length=2_000)]
    suggestion_ids: Annotated[list[str], Field(
        max_length=20, description="Pending or deferred suggestions to try as if approved")]


class SandboxOut(BaseModel):
    answer: str | None
    entry_id: str | None = Field(description="The existing entry that would answer (null for "
                                             "a new answer or when escalating)")
    suggestion_id: str | None = Field(description="The tried suggestion behind the answer")
    confidence: Annotated[int, Field(ge=0, le=100)]
    escalate: bool
    live: AnswerOut = Field(description="What the bot answers today")


class IngestOut(BaseModel):
    accepted: int = Field(description="New conversations stored")
    updated: int = Field(description="Conversations whose id was already known (replaced)")


class CycleIn(Strict):
    as_of: datetime | None = None
    full: bool = Field(default=False, description=(
        "re-analyse every stored conversation from scratch (e.g. after changing "
        "gap_similarity), keeping decided history"))
    reembed: bool = Field(default=False, description="with full: embed every text again "
                                                     "(after switching the embedding model)")


class CycleOut(BaseModel):
    conversations_analyzed: int
    gaps: int
    suggestions_created: int
    auto_published: int
    seconds: float
    paused: bool = Field(default=False, description="auto-training is paused: nothing analysed")
    held_by_plan: int = Field(default=0, description="new suggestions the plan held back")
    excluded: int = Field(default=0,
                          description="suggestions not made: category excluded from training")
    rollbacks_suggested: int = 0
    rolled_back: int = Field(default=0, description="auto-published changes rolled back")
    one_off_questions: int = Field(default=0, description=(
        "questions asked once with no similar question: counted, not proposed "
        "(GET /bots/{slug}/questions?kind=one_off lists them)"))
    one_off_repeated: int = Field(default=0, description=(
        "suggestions made this cycle for a question that was one-off before and was asked "
        "again"))
    declined_questions: int = Field(default=0, description=(
        "failures set aside because the agents declined them with a stock refusal "
        "(GET /bots/{slug}/questions?kind=declined lists them)"))
    phrasings_learned: int = Field(default=0, description=(
        "customers' questions the agents answered by restating an entry's answer, recognised "
        "as that entry's from now on (setting learn_from_agents)"))


class QuestionOut(BaseModel):
    question: str = Field(description="the customer's question, identifiers redacted")
    at: datetime
    signal: str
    conversation_id: str = Field(description="the chatbot's own conversation id")
    agent_reply: str | None = Field(default=None, description="what the agent answered, "
                                                              "identifiers redacted")


class QuestionList(BaseModel):
    kind: str = Field(description="one_off | declined")
    days: int
    total: int = Field(description="how many in the window; items holds the newest ones")
    items: list[QuestionOut]


class SuggestionOut(BaseModel):
    id: str
    kind: str
    priority: str
    confidence: int
    question: str
    answer: str
    variants: list[str]
    entry_id: str | None
    category: str | None
    warning: str | None
    evidence: dict[str, Any]
    status: str
    created_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decided_channel: str | None = None
    defer_until: datetime | None = None
    category_source: str | None = Field(
        default=None, description='"auto" (the classifier) or "admin" (set by a person)')
    reason: str = Field(default="", description="why it is proposed, in words")
    samples: list[str] = Field(default_factory=list, description=(
        "a few of the customers' own questions, newest first (identifiers redacted)"))
    replay: str | None = Field(default=None, description="the evidence replay in a sentence")
    autonomy: str | None = Field(default=None, description=(
        "why it was or was not published automatically"))
    entry_question: str | None = Field(default=None, description="the entry it changes")
    low_confidence: bool = Field(default=False, description="confidence under 60")
    needs_answer: bool = Field(default=False, description=(
        "no answer drafted yet: approve with edit"))
    status_words: str = ""
    withdrawn_because: str | None = None


class SuggestionList(BaseModel):
    items: list[SuggestionOut]


class DecisionAction(StrEnum):
    approve = "approve"
    edit = "edit"
    reject = "reject"
    defer = "defer"


class DecisionIn(Strict):
    action: DecisionAction
    answer: Annotated[str | None, Field(min_length=1, max_length=8_000)] = None
    variants: Annotated[list[Annotated[str, Field(max_length=1_000)]] | None,
                        Field(max_length=200)] = None
    actor: Annotated[str, Field(min_length=1, max_length=200)]
    reason: RejectReason | None = Field(default=None, description="For reject")
    comment: Annotated[str | None, Field(max_length=2_000)] = None
    until: datetime | None = Field(default=None, description="For defer (default: 7 days)")


class DecisionOut(BaseModel):
    status: str
    entry_id: str | None
    entry_version: int | None


class AuditList(BaseModel):
    items: list[AuditView]


class MetricsBucket(BaseModel):
    start: datetime
    conversations: int
    automatic_resolution_rate: float
    escalation_rate: float
    negative_feedback_rate: float
    abandonment_rate: float
    csat: float | None
    avg_resolution_seconds: float | None


class MetricsOut(BaseModel):
    buckets: list[MetricsBucket]
    activated_at: datetime | None = Field(
        default=None, description="When auto-training first published a change (buckets "
        "starting from then are 'after')")
    thin_data: bool = Field(default=False, description="Fewer than 200 conversations so far: "
                            "rates are not yet representative")


class IndexStatus(BaseModel):
    expected: int
    stored: int
    missing: int
    extra: int
    wrong_active: int
    in_sync: bool
    pending_outbox: int
    learned_phrasings: int = Field(default=0, description=(
        "questions the agents answered with an entry's answer, recognised as that entry's "
        "(setting learn_from_agents); included in `expected`"))
    nobody_phrasings: int = Field(default=0, description=(
        "questions the agents answered with something no entry says: near them the bot hands "
        "over (setting learn_from_agents); included in `expected`"))


class SuggestionPatch(Strict):
    """Correct a suggestion's category (null: no category)."""

    category: Annotated[str | None, Field(max_length=100)]
    actor: Annotated[str | None, Field(min_length=1, max_length=200)] = None


class ActorIn(Strict):
    actor: Annotated[str | None, Field(min_length=1, max_length=200)] = None


class CategoryList(BaseModel):
    items: list[CategoryView]


class NotificationOut(BaseModel):
    id: int
    kind: str
    text: str
    suggestion_id: str | None
    entry_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None = Field(default=None, description=(
        "when a channel first delivered it"))
    delivered_to: dict[str, datetime] = Field(default_factory=dict, description=(
        "each channel (slack, email) that delivered it, and when"))


class NotificationList(BaseModel):
    items: list[NotificationOut]


class WatchList(BaseModel):
    items: list[WatchView]
