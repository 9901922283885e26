"""Background jobs: thin shims over core, run by arq on Redis or by the in-process scheduler.

Start the Redis-backed worker with `arq worker.WorkerSettings` (REDIS_URL must be set). Jobs
take ids, not objects, and are safe to run twice: arq delivers at least once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, ClassVar

from sqlmodel import Session, col, select

from core.logs import job as logged
from core.models import Bot
from core.services import Services, build_core_services
from core.settings import load_settings

log = logging.getLogger("autotrain.worker")

# How often cards, announcements and card updates are pushed to Slack.
SLACK_ROUND_SECONDS = 10
# Digests are due at most once a day per bot; a failed send is retried from its backoff.
EMAIL_ROUND_SECONDS = 30


def _services(ctx: dict[str, Any]) -> Services:
    return ctx["services"]  # type: ignore[no-any-return]


async def run_cycle(ctx: dict[str, Any], bot_id: str, as_of: str | None = None) -> dict[str, Any]:
    """Analyse one bot's new conversations and refresh its suggestions."""
    svc = _services(ctx)
    when = datetime.fromisoformat(as_of) if as_of else None
    result = await asyncio.to_thread(svc.cycle.run, bot_id=bot_id, as_of=when)
    log.info("cycle for bot %s: %s", bot_id, result.public())
    if ctx.get("slack") is not None or ctx.get("slack_client") is not None:
        # Critical suggestions reach Slack as soon as the cycle finds them.
        await slack_round(ctx)
    return result.public()


async def relay_outbox(ctx: dict[str, Any]) -> dict[str, int]:
    """Push pending KB changes to the vector index (retries changes made while it was down)."""
    svc = _services(ctx)
    result = await asyncio.to_thread(svc.index_sync.relay)
    if result.failed:
        log.warning("index relay: %d pending, index unreachable", result.pending)
    return {"processed": result.processed, "pending": result.pending}


async def slack_round(ctx: dict[str, Any]) -> dict[str, int]:
    """Post what is due on Slack: cards of new critical suggestions, announcements, and
    updates of cards decided elsewhere. A no-op when Slack is off."""
    from bot.slack_notify import slack_round as push

    deps = ctx.get("slack")
    client = deps.client if deps is not None else ctx.get("slack_client")
    if client is None:
        return {}
    report = await push(_services(ctx).review, client)
    if report.failures:
        log.warning("slack: %d posts failed; retried next round", report.failures)
    return {"cards_posted": len(report.cards_posted), "cards_updated": len(report.cards_updated),
            "announcements": len(report.announcements), "failures": report.failures}


async def email_round(ctx: dict[str, Any]) -> dict[str, int]:
    """Send what is due by email: scheduled digests (as .eml files in the outbox when SMTP
    is off) and retries of messages that failed before."""
    from bot.mail.digest import email_round as send

    mail = _mail(ctx)
    report = await send(mail.review, mail.settings, mail.mailer)
    if report.failed:
        log.warning("email: %d messages not sent; retried with backoff", report.failed)
    return {"digests": len(report.digests), "sent": report.sent, "failed": report.failed}


async def imap_poll(ctx: dict[str, Any]) -> dict[str, int]:
    """Fetch replies from the IMAP mailbox, when one is configured."""
    from bot.mail.imap import ImapError, poll_once

    mail = _mail(ctx)
    if not mail.settings.imap_enabled:
        return {}
    try:
        handed = await poll_once(imap_settings(mail.settings), mail.inbound)
    except ImapError as exc:
        log.warning("imap: %s; tried again next round", exc)
        return {"failed": 1}
    return {"received": handed}


def imap_settings(settings: Any) -> Any:
    from bot.mail.imap import ImapSettings

    assert settings.imap_host and settings.imap_username and settings.imap_password
    return ImapSettings(host=settings.imap_host, port=settings.imap_port,
                        username=settings.imap_username,
                        password=settings.imap_password.get_secret_value(),
                        mailbox=settings.imap_mailbox, tls=settings.imap_tls)


def _mail(ctx: dict[str, Any]) -> Any:
    if "mail" not in ctx:
        from bot.mail.service import build_mail

        svc = _services(ctx)
        ctx["mail"] = build_mail(svc.settings, svc.review)
    return ctx["mail"]


def bot_ids(svc: Services) -> list[str]:
    with Session(svc.engine) as session:
        return list(session.exec(select(Bot.id).order_by(col(Bot.created_at))))


async def cycle_all_bots(ctx: dict[str, Any]) -> int:
    """The scheduled cycle: one job per bot (enqueued on Redis, run inline otherwise). A
    paused bot's cycle only watches its published changes and returns deferred suggestions."""
    svc = _services(ctx)
    ids = bot_ids(svc)
    redis = ctx.get("redis")
    for bot_id in ids:
        if redis is not None:
            # A per-bot, per-hour job id makes a duplicate enqueue a no-op.
            hour = datetime.now().strftime("%Y%m%d%H")
            await redis.enqueue_job("run_cycle", bot_id, _job_id=f"cycle:{bot_id}:{hour}")
        else:
            try:
                await run_cycle(ctx, bot_id)
            except Exception:
                log.exception("cycle for bot %s failed", bot_id)
    return len(ids)


async def startup(ctx: dict[str, Any]) -> None:
    if "services" not in ctx:
        ctx["services"] = build_core_services(load_settings())
    settings = ctx["services"].settings
    if settings.slack_enabled and "slack_client" not in ctx:
        from bot.slack_app import slack_client

        ctx["slack_client"] = slack_client(settings)


async def shutdown(ctx: dict[str, Any]) -> None:
    svc = ctx.get("services")
    if svc is not None:
        svc.close()


def _imap_cron(every: int) -> Any:
    from arq import cron

    if every < 60:
        return cron(logged(imap_poll), second=set(range(0, 60, every)), unique=True)
    return cron(logged(imap_poll), minute=set(range(0, 60, max(1, every // 60))), second={20},
                unique=True)


def _worker_settings() -> type:
    from arq import cron
    from arq.connections import RedisSettings

    settings = load_settings()
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is not set: the arq worker needs Redis "
                         "(without it, `autotrain serve` runs jobs in-process)")
    minutes = settings.cycle_interval_minutes

    class WorkerSettings:
        # logged(): each job's log lines carry its arq job id and, for a cycle, the bot.
        functions: ClassVar = [logged(f) for f in (run_cycle, relay_outbox, cycle_all_bots,
                                                   slack_round, email_round, imap_poll)]
        cron_jobs: ClassVar = [
            cron(logged(slack_round), second=set(range(0, 60, SLACK_ROUND_SECONDS)), unique=True),
            cron(logged(email_round), second=set(range(5, 60, EMAIL_ROUND_SECONDS)), unique=True),
            _imap_cron(settings.imap_poll_seconds),
            cron(logged(cycle_all_bots), minute=set(range(0, 60, min(minutes, 60))) if minutes < 60
                 else {0}, unique=True),
            cron(logged(relay_outbox), second={0, 15, 30, 45}, unique=True),
        ]
        on_startup = startup
        on_shutdown = shutdown
        redis_settings = RedisSettings.from_dsn(settings.redis_url)
        max_jobs = 4
        job_timeout = 3600

    return WorkerSettings


def __getattr__(name: str) -> Any:
    # `arq worker.WorkerSettings` reads the attribute; building it lazily keeps importing this
    # module (for the job functions) free of Redis configuration.
    if name == "WorkerSettings":
        return _worker_settings()
    raise AttributeError(name)
