"""Slack action, block and callback ids, and the small typed payloads buttons and modals carry."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ActionId(StrEnum):
    # Suggestion cards
    approve = "suggestion_approve"
    edit = "suggestion_edit"
    reject = "suggestion_reject"
    defer = "suggestion_defer"  # a static select: 1 day / 1 week / pick a date
    test = "suggestion_test"
    undo = "suggestion_undo"
    # Announcements
    rollback_entry = "entry_rollback"  # roll back the announced change to an entry
    # Messages with a link to the queue, App Home
    open_queue = "queue_open"
    # Inputs inside modals
    answer_input = "answer_input"
    variants_input = "variants_input"
    reason_select = "reason_select"
    comment_input = "comment_input"
    question_input = "question_input"
    date_input = "date_input"
    autonomy_select = "autonomy_select"
    frequency_select = "frequency_select"
    excluded_select = "excluded_select"
    limit_input = "limit_input"


class BlockId(StrEnum):
    answer = "answer"
    variants = "variants"
    reason = "reason"
    comment = "comment"
    question = "question"
    date = "date"
    autonomy = "autonomy"
    frequency = "frequency"
    excluded = "excluded"
    limit = "limit"
    result = "result"  # the sandbox's answer, shown in the test modal
    actions = "actions"


class CallbackId(StrEnum):
    edit = "edit_modal"
    reject = "reject_modal"
    defer = "defer_modal"
    test = "test_modal"
    settings = "settings_modal"


class DeferChoice(StrEnum):
    day = "1d"
    week = "1w"
    pick = "pick"


class CardPayload(BaseModel):
    """What a card's button carries: which suggestion. Never trusted for who may act: the
    approver is looked up from the request's user, the bot from the suggestion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suggestion_id: str


class EntryPayload(BaseModel):
    """What an announcement's Roll back button carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry_id: str
    bot_id: str


class ModalMeta(BaseModel):
    """A modal's private_metadata: the suggestion and the card message to update after the
    submission (channel and ts are None when opened from App Home or a command)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suggestion_id: str | None = None
    bot_id: str | None = None
    channel: str | None = None
    ts: str | None = None
