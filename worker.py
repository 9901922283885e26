"""Background jobs: thin shims over core, run by arq on Redis or by the in-process scheduler.

Start the Redis-backed worker with `arq worker.WorkerSettings` (REDIS_URL must be set). Jobs
take ids, not objects, and are safe to run twice: arq delivers at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, ClassVar

from arq.worker import Retry
from redis.exceptions import LockError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, col, select

from core.cycle import slots
from core.errors import CycleRunning
from core.index import IndexUnavailable
from core.logs import job as logged
from core.models import Bot
from core.services import Services, build_core_services
from core.settings import load_settings

log = logging.getLogger("autotrain.worker")

# How often cards, announcements and card updates are pushed to Slack.
SLACK_ROUND_SECONDS = 10
# Digests are due at most once a day per bot; a failed send is retried from its backoff.
EMAIL_ROUND_SECONDS = 30
# How often the cycle schedule opens new slots and sweeps unfinished ones back into the queue.
SCHEDULE_SECONDS = 60
# Drift between SQL and the vector index is looked for (and repaired) this often.
RECONCILE_SECONDS = 3600

# A job failing for one of these is tried again later (arq's Retry, backoff doubling from
# RETRY_BASE_SECONDS up to RETRY_MAX_SECONDS); anything else is a bug or bad data, and
# trying again would fail the same way.
TRANSIENT: tuple[type[BaseException], ...] = (
    IndexUnavailable, CycleRunning, OperationalError, ConnectionError, TimeoutError)
RETRY_BASE_SECONDS = 5
RETRY_MAX_SECONDS = 300
MAX_TRIES = 6


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True  # the database connection dropped (a restart, a failover)
    return isinstance(exc, TRANSIENT)


def retry_later(ctx: dict[str, Any], exc: BaseException) -> Retry:
    """arq's Retry with exponential backoff by the job's try number."""
    tries = int(ctx.get("job_try") or 1)
    delay = min(RETRY_BASE_SECONDS * 2 ** (tries - 1), RETRY_MAX_SECONDS)
    log.warning("%s: %s; try %d, again in %ds", ctx.get("job_id") or "job",
                type(exc).__name__, tries, delay)
    return Retry(defer=delay)


async def _retrying(ctx: dict[str, Any], work: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await work()
    except Exception as exc:
        if is_transient(exc):
            raise retry_later(ctx, exc) from exc
        raise


def _services(ctx: dict[str, Any]) -> Services:
    return ctx["services"]  # type: ignore[no-any-return]


async def run_cycle(ctx: dict[str, Any], bot_id: str, as_of: str | None = None,
                    slot: str | None = None) -> dict[str, Any]:
    """Analyse one bot's new conversations and refresh its suggestions. Returns deferred
    suggestions to the queue and checks published changes under watch, inside the cycle.
    `slot`: a scheduled slot (core.cycle.slots), run only by the worker that claims it."""
    svc = _services(ctx)
    if slot is not None and not await asyncio.to_thread(
            slots.claim, svc.engine, bot_id=bot_id, slot=slot):
        return {"skipped": f"slot {slot} already done or running"}
    when = datetime.fromisoformat(as_of) if as_of else None
    try:
        result = await asyncio.to_thread(svc.cycle.run, bot_id=bot_id, as_of=when)
    except Exception as exc:
        transient = is_transient(exc)
        if slot is not None and transient:
            await asyncio.to_thread(slots.release, svc.engine, bot_id=bot_id, slot=slot,
                                    error=type(exc).__name__)
        elif slot is not None:
            # Permanent (a bug, a bot gone): the slot is closed, the next one tries afresh.
            await asyncio.to_thread(slots.finish, svc.engine, bot_id=bot_id, slot=slot,
                                    error=type(exc).__name__)
        if transient:
            raise retry_later(ctx, exc) from exc
        raise
    if slot is not None:
        await asyncio.to_thread(slots.finish, svc.engine, bot_id=bot_id, slot=slot)
    log.info("cycle for bot %s: %s", bot_id, result.public())
    if ctx.get("slack") is not None or ctx.get("slack_client") is not None:
        # Critical suggestions reach Slack as soon as the cycle finds them.
        await slack_round(ctx)
    return result.public()


async def relay_outbox(ctx: dict[str, Any]) -> dict[str, int]:
    """Push pending KB changes to the vector index (retries changes made while it was down)."""
    svc = _services(ctx)
    result = await _retrying(ctx, lambda: asyncio.to_thread(svc.index_sync.relay))
    if result.failed:
        log.warning("index relay: %d pending, index unreachable", result.pending)
    return {"processed": result.processed, "pending": result.pending}


@contextlib.asynccontextmanager
async def _alone(ctx: dict[str, Any], name: str, seconds: int) -> AsyncIterator[bool]:
    """Whether this caller may run `name` now: one holder across workers (a Redis lock that
    expires after `seconds`, the job's own timeout, should its worker die) or in this process
    (the embedded runner). The others skip: the holder does the work."""
    redis = ctx.get("redis")
    if redis is None:
        lock = ctx.setdefault(f"lock:{name}", asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True
        return
    held = redis.lock(f"autotrain:lock:{name}", timeout=seconds, blocking=False)
    if not await held.acquire():
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(LockError):
            await held.release()


async def slack_round(ctx: dict[str, Any]) -> dict[str, int]:
    """Post what is due on Slack: cards of new critical suggestions, announcements, and
    updates of cards decided elsewhere. A no-op when Slack is off, or while another round
    runs: a card or an announcement is recorded after Slack took it, so two rounds at once
    (the schedule's and a cycle's, on two workers) would both post it."""
    from bot.slack_notify import slack_round as push

    deps = ctx.get("slack")
    client = deps.client if deps is not None else ctx.get("slack_client")
    if client is None:
        return {}
    async with _alone(ctx, "slack_round", SHORT_JOB_SECONDS) as mine:
        if not mine:
            return {"skipped": 1}
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
    """The cycle schedule: record this period's slot for every bot in SQL, then queue every
    slot not yet done (new ones, ones Redis lost, ones whose worker died) on Redis, or run
    them inline without it. Returns the number of slots queued or run. A paused bot's cycle
    only watches its published changes and returns deferred suggestions."""
    svc = _services(ctx)
    due = await _retrying(ctx, lambda: asyncio.to_thread(
        slots.open_and_sweep, svc.engine, minutes=svc.settings.cycle_interval_minutes))
    redis = ctx.get("redis")
    for item in due:
        if redis is not None:
            # The slot's job id makes queueing it again a no-op while Redis still has it.
            await redis.enqueue_job("run_cycle", item.bot_id, slot=item.slot,
                                    _job_id=item.job_id)
        else:
            try:
                await run_cycle(ctx, item.bot_id, slot=item.slot)
            except Retry:
                pass  # released: the next tick of the schedule claims it again
            except Exception:
                log.exception("cycle for bot %s failed", item.bot_id)
    return len(due)


async def reconcile_index(ctx: dict[str, Any]) -> dict[str, int]:
    """Compare every bot's vectors with SQL and repair drift (vectors lost, left over or in
    the wrong state) by re-syncing the drifted entries through the outbox."""
    svc = _services(ctx)
    drifted = repaired = 0
    for bot_id in bot_ids(svc):
        report = await _retrying(ctx, lambda b=bot_id: asyncio.to_thread(
            svc.index_sync.repair, bot_id=b))
        if not report["in_sync"]:
            drifted += 1
            repaired += report["in_sync_after"]
            log.warning("index drift for bot %s: %d missing, %d extra, %d wrong state; %s",
                        bot_id, report["missing"], report["extra"], report["wrong_active"],
                        "repaired" if report["in_sync_after"] else "not repaired yet")
    return {"bots_drifted": drifted, "bots_repaired": repaired}


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


# A job's timeout is also how long arq keeps a killed worker's job locked before another
# worker may run it again: short jobs get short ones, so they recover quickly.
SHORT_JOB_SECONDS = 120


def _imap_cron(every: int) -> Any:
    from arq import cron

    if every < 60:
        return cron(logged(imap_poll), second=set(range(0, 60, every)), unique=True,
                    timeout=SHORT_JOB_SECONDS)
    return cron(logged(imap_poll), minute=set(range(0, 60, max(1, every // 60))), second={20},
                unique=True, timeout=SHORT_JOB_SECONDS)


def _worker_settings() -> type:
    from arq import cron, func
    from arq.connections import RedisSettings

    settings = load_settings()
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is not set: the arq worker needs Redis "
                         "(without it, `autotrain serve` runs jobs in-process)")
    short = SHORT_JOB_SECONDS

    class WorkerSettings:
        # logged(): each job's log lines carry its arq job id and, for a cycle, the bot.
        functions: ClassVar = [logged(run_cycle), func(logged(relay_outbox), timeout=short),
                               func(logged(cycle_all_bots), timeout=short),
                               func(logged(slack_round), timeout=short), logged(email_round),
                               func(logged(imap_poll), timeout=short),
                               logged(reconcile_index)]
        cron_jobs: ClassVar = [
            cron(logged(slack_round), second=set(range(0, 60, SLACK_ROUND_SECONDS)), unique=True,
                 timeout=short),
            cron(logged(email_round), second=set(range(5, 60, EMAIL_ROUND_SECONDS)), unique=True,
                 timeout=10 * short),
            _imap_cron(settings.imap_poll_seconds),
            # Every minute: slots open on the cadence's grid, and the sweep re-queues a slot
            # Redis lost (or whose worker died) within a minute of the loss being visible.
            cron(logged(cycle_all_bots), second={50}, unique=True, timeout=short),
            cron(logged(relay_outbox), second={0, 15, 30, 45}, unique=True, timeout=short),
            cron(logged(reconcile_index), minute={30}, second={40}, unique=True),
        ]
        on_startup = startup
        on_shutdown = shutdown
        redis_settings = RedisSettings.from_dsn(settings.redis_url)
        max_jobs = 4
        job_timeout = 3600
        max_tries = MAX_TRIES

    return WorkerSettings


def __getattr__(name: str) -> Any:
    # `arq worker.WorkerSettings` reads the attribute; building it lazily keeps importing this
    # module (for the job functions) free of Redis configuration.
    if name == "WorkerSettings":
        return _worker_settings()
    raise AttributeError(name)
