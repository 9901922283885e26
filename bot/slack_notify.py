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
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import (
    announcement_message,
    announcement_text,
    card_text,
    digest_message,
    digest_text,
    suggestion_card,
    suggestion_of_block,
)
from core.policy.commands import Channel
from core.review import BotRef, Review, SuggestionView
from core.status import Priority, SuggestionStatus

log = logging.getLogger(__name__)

DIGEST = "digest"  # a PostedCard inside a digest message
# The most urgent suggestions shown as cards in a digest; the rest are counted.
DIGEST_CARDS = 5


@dataclass
class SlackRound:
    cards_posted: list[str] = field(default_factory=list)  # suggestion ids
    cards_updated: list[str] = field(default_factory=list)
    announcements: list[int] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)  # bot slugs
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


async def show(review: Review, client: AsyncWebClient, view: SuggestionView) -> bool:
    """Re-render the message that shows a suggestion's card, with the same builder as when it
    was posted: the card alone, or the whole digest it sits in. False if it has no card."""
    posted = await asyncio.to_thread(review.posted, view.id, channel=Channel.slack)
    if posted is None:
        return False
    channel, ts, message = posted
    if message == DIGEST:
        bot = await asyncio.to_thread(review.bot_by_id, view.bot_id)
        views = await asyncio.to_thread(review.message_cards, channel=Channel.slack,
                                        address=channel, ref=ts)
        stats = await asyncio.to_thread(review.stats, bot)
        rest = await asyncio.to_thread(review.unposted_count, bot, Channel.slack)
        await client.chat_update(channel=channel, ts=ts,
                                 text=digest_text(stats),
                                 blocks=digest_message(stats, views, total=len(views) + rest))
    else:
        views = [view]
        await client.chat_update(channel=channel, ts=ts, text=card_text(view),
                                 blocks=suggestion_card(view))
    for shown in views:
        await asyncio.to_thread(review.card_shown, shown.id, channel=Channel.slack,
                                status=shown.status)
    return True


async def sync_cards(review: Review, client: AsyncWebClient, bot: BotRef, *,
                     report: SlackRound | None = None) -> SlackRound:
    """Update cards whose suggestion changed elsewhere (decided by API or email, withdrawn by
    the cycle, back from a deferral), with the same builder as a click."""
    report = report or SlackRound()
    done: set[tuple[str, str]] = set()
    for view, channel, ts, _ in await asyncio.to_thread(review.stale_cards, bot,
                                                         Channel.slack):
        if (channel, ts) in done:
            continue  # a digest re-rendered for another of its cards already shows this one
        try:
            await show(review, client, view)
        except SlackApiError as exc:
            report.failures += 1
            log.warning("card for suggestion %s not updated: %s", view.id,
                        exc.response.get("error"))
            continue
        done.add((channel, ts))
        report.cards_updated.append(view.id)
    return report


async def post_digest(review: Review, client: AsyncWebClient, bot: BotRef, *,
                      cards: int = DIGEST_CARDS) -> dict[str, Any]:
    """One digest message: the period's numbers, the most urgent suggestions that have no
    card yet as cards (a card is never posted twice), and how many more wait."""
    channel = bot.settings.slack_channel
    if not channel:
        return {"sent": False, "reason": f"bot {bot.slug!r} has no slack_channel"}
    stats = await asyncio.to_thread(review.stats, bot)
    waiting = await asyncio.to_thread(review.unposted, bot, Channel.slack, priority=None)
    blocks = digest_message(stats, waiting[:cards], total=len(waiting))
    # What fitted: the builder keeps a card whole or leaves it out.
    shown_ids = {sid for b in blocks if (sid := suggestion_of_block(b.block_id or ""))}
    shown = [v for v in waiting if v.id in shown_ids]
    resp = await client.chat_postMessage(channel=channel, blocks=blocks,
                                         text=digest_text(stats))
    ts, posted_in = str(resp["ts"]), str(resp.get("channel") or channel)
    recorded = [v.id for v in shown if await asyncio.to_thread(
        review.record_post, bot, v, channel=Channel.slack, address=posted_in, ref=ts,
        message=DIGEST)]
    if len(recorded) != len(shown):
        # Another process posted some of these cards meanwhile: show the digest without them.
        views = await asyncio.to_thread(review.message_cards, channel=Channel.slack,
                                        address=posted_in, ref=ts)
        await client.chat_update(channel=posted_in, ts=ts,
                                 text=digest_text(stats),
                                 blocks=digest_message(stats, views, total=len(waiting)))
    return {"sent": True, "channel": posted_in, "ts": ts, "cards": recorded,
            "more": len(waiting) - len(recorded), "pending": stats.pending}


async def post_due_digest(review: Review, client: AsyncWebClient, bot: BotRef, *,
                          report: SlackRound | None = None,
                          at: datetime | None = None) -> SlackRound:
    """The digest of the bot's `notify_frequency`, when its time has come in the bot's
    timezone and no process sent it yet."""
    report = report or SlackRound()
    period = await asyncio.to_thread(review.digest_due, bot, Channel.slack, at=at)
    # Nothing waiting: no digest (it goes once something arrives in the period).
    if period is None or not await asyncio.to_thread(
            review.queue, bot, status=SuggestionStatus.pending, limit=1):
        return report
    if not await asyncio.to_thread(review.record_digest, bot, Channel.slack, period):
        return report
    try:
        sent = await post_digest(review, client, bot)
    except SlackApiError as exc:
        report.failures += 1
        log.warning("digest for bot %s not posted: %s", bot.slug, exc.response.get("error"))
        return report
    report.digests.append(bot.slug)
    report.cards_posted += sent.get("cards", [])
    return report


async def slack_round(review: Review, client: AsyncWebClient,
                      bots: list[BotRef] | None = None) -> SlackRound:
    """Everything due on Slack for every bot with a review channel: cards first updated,
    then announcements, new critical cards, and the scheduled digest."""
    report = SlackRound()
    for bot in bots if bots is not None else await asyncio.to_thread(review.bots):
        if not bot.settings.slack_channel:
            continue
        await sync_cards(review, client, bot, report=report)
        await post_announcements(review, client, bot, report=report)
        await post_cards(review, client, bot, report=report)
        await post_due_digest(review, client, bot, report=report)
    return report
