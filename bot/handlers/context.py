"""Who is acting, on which bot and which message: resolved from the request, never a payload."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import card_text, notice, suggestion_card
from bot.slack_app import SlackDeps
from bot.slack_notify import show
from core.errors import DomainError, NotFound
from core.policy.commands import Actor, Channel
from core.review import BotRef, Outcome, SuggestionView

log = logging.getLogger(__name__)

# A decision that takes longer than this shows a working state on its card first.
WORKING_AFTER_SECONDS = 0.4


@dataclass(frozen=True)
class Clicker:
    """The request's user and where they clicked: a card in a channel, App Home or a modal."""

    user: str
    team: str | None
    channel: str | None
    ts: str | None

    @property
    def actor(self) -> Actor:
        return Actor(name=self.user, channel=Channel.slack)


def clicker(body: dict[str, Any]) -> Clicker:
    user = body.get("user") or {}
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    return Clicker(user=str(user.get("id", "")),
                   team=user.get("team_id") or (body.get("team") or {}).get("id"),
                   channel=channel, ts=container.get("message_ts"))


async def bot_for(deps: SlackDeps, who: Clicker, suggestion_id: str | None) -> BotRef:
    """The bot acted on: the review channel's own; from App Home or a DM, the suggestion's
    (the approver check then applies to that bot)."""
    if who.channel:
        bot = await asyncio.to_thread(deps.review.bot_for_slack_channel, who.channel)
        if bot is not None:
            return bot
    if suggestion_id:
        return await asyncio.to_thread(deps.review.owner_of, suggestion_id)
    raise NotFound("this channel is not a review channel of any bot")


async def tell(client: AsyncWebClient, who: Clicker, text: str) -> None:
    """A short message only the clicker sees (a DM when there is no channel: App Home)."""
    try:
        if who.channel:
            await client.chat_postEphemeral(channel=who.channel, user=who.user, text=text,
                                            blocks=notice(text))
        else:
            await client.chat_postMessage(channel=who.user, text=text, blocks=notice(text))
    except SlackApiError as exc:
        log.warning("could not tell %s: %s", who.user, exc.response.get("error"))


async def may_decide(deps: SlackDeps, client: AsyncWebClient, who: Clicker, bot: BotRef, *,
                     what: str, suggestion_id: str | None = None,
                     entry_id: str | None = None) -> bool:
    """The approver check for every mutating action; a refusal is told and audited."""
    verdict = await deps.approvers.check(client, bot, who.user)
    if not verdict.allowed:
        await asyncio.to_thread(deps.review.refused, bot, who.actor, what=what,
                                suggestion_id=suggestion_id, entry_id=entry_id)
        await tell(client, who, verdict.reason)
    return verdict.allowed


async def show_card(deps: SlackDeps, client: AsyncWebClient, view: SuggestionView) -> None:
    """Re-render the suggestion's card where it was posted (alone, or in its digest). A click
    on another message (an announcement's Undo) updates the card, not that message."""
    await show(deps.review, client, view)


async def run(deps: SlackDeps, client: AsyncWebClient, who: Clicker, bot: BotRef,
              command: Any) -> Outcome | None:
    """One command through the review door. A domain error (already decided by someone else,
    not found, not allowed) is told to the clicker, and the card shows the current state."""
    work = asyncio.ensure_future(asyncio.to_thread(deps.review.execute, command, bot=bot))
    sid = getattr(command, "suggestion_id", None)
    finished, _ = await asyncio.wait({work}, timeout=WORKING_AFTER_SECONDS)
    if not finished and sid:
        # Slow today (a busy database, an index far away): say so on the card at once.
        await _working(deps, client, sid, bot, who)
    try:
        done: Outcome = await work
    except DomainError as exc:
        await tell(client, who, str(exc))
        if sid:
            try:
                view = await asyncio.to_thread(deps.review.card, sid, bot=bot)
            except NotFound:
                return None
            await show_card(deps, client, view)
        return None
    if done.suggestion is not None:
        await show_card(deps, client, done.suggestion)
    deps.changed()
    return done


async def _working(deps: SlackDeps, client: AsyncWebClient, sid: str, bot: BotRef,
                   who: Clicker) -> None:
    posted = await asyncio.to_thread(deps.review.posted, sid, channel=Channel.slack)
    if posted is None or posted[2] != "card":
        return  # a digest is re-rendered once the decision is in
    view = await asyncio.to_thread(deps.review.card, sid, bot=bot)
    note = ContextBlock(elements=[MarkdownTextObject(text=f"⏳ Working on <@{who.user}>'s "
                                                          "decision…")])
    try:
        await client.chat_update(channel=posted[0], ts=posted[1], text=card_text(view),
                                 blocks=[*suggestion_card(view), note])
    except SlackApiError as exc:
        log.warning("working state not shown: %s", exc.response.get("error"))


def reference() -> str:
    """An id a user can quote when reporting an unexpected error."""
    return uuid.uuid4().hex[:12]
