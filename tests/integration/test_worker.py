"""The arq worker on a real Redis, and the same jobs on the embedded in-process schedule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from app import InProcessJobs
from core.models import Bot, Suggestion
from core.services import Services
from tests.helpers import CHARGER_REPLIES, TEST_REDIS_URL, charger_bot, drafted_from
from worker import cycle_all_bots, relay_outbox, run_cycle


def _seed(svc: Services) -> Bot:
    bot_id = charger_bot(svc, slug="queued", now=datetime.now(UTC))
    with Session(svc.engine) as session:
        bot = session.get(Bot, bot_id)
        assert bot is not None
        return bot


def _pending(svc: Services) -> list[Suggestion]:
    with Session(svc.engine) as session:
        return list(session.exec(select(Suggestion).where(Suggestion.status == "pending")))


async def test_arq_worker_runs_the_cycle_enqueued_on_redis(services: Services) -> None:
    if not TEST_REDIS_URL:
        pytest.skip("TEST_REDIS_URL not set (scripts/test.sh starts Redis)")
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    bot = _seed(services)
    redis_settings = RedisSettings.from_dsn(TEST_REDIS_URL)
    pool = await create_pool(redis_settings)
    await pool.flushdb()
    try:
        # The scheduled job enqueues one cycle per enabled bot; a duplicate enqueue is a no-op.
        ctx = {"services": services, "redis": pool}
        assert await cycle_all_bots(ctx) == 1
        await cycle_all_bots(ctx)
        worker = Worker(functions=[run_cycle, relay_outbox], redis_settings=redis_settings,
                        burst=True, ctx={"services": services}, poll_delay=0.05,
                        handle_signals=False)
        try:
            await worker.main()
        finally:
            await worker.close()
        assert worker.jobs_complete == 1 and worker.jobs_failed == 0
        pending = _pending(services)
        assert len(pending) == 1 and pending[0].bot_id == bot.id
        # drafted from the agents' replies (the greeting stripped)
        assert drafted_from(pending[0].answer, CHARGER_REPLIES), pending[0].answer
    finally:
        await pool.flushdb()
        await pool.aclose()


async def test_embedded_default_runs_the_same_jobs_in_process(services: Services) -> None:
    _seed(services)
    jobs = InProcessJobs(services)
    jobs.schedule_every = 0.05  # the real tick is a minute; the loop is the same
    jobs.start()
    try:
        for _ in range(200):
            if _pending(services):
                break
            await asyncio.sleep(0.05)
    finally:
        await jobs.stop()
    assert len(_pending(services)) == 1
