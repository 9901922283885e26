"""Suggestion card buttons and their modals: approve, edit, reject, defer, test, undo."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import defer_modal, edit_modal, reject_modal, suggestion_of_block, test_modal
from bot.blocks.text import INPUT_VALUE, clip
from bot.handlers.context import Clicker, bot_for, clicker, may_decide, run, tell
from bot.ids import ActionId, BlockId, CallbackId, CardPayload, DeferChoice, ModalMeta
from bot.slack_app import SlackDeps
from core.errors import DomainError
from core.policy.commands import (
    Approve,
    Defer,
    EditAndApprove,
    Reject,
    RejectReason,
    UndoSuggestion,
)
from core.review import BotRef

# A picked date means "back in the queue that morning" in the bot's timezone.
DEFER_HOUR = time(9, 0)


def _payload(body: dict[str, Any]) -> CardPayload | None:
    """Which suggestion a click is about: a button's value, or (a select has no value) the
    card's actions block id."""
    try:
        action = body["actions"][0]
    except (KeyError, IndexError):
        return None
    if action.get("value"):
        try:
            return CardPayload.model_validate_json(action["value"])
        except ValidationError:
            return None
    sid = suggestion_of_block(str(action.get("block_id") or ""))
    return CardPayload(suggestion_id=sid) if sid else None


def _meta(body: dict[str, Any]) -> ModalMeta | None:
    try:
        return ModalMeta.model_validate_json(body["view"].get("private_metadata") or "")
    except (ValidationError, KeyError):
        return None


def _value(body: dict[str, Any], block: BlockId, action: ActionId) -> Any:
    """A submitted modal input: its text, selected option value or date (None if empty)."""
    state = (((body.get("view") or {}).get("state") or {}).get("values") or {})
    got = (state.get(block) or {}).get(action) or {}
    if "selected_option" in got:
        return (got["selected_option"] or {}).get("value")
    if "selected_date" in got:
        return got["selected_date"]
    return got.get("value")


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def register(app: AsyncApp, deps: SlackDeps) -> None:
    review = deps.review

    async def target(body: dict[str, Any], client: AsyncWebClient, *, what: str,
                     ) -> tuple[Clicker, BotRef, str] | None:
        """Parse the click, resolve the bot and check the clicker may decide."""
        who = clicker(body)
        payload = _payload(body)
        if payload is None:
            await tell(client, who, "This button is from an older version of the app; use "
                                    "`/autotrain queue` to see the current cards.")
            return None
        try:
            bot = await bot_for(deps, who, payload.suggestion_id)
        except DomainError as exc:
            await tell(client, who, str(exc))
            return None
        if not await may_decide(deps, client, who, bot, what=what,
                                suggestion_id=payload.suggestion_id):
            return None
        return who, bot, payload.suggestion_id

    async def open_modal(body: dict[str, Any], client: AsyncWebClient, who: Clicker,
                         bot: BotRef, sid: str, build: Any) -> None:
        try:
            view = await asyncio.to_thread(review.card, sid, bot=bot)
        except DomainError as exc:
            await tell(client, who, str(exc))
            return
        if not view.is_open:
            await tell(client, who, f"This suggestion is already {view.status_words}.")
            return
        meta = ModalMeta(suggestion_id=sid, bot_id=bot.id, channel=who.channel, ts=who.ts)
        await client.views_open(trigger_id=body["trigger_id"], view=build(view, meta))

    # -- buttons ----------------------------------------------------------------------------

    @app.action(ActionId.approve)
    async def on_approve_clicked(ack: AsyncAck, body: dict[str, Any],
                                 client: AsyncWebClient) -> None:
        await ack()
        got = await target(body, client, what="approve")
        if got is not None:
            who, bot, sid = got
            await run(deps, client, who, bot, Approve(suggestion_id=sid, actor=who.actor))

    @app.action(ActionId.undo)
    async def on_undo_clicked(ack: AsyncAck, body: dict[str, Any],
                              client: AsyncWebClient) -> None:
        await ack()
        got = await target(body, client, what="undo")
        if got is not None:
            who, bot, sid = got
            done = await run(deps, client, who, bot,
                             UndoSuggestion(suggestion_id=sid, actor=who.actor))
            if done is not None:
                await tell(client, who, done.message)

    @app.action(ActionId.edit)
    async def on_edit_clicked(ack: AsyncAck, body: dict[str, Any],
                              client: AsyncWebClient) -> None:
        await ack()
        got = await target(body, client, what="edit")
        if got is not None:
            await open_modal(body, client, *got, edit_modal)

    @app.action(ActionId.reject)
    async def on_reject_clicked(ack: AsyncAck, body: dict[str, Any],
                                client: AsyncWebClient) -> None:
        await ack()
        got = await target(body, client, what="reject")
        if got is not None:
            await open_modal(body, client, *got, reject_modal)

    @app.action(ActionId.test)
    async def on_test_clicked(ack: AsyncAck, body: dict[str, Any],
                              client: AsyncWebClient) -> None:
        # Trying a suggestion changes nothing: anyone in the review channel may.
        await ack()
        who = clicker(body)
        payload = _payload(body)
        if payload is None:
            return
        try:
            bot = await bot_for(deps, who, payload.suggestion_id)
        except DomainError as exc:
            await tell(client, who, str(exc))
            return
        await open_modal(body, client, who, bot, payload.suggestion_id,
                         lambda view, meta: test_modal(view, meta))

    @app.action(ActionId.defer)
    async def on_defer_chosen(ack: AsyncAck, body: dict[str, Any],
                              client: AsyncWebClient) -> None:
        await ack()
        got = await target(body, client, what="defer")
        if got is None:
            return
        who, bot, sid = got
        choice = ((body["actions"][0].get("selected_option") or {}).get("value"))
        if choice == DeferChoice.pick:
            await open_modal(body, client, who, bot, sid, defer_modal)
            return
        days = 7 if choice == DeferChoice.week else 1
        await run(deps, client, who, bot, Defer(
            suggestion_id=sid, actor=who.actor,
            until=datetime.now(UTC) + timedelta(days=days)))

    # -- modal submissions --------------------------------------------------------------------

    async def submitted(body: dict[str, Any], client: AsyncWebClient, *, what: str,
                        ) -> tuple[Clicker, BotRef, str] | None:
        """The modal's suggestion and bot, re-checked server-side: private_metadata only
        says which suggestion, never who may decide it."""
        meta = _meta(body)
        if meta is None or meta.suggestion_id is None:
            return None
        base = clicker(body)
        who = Clicker(user=base.user, team=base.team, channel=meta.channel, ts=meta.ts)
        try:
            bot = await bot_for(deps, who, meta.suggestion_id)
        except DomainError as exc:
            await tell(client, who, str(exc))
            return None
        if not await may_decide(deps, client, who, bot, what=what,
                                suggestion_id=meta.suggestion_id):
            return None
        return who, bot, meta.suggestion_id

    @app.view(CallbackId.edit)
    async def on_edit_submitted(ack: AsyncAck, body: dict[str, Any],
                                client: AsyncWebClient) -> None:
        answer = (_value(body, BlockId.answer, ActionId.answer_input) or "").strip()
        if not answer:
            await ack(response_action="errors", errors={
                BlockId.answer: "Write the answer customers will get (it cannot be empty)."})
            return
        await ack()
        got = await submitted(body, client, what="edit")
        if got is not None:
            who, bot, sid = got
            variants = _lines(_value(body, BlockId.variants, ActionId.variants_input))
            kept = await asyncio.to_thread(_longer_than_the_box, deps, sid, bot, answer)
            await run(deps, client, who, bot, EditAndApprove(
                suggestion_id=sid, actor=who.actor, answer=None if kept else answer,
                variants=variants))

    @app.view(CallbackId.reject)
    async def on_reject_submitted(ack: AsyncAck, body: dict[str, Any],
                                  client: AsyncWebClient) -> None:
        raw = _value(body, BlockId.reason, ActionId.reason_select)
        if raw not in RejectReason.__members__:
            await ack(response_action="errors",
                      errors={BlockId.reason: "Pick why this suggestion is rejected."})
            return
        await ack()
        got = await submitted(body, client, what="reject")
        if got is not None:
            who, bot, sid = got
            comment = (_value(body, BlockId.comment, ActionId.comment_input) or "").strip()
            await run(deps, client, who, bot, Reject(
                suggestion_id=sid, actor=who.actor, reason=RejectReason(raw),
                comment=comment[:2_000] or None))

    @app.view(CallbackId.defer)
    async def on_defer_submitted(ack: AsyncAck, body: dict[str, Any],
                                 client: AsyncWebClient) -> None:
        raw = _value(body, BlockId.date, ActionId.date_input)
        try:
            day = date.fromisoformat(raw or "")
        except ValueError:
            await ack(response_action="errors", errors={BlockId.date: "Pick a date."})
            return
        if day <= datetime.now(UTC).date():
            await ack(response_action="errors",
                      errors={BlockId.date: "Pick a day after today."})
            return
        await ack()
        got = await submitted(body, client, what="defer")
        if got is not None:
            who, bot, sid = got
            until = datetime.combine(day, DEFER_HOUR, tzinfo=ZoneInfo(bot.settings.timezone))
            await run(deps, client, who, bot, Defer(suggestion_id=sid, actor=who.actor,
                                                    until=until))

    @app.view(CallbackId.test)
    async def on_test_submitted(ack: AsyncAck, body: dict[str, Any],
                                client: AsyncWebClient) -> None:
        question = (_value(body, BlockId.question, ActionId.question_input) or "").strip()
        meta = _meta(body)
        if not question or meta is None or meta.suggestion_id is None:
            await ack(response_action="errors",
                      errors={BlockId.question: "Type a question a customer might ask."})
            return
        who = clicker(body)
        who = Clicker(user=who.user, team=who.team, channel=meta.channel, ts=meta.ts)
        try:
            bot = await bot_for(deps, who, meta.suggestion_id)
            view = await asyncio.to_thread(review.card, meta.suggestion_id, bot=bot)
            result = await asyncio.to_thread(review.sandbox, bot, question=question[:2_000],
                                             suggestion_ids=[meta.suggestion_id])
        except DomainError as exc:
            await ack(response_action="errors", errors={BlockId.question: str(exc)[:150]})
            return
        # The answer shows in the same modal, so another question can be tried at once.
        await ack(response_action="update",
                  view=test_modal(view, meta, question=question, result=result))


def _longer_than_the_box(deps: SlackDeps, sid: str, bot: BotRef, submitted: str) -> bool:
    """The drafted answer did not fit Slack's box and came back as the box showed it,
    unchanged: keep the whole answer rather than save its first 3,000 characters."""
    try:
        current = deps.review.card(sid, bot=bot).answer.strip()
    except DomainError:
        return False
    return len(current) > INPUT_VALUE and submitted == clip(current, INPUT_VALUE)
