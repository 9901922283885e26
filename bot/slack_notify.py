"""What autotrain posts to a bot's Slack review channel: cards, announcements, card updates.

Each function is safe to run twice (jobs are delivered at least once): a card is recorded
per suggestion and channel, an announcement per channel, and a card update only happens
when the card shows an older state. A failed post is logged and left for the next round,
so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import announcement_message, suggestion_card
from bot.blocks.cards import card_text
from bot.blocks.messages import announcement_text
from core.policy.commands import Channel
from core.review import BotRef, Review
from core.status import Priority

log = logging.getLogger(__name__)


@dataclass
class SlackRound:
    cards_posted: list[str] = field(default_factory=list)  # suggestion ids
    cards_updated: list[str] = field(default_factory=list)
    announcements: list[int] = field(default_factory=list)
    failures: int = 0


async def post_cards(review: Review, client: AsyncWebClient, bot: BotRef, *,
                     priority: Priority | None = Priority.critical,
                     limit: int | None = None, report: SlackRound | None = None) -> SlackRound:
    """Post a card for each pending suggestion (of `priority`; None: any) that has none."""
    report = report or SlackRound()
    channel = bot.settings.slack_channel
    if not channel:
        return report
    views = await asyncio.to_thread(review.unposted, bot, Channel.slack, priority=priority)
    for view in views[:limit]:
        try:
            resp = await client.chat_postMessage(channel=channel, text=card_text(view),
                                                 blocks=suggestion_card(view))
        except SlackApiError as exc:
            report.failures += 1
            log.warning("card for suggestion %s not posted: %s", view.id,
                        exc.response.get("error"))
            continue
        ts = str(resp["ts"])
        posted_in = str(resp.get("channel") or channel)
        if await asyncio.to_thread(review.record_post, bot, view, channel=Channel.slack,
                                   address=posted_in, ref=ts):
            report.cards_posted.append(view.id)
        else:
            # Another process posted it a moment ago: ours is the duplicate.
            await client.chat_delete(channel=posted_in, ts=ts)
    return report


async def post_announcements(review: Review, client: AsyncWebClient, bot: BotRef, *,
                             report: SlackRound | None = None) -> SlackRound:
    """Post each announcement Slack has not delivered yet, oldest first, once."""
    report = report or SlackRound()
    channel = bot.settings.slack_channel
    if not channel:
        return report
    for note in await asyncio.to_thread(review.pending_announcements, bot, Channel.slack):
        try:
            await client.chat_postMessage(channel=channel, text=announcement_text(note),
                                          blocks=announcement_message(note))
        except SlackApiError as exc:
            report.failures += 1
            log.warning("announcement %s not posted: %s", note.id, exc.response.get("error"))
            break  # keep the order: the rest waits for the next round
        await asyncio.to_thread(review.mark_delivered, bot, Channel.slack, [note.id])
        report.announcements.append(note.id)
    return report


async def sync_cards(review: Review, client: AsyncWebClient, bot: BotRef, *,
                     report: SlackRound | None = None) -> SlackRound:
    """Update cards whose suggestion changed elsewhere (decided by API or email, withdrawn by
    the cycle, back from a deferral), with the same builder as a click."""
    report = report or SlackRound()
    for view, channel, ts in await asyncio.to_thread(review.stale_cards, bot, Channel.slack):
        try:
            await client.chat_update(channel=channel, ts=ts, text=card_text(view),
                                     blocks=suggestion_card(view))
        except SlackApiError as exc:
            report.failures += 1
            log.warning("card for suggestion %s not updated: %s", view.id,
                        exc.response.get("error"))
            continue
        await asyncio.to_thread(review.card_shown, view.id, channel=Channel.slack,
                                status=view.status)
        report.cards_updated.append(view.id)
    return report


async def slack_round(review: Review, client: AsyncWebClient,
                      bots: list[BotRef] | None = None) -> SlackRound:
    """Everything due on Slack for every bot with a review channel: cards first updated,
    then announcements, then new critical cards."""
    report = SlackRound()
    for bot in bots if bots is not None else await asyncio.to_thread(review.bots):
        if not bot.settings.slack_channel:
            continue
        await sync_cards(review, client, bot, report=report)
        await post_announcements(review, client, bot, report=report)
        await post_cards(review, client, bot, report=report)
    return report
