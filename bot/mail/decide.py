"""One decision on one numbered digest item, as a reply command or a one-click link makes it:
the item's number becomes a policy command and goes through the review door."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from core.errors import DomainError, InvalidInput, NotFound
from core.policy.commands import (
    Actor,
    Approve,
    Defer,
    EditAndApprove,
    Reject,
    RejectReason,
    UndoSuggestion,
)
from core.policy.notify import NotificationKind
from core.review import BotRef, DigestNumbers, Numbered, Review

Action = Literal["approve", "reject", "edit", "defer", "undo"]
# A deferred suggestion comes back at this hour of the bot's day (the start of a workday).
DEFER_HOUR = 9
# A confirmation line names the question, this long at most.
QUESTION_SHOWN = 120


@dataclass(frozen=True)
class Decision:
    """What one command on one item came to: shown line by line in the confirmation."""

    command: str  # as the manager could have written it: "approve 3"
    ok: bool
    message: str
    suggestion_id: str | None = None


@dataclass(frozen=True)
class Ask:
    """A decision asked for: the action on a digest number, with what it needs."""

    action: Action
    number: int
    reason: str | None = None
    comment: str | None = None
    answer: str | None = None
    until: date | None = None
    days: int | None = None

    def words(self) -> str:
        return f"{self.action} {self.number}"


def decide(review: Review, bot: BotRef, digest: DigestNumbers, ask: Ask, *,
           actor: Actor) -> Decision:
    """Apply one decision. Every refusal (an unknown number, decided by someone else in the
    meantime, excluded, nothing to undo) comes back as a Decision that says why, never as an
    exception: one bad item must not stop the others."""
    item = digest.find(ask.number)
    if item is None:
        last = max((i.number for i in digest.items), default=0)
        where = f"items are 1 to {last}" if last else "it had no items"
        return Decision(ask.words(), False, f"There is no item {ask.number} in that digest "
                                            f"({where}).")
    sid = item.suggestion_id
    try:
        sid = _suggestion_of(review, bot, item, ask)
        command = _command(review, bot, sid, ask, actor=actor)
        done = review.execute(command, bot=bot)
    except DomainError as exc:
        return Decision(ask.words(), False, _about(review, bot, sid) + str(exc),
                        suggestion_id=sid)
    return Decision(ask.words(), True, _about(review, bot, sid) + done.message,
                    suggestion_id=sid)


def _about(review: Review, bot: BotRef, sid: str | None) -> str:
    """Which question a line is about, so the confirmation reads on its own."""
    if sid is None:
        return ""
    try:
        question = review.card(sid, bot=bot).question
    except DomainError:
        return ""
    short = question if len(question) <= QUESTION_SHOWN else \
        question[:QUESTION_SHOWN - 1].rstrip() + "…"
    return f"“{short}” — "


def _suggestion_of(review: Review, bot: BotRef, item: Numbered, ask: Ask) -> str:
    if item.suggestion_id is not None:
        return item.suggestion_id
    assert item.announcement_id is not None
    note = review.announcement(item.announcement_id, bot=bot)
    undoable = note.kind == NotificationKind.auto_published and note.suggestion_id
    if ask.action != "undo":
        if undoable:
            raise NotFound(f"item {item.number} is an update, not a suggestion: it can only "
                           f"be undone (\"undo {item.number}\")")
        raise NotFound(f"item {item.number} is an update for your information: there is "
                       "nothing to decide on it")
    if not undoable or note.suggestion_id is None:
        raise NotFound(f"item {item.number} cannot be undone: it did not change an answer")
    return note.suggestion_id


def _command(review: Review, bot: BotRef, sid: str, ask: Ask, *, actor: Actor
             ) -> Approve | EditAndApprove | Reject | Defer | UndoSuggestion:
    if ask.action == "approve":
        return Approve(suggestion_id=sid, actor=actor)
    if ask.action == "edit":
        if not (ask.answer or "").strip():
            # Never "approve as it is" for an edit that lost its text on the way.
            raise InvalidInput(f"edit {ask.number} needs the new answer after it "
                               f"(\"edit {ask.number}: …\")", field="answer")
        return EditAndApprove(suggestion_id=sid, actor=actor, answer=ask.answer.strip())
    if ask.action == "reject":
        reason = RejectReason(ask.reason) if ask.reason in RejectReason.__members__.values() \
            else RejectReason.other
        return Reject(suggestion_id=sid, actor=actor, reason=reason, comment=ask.comment)
    if ask.action == "defer":
        return Defer(suggestion_id=sid, actor=actor, until=defer_until(bot, ask))
    return UndoSuggestion(suggestion_id=sid, actor=actor)


def defer_until(bot: BotRef, ask: Ask, *, now: datetime | None = None) -> datetime:
    """"defer 5 2026-12-24" means that morning in the bot's timezone; "defer 5 1w" a week
    from now."""
    zone = ZoneInfo(bot.settings.timezone)
    if ask.until is not None:
        return datetime.combine(ask.until, time(DEFER_HOUR), tzinfo=zone).astimezone(UTC)
    return (now or datetime.now(UTC)) + timedelta(days=ask.days or 7)
