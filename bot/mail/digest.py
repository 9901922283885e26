"""The email digest: numbered once per digest, one message per recipient with their own reply
key and links, queued and sent; on the bot's schedule or on demand."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.charts import resolution_chart
from bot.mail.links import Links
from bot.mail.message import build_message, make_message_id
from bot.mail.render import Digest, DigestAnnouncement, DigestItem, render_digest
from bot.mail.send import Mailer, deliver_due, queue
from core.bots import NotifyFrequency
from core.metrics import Bucket
from core.policy.commands import Channel
from core.policy.notify import NotificationKind
from core.review import BotRef, Period, Review
from core.settings import Settings
from core.status import Priority, SuggestionStatus

log = logging.getLogger(__name__)

# Items in one digest, most urgent first; the rest are counted ("and 12 more").
DIGEST_ITEMS = 25
DIGEST = "digest"


@dataclass
class EmailRound:
    digests: list[str] = field(default_factory=list)
    sent: int = 0
    failed: int = 0


def reply_address(settings: Settings, key: str) -> str | None:
    return settings.email_reply_to.replace("{key}", key) if settings.email_reply_to else None


async def send_digest(review: Review, settings: Settings, mailer: Mailer, bot: BotRef, *,
                      period: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    """Build, queue and send the digest to each of the bot's recipients now. Returns what was
    sent: recipients, items, announcements, and how many messages went or wait for a retry."""
    recipients = list(bot.settings.email_recipients)
    if not recipients:
        return {"sent": False, "reason": f"bot {bot.slug!r} has no email_recipients"}
    built = await asyncio.to_thread(_build, review, settings, bot, recipients, period, at)
    report = await deliver_due(review, mailer, settings, only=built["mail_ids"])
    return {"sent": True, "digest_id": built["digest_id"], "recipients": len(recipients),
            "items": built["items"], "announcements": built["announcements"],
            "more": built["more"], "delivered": len(report.sent),
            "waiting_for_retry": len(report.failed)}


def _build(review: Review, settings: Settings, bot: BotRef, recipients: list[str],
           period: str | None, at: datetime | None) -> dict[str, Any]:
    waiting = review.queue(bot, status=SuggestionStatus.pending, limit=1000)
    shown = waiting[:DIGEST_ITEMS]
    notes = review.pending_announcements(bot, Channel.email)
    stats = review.stats(bot, Period.week if bot.settings.notify_frequency
                         != NotifyFrequency.daily else Period.day)
    metrics = review.metrics(bot, bucket=Bucket.week)
    chart = resolution_chart(metrics["buckets"], activated_at=metrics.get("activated_at"),
                             title=f"{bot.name}: resolved by the bot alone, by week")
    numbers = review.mail.open_digest(bot, suggestions=[v.id for v in shown],
                                      announcements=[n.id for n in notes], period=period)
    links = Links(settings, review)
    domain = settings.email_address.rsplit("@", 1)[-1] or "autotrain.local"
    mail_ids: list[str] = []
    for i, recipient in enumerate(recipients):
        def url(number: int, action: Any, recipient: str = recipient) -> str:
            return links.url(recipient=recipient, bot_id=bot.id, digest_id=numbers.id,
                             number=number, action=action)

        items = [DigestItem(number=n, view=v, approve_url=url(n, "approve"),
                            reject_url=url(n, "reject"))
                 for n, v in enumerate(shown, 1)]
        announcements = [
            DigestAnnouncement(number=len(shown) + n, view=note,
                               undo_url=url(len(shown) + n, "undo")
                               if note.kind == NotificationKind.auto_published
                               and note.suggestion_id else None)
            for n, note in enumerate(notes, 1)]
        key = review.mail.issue_reply_key(bot, digest_id=numbers.id, recipient=recipient,
                                          days=settings.email_key_days)
        reply_to = reply_address(settings, key)
        content = render_digest(Digest(
            digest_id=numbers.id, bot_name=bot.name, bot_slug=bot.slug,
            timezone=bot.settings.timezone, generated_at=at or numbers.created_at,
            stats=stats, items=items, announcements=announcements,
            more=len(waiting) - len(shown), chart_png=chart, reply_enabled=reply_to is not None))
        msg = build_message(
            sender=settings.email_from, to=recipient, content=content, reply_to=reply_to,
            message_id=make_message_id(kind=DIGEST, bot_slug=bot.slug,
                                       ref=f"{numbers.id}.{i}", domain=domain),
            kind=DIGEST, when=at)
        mail_ids.append(queue(review, msg, purpose=DIGEST, bot_id=bot.id))
    # Recorded once queued: a send that fails is retried from the queue, not rebuilt.
    review.mark_delivered(bot, Channel.email, [n.id for n in notes])
    for view in shown:
        review.record_post(bot, view, channel=Channel.email, address=numbers.id,
                           ref=numbers.id, message=DIGEST)
    return {"digest_id": numbers.id, "items": len(shown), "announcements": len(notes),
            "more": len(waiting) - len(shown), "mail_ids": mail_ids}


def _worth_sending(review: Review, bot: BotRef) -> bool:
    """A scheduled digest with nothing to decide and nothing to tell is not sent (it would
    teach managers to ignore the next one); it goes once something arrives that period."""
    return bool(review.queue(bot, status=SuggestionStatus.pending, limit=1)
                or review.pending_announcements(bot, Channel.email, limit=1))


def _first_critical_unsent(review: Review, bot: BotRef) -> str | None:
    waiting = review.unposted(bot, Channel.email, priority=Priority.critical)
    return waiting[0].id if waiting else None


async def email_round(review: Review, settings: Settings, mailer: Mailer, *,
                      bots: list[BotRef] | None = None, at: datetime | None = None
                      ) -> EmailRound:
    """Everything due by email: each bot's scheduled digest (daily or weekly from 09:00 in
    its timezone, once per period; with "critical only", as soon as a critical suggestion
    has not been emailed yet), then retries of messages that failed before."""
    report = EmailRound()
    for bot in bots if bots is not None else await asyncio.to_thread(review.bots):
        if not bot.settings.email_recipients:
            continue
        period = await asyncio.to_thread(review.digest_due, bot, Channel.email, at=at)
        if period is None and bot.settings.notify_frequency == NotifyFrequency.critical_only:
            first = await asyncio.to_thread(_first_critical_unsent, review, bot)
            # Named after the first critical suggestion not emailed yet, so one process
            # sends it; the digest then records every item it showed as emailed.
            period = f"critical-{first[:23]}" if first else None
        if period is None or not await asyncio.to_thread(_worth_sending, review, bot):
            continue
        if not await asyncio.to_thread(review.record_digest, bot, Channel.email, period):
            continue
        sent = await send_digest(review, settings, mailer, bot, period=period, at=at)
        report.digests.append(bot.slug)
        report.sent += sent.get("delivered", 0)
        report.failed += sent.get("waiting_for_retry", 0)
    # The round's own time: a round "at" a moment sends what is due by then.
    retried = await deliver_due(review, mailer, settings, at=at)
    report.sent += len(retried.sent)
    report.failed += len(retried.failed)
    return report
