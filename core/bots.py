"""Bots (tenants), their validated settings, and API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
)
from sqlmodel import Session, select

from core.errors import Conflict, NotFound
from core.models import ApiKey, Bot, utcnow
from core.policy.categories import BUILTIN_CATEGORIES, BUILTIN_CATEGORY_NAMES, Category

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
DEFAULT_EXCLUDED = ["pricing", "legal", "medical"]
# Slack ids: public (C) and private (G) channels, users (U, W for Enterprise Grid), user
# groups (S); upper-case letters and digits.
SLACK_CHANNEL_RE = re.compile(r"^[CG][A-Z0-9]{6,20}$")
SLACK_USER_RE = re.compile(r"^[UW][A-Z0-9]{6,20}$")
SLACK_GROUP_RE = re.compile(r"^S[A-Z0-9]{6,20}$")
# An addr-spec as people type it: one @, a dot in the domain, no spaces or angle brackets (a
# name such as "Ann <ann@x.com>" is refused: the address is what replies are checked against).
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
EMAIL_RE = re.compile(rf"^[^@\s<>(),;:\"]+@{_LABEL}(?:\.{_LABEL})+$")


class Autonomy(StrEnum):
    conservative = "conservative"
    moderate = "moderate"
    advanced = "advanced"


class KeyScope(StrEnum):
    """What a per-bot API key reaches (docs: README, "Key scopes"). Each scope includes the
    ones before it; the global admin key reaches everything, every bot."""

    chatbot = "chatbot"  # answer, conversations: what a chatbot's backend needs
    reviewer = "reviewer"  # + suggestions, decisions, sandbox, audit, metrics, digest
    admin = "admin"  # + settings, the knowledge base and the keys of its bot

    def reaches(self, needed: KeyScope) -> bool:
        order = list(KeyScope)
        return order.index(self) >= order.index(needed)


class NotifyFrequency(StrEnum):
    daily = "daily"
    weekly = "weekly"
    critical_only = "critical_only"


class Plan(StrEnum):
    free = "free"
    professional = "professional"
    enterprise = "enterprise"


# New suggestions a plan gets per calendar week (Monday to Sunday in the bot's timezone);
# None: unlimited. The highest-priority gaps get the allowance.
WEEKLY_SUGGESTIONS: dict[Plan, int | None] = {Plan.free: 5, Plan.professional: None,
                                              Plan.enterprise: None}


class CustomCategory(BaseModel):
    """A topic the admin defines on top of the built-in ones (core.policy.categories)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=500)
    keywords: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("name")
    @classmethod
    def _clean_name(cls, value: str) -> str:
        name = value.strip().lower()
        if not name:
            raise ValueError("category name must not be blank")
        if name in BUILTIN_CATEGORY_NAMES:
            raise ValueError(f"{name!r} is a built-in category: pick another name")
        return name

    @field_validator("keywords")
    @classmethod
    def _clean_keywords(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for raw in value:
            word = " ".join(raw.lower().split())
            if not word or len(word) > 100:
                raise ValueError(f"keyword {raw!r} must be 1-100 characters")
            if word not in out:
                out.append(word)
        return out


class BotSettings(BaseModel):
    """Per-bot behaviour. Unknown keys are refused so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")

    # Autonomy (docs/policy.md): conservative = every change needs a reviewer; moderate and
    # advanced publish suggestions whose confidence is strictly above their threshold.
    autonomy: Autonomy = Autonomy.conservative
    moderate_auto_publish_above: StrictInt = Field(default=90, ge=0, le=100)
    advanced_auto_publish_above: StrictInt = Field(default=80, ge=0, le=100)
    # Auto-published suggestions per calendar day in `timezone`, at most.
    daily_auto_publish_limit: StrictInt = Field(default=10, ge=0, le=10_000)
    notify_frequency: NotifyFrequency = NotifyFrequency.daily
    # Declared before the category lists: their validators check names against these.
    custom_categories: list[CustomCategory] = Field(default_factory=list, max_length=50)
    # Never auto-published (a reviewer always decides) ...
    excluded_categories: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDED))
    # ... and no suggestions at all: the topic stays entirely under manual control.
    training_excluded_categories: list[str] = Field(default_factory=list)
    # False: auto-training is paused (the spec's name): no analysis, no new suggestions,
    # nothing auto-published; the bot keeps answering, people can still decide what is
    # queued, and published changes stay watched.
    enabled: StrictBool = True
    plan: Plan = Plan.professional
    timezone: str = "UTC"
    # Below this confidence (0-100) `answer` tells the chatbot to hand over to a human. High
    # on purpose: a wrong answer costs more than a hand-over, which also teaches the cycle.
    answer_threshold: StrictInt = Field(default=70, ge=0, le=100)
    # Learn from the agents (core.learning): a question a human agent answered by restating an
    # entry's answer is recognised as that entry's from the next cycle on, without waiting for
    # a reviewer (it is not a KB trigger; add-variants suggestions still propose it, and
    # rejecting one blocks it). False: only reviewed phrasings are recognised.
    learn_from_agents: StrictBool = True
    # A failed question joins a gap when the mean of its question similarity and its agent
    # reply similarity to the gap reaches this (question-only items need 0.10 more).
    gap_similarity: float = Field(default=0.65, gt=0.0, lt=1.0)
    # Priorities (docs/signals.md): a new question is critical from this many conversations
    # in 7 days; an existing answer is medium (else low) when it is incomplete or satisfies
    # fewer than `medium_satisfaction` % of the customers it was given to in 30 days.
    critical_weekly_occurrences: StrictInt = Field(default=5, ge=1, le=100_000)
    medium_satisfaction: StrictInt = Field(default=60, ge=0, le=100)
    # How many of the customers' phrasings a suggestion proposes as new triggers, at most.
    max_triggers: StrictInt = Field(default=8, ge=1, le=50)
    # Watch after publish (core.policy.watch): for `watch_days` after a change goes live, once
    # `watch_min_answers` customers got the entry, its satisfaction must not fall more than
    # `watch_max_drop` points below the level before the change, nor under
    # `medium_satisfaction`; otherwise a critical "consider rolling back" suggestion is raised.
    watch_days: StrictInt = Field(default=14, ge=1, le=90)
    watch_min_answers: StrictInt = Field(default=10, ge=3, le=100_000)
    watch_max_drop: StrictInt = Field(default=15, ge=1, le=100)
    # Slack review (bot/): the channel cards and announcements go to (one bot per channel),
    # and who may decide from Slack: these users, and the members of these user groups.
    slack_channel: str | None = None
    slack_approvers: list[str] = Field(default_factory=list, max_length=500)
    slack_approver_groups: list[str] = Field(default_factory=list, max_length=50)
    # Email review (bot/mail/): who gets the digest and may decide by replying to it or
    # through its one-click links. Stored lowercased, each once.
    email_recipients: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("email_recipients")
    @classmethod
    def _email_addresses(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for raw in value:
            address = raw.strip().lower()
            if not EMAIL_RE.match(address):
                raise ValueError(f"{raw!r} is not an email address (like "
                                 "manager@example.com, without a name)")
            if address not in out:
                out.append(address)
        return out

    @field_validator("slack_channel")
    @classmethod
    def _slack_channel_id(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.strip()
        if not SLACK_CHANNEL_RE.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (like C0123ABCD; in Slack: "
                             "channel details → About → Channel ID)")
        return value

    @field_validator("slack_approvers")
    @classmethod
    def _slack_user_ids(cls, value: list[str]) -> list[str]:
        return _slack_ids(value, SLACK_USER_RE, "user id (like U0123ABCD; in Slack: profile "
                          "→ ⋮ → Copy member ID)")

    @field_validator("slack_approver_groups")
    @classmethod
    def _slack_group_ids(cls, value: list[str]) -> list[str]:
        return _slack_ids(value, SLACK_GROUP_RE, "user group id (like S0123ABCD)")

    @field_validator("custom_categories")
    @classmethod
    def _distinct_custom(cls, value: list[CustomCategory]) -> list[CustomCategory]:
        seen: set[str] = set()
        for cat in value:
            if cat.name in seen:
                raise ValueError(f"category {cat.name!r} is defined twice")
            seen.add(cat.name)
        return value

    @field_validator("excluded_categories", "training_excluded_categories")
    @classmethod
    def _known_categories(cls, value: list[str], info: ValidationInfo) -> list[str]:
        custom = info.data.get("custom_categories")
        if custom is None:
            # custom_categories itself was invalid; its own error names it.
            return value
        known = set(BUILTIN_CATEGORY_NAMES) | {c.name for c in custom}
        out: list[str] = []
        for raw in value:
            name = raw.strip().lower()
            if name not in known:
                raise ValueError(f"unknown category {raw!r}: known are "
                                 f"{', '.join(sorted(known))} (define it in custom_categories)")
            if name not in out:
                out.append(name)
        return out

    def categories(self) -> list[Category]:
        """The built-in categories, then the bot's own."""
        return [*BUILTIN_CATEGORIES, *(Category(name=c.name, description=c.description,
                                                keywords=tuple(c.keywords))
                                       for c in self.custom_categories)]

    def category_names(self) -> list[str]:
        return [*sorted(BUILTIN_CATEGORY_NAMES), *(c.name for c in self.custom_categories)]

    def auto_publish_above(self) -> int | None:
        """The confidence a suggestion must exceed to publish itself; None: never."""
        if self.autonomy is Autonomy.moderate:
            return self.moderate_auto_publish_above
        if self.autonomy is Autonomy.advanced:
            return self.advanced_auto_publish_above
        return None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


def _slack_ids(values: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    out: list[str] = []
    for raw in values:
        value = raw.strip()
        if not pattern.match(value):
            raise ValueError(f"{raw!r} is not a Slack {what}")
        if value not in out:
            out.append(value)
    return out


def bot_settings(bot: Bot) -> BotSettings:
    return BotSettings.model_validate(bot.settings or {})


def create_bot(session: Session, *, slug: str, name: str) -> Bot:
    if not SLUG_RE.match(slug):
        raise ValueError("slug must be 1-64 lowercase letters, digits or dashes")
    if session.exec(select(Bot).where(Bot.slug == slug)).first() is not None:
        raise Conflict(f"bot {slug!r} already exists")
    bot = Bot(slug=slug, name=name, settings=BotSettings().model_dump(mode="json"))
    session.add(bot)
    session.flush()
    return bot


def get_bot(session: Session, *, slug: str) -> Bot:
    bot = session.exec(select(Bot).where(Bot.slug == slug)).first()
    if bot is None:
        raise NotFound(f"bot {slug!r} not found")
    return bot


def merge_settings(current: BotSettings, patch: dict[str, Any]) -> BotSettings:
    """Apply a partial update; raises pydantic.ValidationError naming the bad field."""
    return BotSettings.model_validate({**current.model_dump(mode="json"), **patch})


# -- API keys -------------------------------------------------------------------------


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def issue_key(session: Session, *, bot_id: str | None, name: str,
              scope: KeyScope = KeyScope.chatbot) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned once and only its hash is stored. A bot's key
    has `scope`; the admin key (no bot) reaches everything."""
    key = ("atk_" if bot_id else "atadm_") + secrets.token_urlsafe(32)
    row = ApiKey(bot_id=bot_id, name=name, key_hash=hash_key(key), prefix=key[:10],
                 scope=scope if bot_id else KeyScope.admin)
    session.add(row)
    session.flush()
    return row, key


def ensure_admin_key(session: Session, *, configured: str | None) -> str | None:
    """Make sure an admin key exists. Returns a newly generated key (to print once) or None."""
    if configured:
        return None
    admin = session.exec(
        select(ApiKey).where(ApiKey.bot_id.is_(None), ApiKey.revoked_at.is_(None))  # type: ignore[union-attr]
    ).first()
    if admin is not None:
        return None
    _, key = issue_key(session, bot_id=None, name="admin (generated)")
    return key


def authenticate(session: Session, *, key: str, configured_admin: str | None) -> ApiKey | None:
    """The key row for a presented key, or None. Constant-time for the configured admin key."""
    if configured_admin and secrets.compare_digest(key.encode(), configured_admin.encode()):
        return ApiKey(id="admin", bot_id=None, name="admin", key_hash="", prefix="",
                      scope=KeyScope.admin)
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.bot_id is None and configured_admin:
        # Once AUTOTRAIN_API_KEY is set it is the only admin key.
        return None
    return row


def revoke_key(session: Session, *, bot_id: str, key_id: str) -> None:
    row = session.get(ApiKey, key_id)
    if row is None or row.bot_id != bot_id:
        raise NotFound(f"key {key_id!r} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
