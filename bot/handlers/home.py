"""App Home: each reviewer's pending queue and the week's numbers, refreshed when they change."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import clip, escape, home_view
from bot.blocks.text import CONTEXT_TEXT, VIEW_BLOCKS
from bot.slack_app import SlackDeps
from core.review import BotRef, Period

log = logging.getLogger(__name__)

# Someone who opened the Home tab this recently keeps getting fresh versions of it; after
# that, the next visit publishes one (app_home_opened), so nobody idle costs API calls.
AUDIENCE_WINDOW = timedelta(hours=24)
# Queue lines per bot: enough to decide from, and several bots still fit in one view.
HOME_ITEMS = 25


@dataclass
class HomeAudience:
    """Who opened the Home tab lately, and a fingerprint of what each was last shown, so a
    refresh publishes only homes whose content changed. In memory: a restart forgets it,
    and the next visit brings each person back."""

    opened: dict[str, datetime] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)
    # One refresh at a time; a request during one makes it run again with the newest state.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    again: bool = False

    def visit(self, user: str, *, at: datetime | None = None) -> None:
        self.opened[user] = at or datetime.now(UTC)

    def recent(self, *, at: datetime | None = None) -> list[str]:
        """Users who opened the Home tab within AUDIENCE_WINDOW; older visits are forgotten."""
        cutoff = (at or datetime.now(UTC)) - AUDIENCE_WINDOW
        for user in [u for u, when in self.opened.items() if when < cutoff]:
            del self.opened[user]
            self.shown.pop(user, None)
        return list(self.opened)


# One audience per Slack app, found from its deps (SlackDeps is an unhashable dataclass; its
# Web API client is made once per app and lives as long as it).
_AUDIENCES: weakref.WeakKeyDictionary[AsyncWebClient, HomeAudience] = \
    weakref.WeakKeyDictionary()


def audience(deps: SlackDeps) -> HomeAudience | None:
    """The Home audience of the app `deps` belongs to (None before `register`)."""
    return _AUDIENCES.get(deps.client)


def register(app: AsyncApp, deps: SlackDeps) -> None:
    _AUDIENCES[deps.client] = HomeAudience()
    deps.on_change.append(lambda: refresh_homes(deps))

    @app.event("app_home_opened")
    async def on_app_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        # Bolt acks events itself. The Messages tab opens the same event: not ours to draw.
        user = str(event.get("user") or "")
        if event.get("tab", "home") != "home" or not user:
            return
        who = audience(deps)
        if who is not None:
            who.visit(user)
        await publish_home(deps, client, user, force=True)


async def refresh_homes(deps: SlackDeps) -> int:
    """Re-publish the Home tab of everyone who opened it in the last 24 hours and whose view
    changed since (a decision, a new suggestion, new numbers); the number published. Safe to
    call after every change: unchanged homes cost no Slack call, and calls that arrive during
    a refresh are folded into one more pass."""
    who = audience(deps)
    if who is None:
        return 0
    if who.lock.locked():
        who.again = True
        return 0
    published = 0
    async with who.lock:
        while True:
            who.again = False
            parts = _Parts(deps)
            for user in who.recent():
                if await publish_home(deps, deps.client, user, parts=parts):
                    published += 1
            if not who.again:
                return published


async def publish_home(deps: SlackDeps, client: AsyncWebClient, user: str, *,
                       force: bool = False, parts: _Parts | None = None) -> bool:
    """Publish `user`'s Home tab, unless (without `force`) it would show what it shows now.
    True if published."""
    view = await home_for(deps, user, parts=parts)
    fingerprint = hashlib.sha256(
        json.dumps(view.to_dict(), sort_keys=True).encode()).hexdigest()
    who = audience(deps)
    if not force and who is not None and who.shown.get(user) == fingerprint:
        return False
    # Recorded before the call, so a refresh running meanwhile does not publish it again.
    if who is not None:
        who.shown[user] = fingerprint
    try:
        await client.views_publish(user_id=user, view=view)
    except SlackApiError as exc:
        # Left for the next refresh or visit; one person's failure must not stop the others.
        log.warning("home of %s not published: %s", user, exc.response.get("error"))
        if who is not None and who.shown.get(user) == fingerprint:
            del who.shown[user]
        return False
    return True


class _Parts:
    """Each bot's Home blocks, built once per refresh however many people see them."""

    def __init__(self, deps: SlackDeps) -> None:
        self.deps = deps
        self._bots: list[BotRef] | None = None
        self._blocks: dict[str, list[Block]] = {}

    async def bots(self) -> list[BotRef]:
        """Bots reviewed in Slack (with a review channel), oldest first."""
        if self._bots is None:
            every = await asyncio.to_thread(self.deps.review.bots)
            self._bots = [b for b in every if b.settings.slack_channel]
        return self._bots

    async def blocks(self, bot: BotRef) -> list[Block]:
        if bot.id not in self._blocks:
            review = self.deps.review
            stats = await asyncio.to_thread(review.stats, bot, Period.week)
            items = await asyncio.to_thread(review.queue, bot)
            self._blocks[bot.id] = list(
                home_view(stats, items[:HOME_ITEMS], total=len(items)).blocks or [])
        return self._blocks[bot.id]


async def home_for(deps: SlackDeps, user: str, *, parts: _Parts | None = None) -> View:
    """The Home tab `user` sees. Bots the user approves, one after another (oldest first), and
    a line naming the other bots reviewed in Slack; someone who approves none sees every bot.
    Each bot's part is `home_view`'s own, so the Home reads like `/autotrain queue` and
    `stats`; bots that do not fit in Slack's 100 blocks are named in the last line."""
    parts = parts or _Parts(deps)
    bots = await parts.bots()
    if not bots:
        return View(type="home", blocks=[_section(
            "No bot is reviewed in Slack yet. An admin sets a bot's `slack_channel` and "
            "`slack_approvers` (PATCH /api/v1/bots/{slug}/settings); its queue then shows "
            "here.")])
    mine = [b for b in bots if await _approves(deps, b, user)]
    shown, others = (mine, [b for b in bots if b not in mine]) if mine else (bots, [])
    blocks: list[Block] = []
    left_out: list[BotRef] = []
    for bot in shown:
        part = await parts.blocks(bot)
        extra = part if not blocks else [DividerBlock(), *part]
        # One block kept for the line naming the bots left out.
        if left_out or len(blocks) + len(extra) > VIEW_BLOCKS - 1:
            left_out.append(bot)
            continue
        blocks += extra
    rest = left_out + others
    if rest:
        names = ", ".join(f"`{escape(b.slug)}` (<#{b.settings.slack_channel}>)" for b in rest)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=clip(
            f"Also reviewed in Slack: {names} — `/autotrain {escape(rest[0].slug)} queue`",
            CONTEXT_TEXT))]))
    return View(type="home", blocks=blocks)


async def _approves(deps: SlackDeps, bot: BotRef, user: str) -> bool:
    """The approver check itself (user ids and user groups), so the Home leads with the bots
    this person can act on. Group membership is cached by Approvers."""
    return (await deps.approvers.check(deps.client, bot, user)).allowed


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))
