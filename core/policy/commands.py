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
class SetEntryActive:
    """Deactivate (instant rollback) or reactivate an entry."""

    bot_id: str
    entry_id: str
    active: bool
    actor: Actor


@dataclass(frozen=True)
class Approve:
    suggestion_id: str
    actor: Actor


@dataclass(frozen=True)
class EditAndApprove:
    suggestion_id: str
    actor: Actor
    answer: str | None = None
    variants: list[str] | None = None


@dataclass(frozen=True)
class Reject:
    suggestion_id: str
    actor: Actor
    reason: RejectReason = RejectReason.other
    comment: str | None = None


@dataclass(frozen=True)
class Defer:
    suggestion_id: str
    actor: Actor
    until: datetime | None = None


@dataclass(frozen=True)
class UpdateSettings:
    bot_id: str
    patch: dict[str, Any]
    actor: Actor


Decision = Approve | EditAndApprove | Reject | Defer
