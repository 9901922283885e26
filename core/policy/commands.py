"""Command objects: every channel (API, Slack, email, links, auto-publish) speaks in these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    api = "api"
    slack = "slack"
    email = "email"
    link = "link"
    auto = "auto"
    cli = "cli"


class RejectReason(StrEnum):
    wrong_information = "wrong_information"
    not_a_gap = "not_a_gap"
    sensitive = "sensitive"
    duplicate = "duplicate"
    tone = "tone"
    other = "other"


@dataclass(frozen=True)
class Actor:
    name: str
    channel: Channel


@dataclass(frozen=True)
class CreateEntry:
    bot_id: str
    question: str
    answer: str
    actor: Actor
    variants: list[str] = field(default_factory=list)
    category: str | None = None


@dataclass(frozen=True)
class UpdateEntry:
    bot_id: str
    entry_id: str
    actor: Actor
    question: str | None = None
    answer: str | None = None
    variants: list[str] | None = None
    category: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RevertEntry:
    bot_id: str
    entry_id: str
    version: int
    actor: Actor


@dataclass(frozen=True)
class RollbackEntry:
    """Take back an entry's latest change (`/autotrain rollback`): back to the version before
    it, or switched off when the entry has no earlier version."""

    bot_id: str
    entry_id: str
    actor: Actor


@dataclass(frozen=True)
class SetEntryActive:
    """Deactivate (instant rollback) or reactivate an entry."""

    bot_id: str
    entry_id: str
    active: bool
    actor: Actor


# Decisions carry `at` only where time is simulated (the replay, tests); every channel that
# people use leaves it None, meaning now.


@dataclass(frozen=True)
class Approve:
    suggestion_id: str
    actor: Actor
    at: datetime | None = None


@dataclass(frozen=True)
class EditAndApprove:
    suggestion_id: str
    actor: Actor
    answer: str | None = None
    variants: list[str] | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Reject:
    suggestion_id: str
    actor: Actor
    reason: RejectReason = RejectReason.other
    comment: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Defer:
    """Put a suggestion aside until `until` (default a week): it then returns to the queue and
    the reviewers are reminded."""

    suggestion_id: str
    actor: Actor
    until: datetime | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class UndoSuggestion:
    """Take back what an approved or auto-published suggestion changed (one click): the entry
    returns to the version before it, or is switched off if the suggestion created it."""

    suggestion_id: str
    actor: Actor


@dataclass(frozen=True)
class SetCategory:
    """A person corrects a suggestion's category (None: no category). The cycle keeps it,
    and the classifier learns from it."""

    suggestion_id: str
    category: str | None
    actor: Actor


@dataclass(frozen=True)
class SetPaused:
    """Pause or resume auto-training for a bot."""

    bot_id: str
    paused: bool
    actor: Actor


@dataclass(frozen=True)
class UpdateSettings:
    bot_id: str
    patch: dict[str, Any]
    actor: Actor


Decision = Approve | EditAndApprove | Reject | Defer
