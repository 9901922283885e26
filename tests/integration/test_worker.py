"""The arq worker on a real Redis, and the same jobs on the embedded in-process schedule."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from arq.worker import Retry
from sqlmodel import Session, select

from app import InProcessJobs
from core.cycle.slots import open_and_sweep
from core.errors import CycleRunning
from core.index import IndexUnavailable
from core.models import Bot, CycleSlot, Suggestion
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


class FlakyCycle:
    """The real cycle behind a fake that fails first with the given errors (one per call)."""

    def __init__(self, real: Any, *errors: BaseException) -> None:
        self.real = real
        self.errors = list(errors)
        self.calls = 0

    def run(self, **kw: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.real.run(**kw)


def _slot_states(svc: Services) -> list[tuple[str, int, str | None]]:
    with Session(svc.engine) as session:
        return [(s.state, s.attempts, s.error) for s in session.exec(select(CycleSlot))]


async def test_a_transient_failure_is_retried_with_backoff_a_permanent_one_is_not(
        services: Services) -> None:
    bot = _seed(services)
    slot = open_and_sweep(services.engine, minutes=60)[0].slot
    flaky = replace(services, cycle=FlakyCycle(services.cycle, IndexUnavailable("down"),
                                               IndexUnavailable("down"),
                                               LookupError("bot gone")))
    with pytest.raises(Retry) as first:
        await run_cycle({"services": flaky, "job_try": 1}, bot.id, slot=slot)
    assert first.value.defer_score == 5_000  # ms
    assert _slot_states(services) == [("due", 1, "IndexUnavailable")]
    with pytest.raises(Retry) as third:
        await run_cycle({"services": flaky, "job_try": 3}, bot.id, slot=slot)
    assert third.value.defer_score == 20_000
    with pytest.raises(LookupError):  # a bug or bad data: trying again would not help
        await run_cycle({"services": flaky, "job_try": 3}, bot.id, slot=slot)
    assert _slot_states(services) == [("failed", 3, "LookupError")]
    # Closed for good: handed the slot again, the worker does not run it.
    assert "skipped" in await run_cycle({"services": flaky}, bot.id, slot=slot)
    assert not _pending(services)
    with pytest.raises(Retry) as late:
        await relay_outbox({"services": replace(services, index_sync=_Broken()), "job_try": 9})
    assert late.value.defer_score == 300_000  # capped


class _Broken:
    def relay(self) -> Any:
        from sqlalchemy.exc import OperationalError

        raise OperationalError("SELECT 1", {}, Exception("connection refused"))


async def test_in_process_a_transient_failure_waits_for_the_next_tick(
        services: Services) -> None:
    bot = _seed(services)
    flaky = replace(services, cycle=FlakyCycle(services.cycle, CycleRunning("busy")))
    ctx: dict[str, Any] = {"services": flaky}
    assert await cycle_all_bots(ctx) == 1  # tried: another process holds the bot's cycle
    assert _slot_states(services) == [("due", 1, "CycleRunning")] and not _pending(services)
    assert await cycle_all_bots(ctx) == 1  # the next tick runs it
    assert _slot_states(services) == [("done", 2, None)]
    assert len(_pending(services)) == 1 and _pending(services)[0].bot_id == bot.id
    assert await cycle_all_bots(ctx) == 0  # nothing left in this period


async def test_arq_retries_a_transient_failure_and_the_slot_runs_once(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    if not TEST_REDIS_URL:
        pytest.skip("TEST_REDIS_URL not set (scripts/test.sh starts Redis)")
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    import worker as jobs

    monkeypatch.setattr(jobs, "RETRY_BASE_SECONDS", 0.05)
    _seed(services)
    flaky = replace(services, cycle=FlakyCycle(services.cycle, IndexUnavailable("down")))
    redis_settings = RedisSettings.from_dsn(TEST_REDIS_URL)
    pool = await create_pool(redis_settings)
    await pool.flushdb()
    try:
        assert await cycle_all_bots({"services": flaky, "redis": pool}) == 1
        worker = Worker(functions=[run_cycle], redis_settings=redis_settings, burst=True,
                        ctx={"services": flaky}, poll_delay=0.05, handle_signals=False,
                        max_tries=3)
        try:
            await worker.main()
        finally:
            await worker.close()
        assert (worker.jobs_retried, worker.jobs_complete, worker.jobs_failed) == (1, 1, 0)
        assert _slot_states(services) == [("done", 2, None)]
        assert len(_pending(services)) == 1
    finally:
        await pool.flushdb()
        await pool.aclose()
