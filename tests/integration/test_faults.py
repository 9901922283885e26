"""Fault tests on real servers: a worker killed, Chroma and Redis stopped, two workers, a restart.

Each test starts its own redis-server and `chroma run` on free loopback ports (so it can kill
and restart them) and uses the PostgreSQL of TEST_DATABASE_URL (scripts/test.sh starts one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from core.db import session_scope
from core.embeddings import Embedder
from core.kb import FAULT_ENV, insert_entry
from core.learning import NOBODY
from core.models import AuditEvent, CycleRun, CycleSlot, IndexOutbox, KBEntry, Suggestion
from core.policy.commands import Actor, Approve, Channel, UpdateSettings
from core.services import Services, build_core_services
from core.settings import Settings, load_settings
from tests.helpers import ADMIN_KEY, ROOT, TEST_DATABASE_URL, charger_bot, reset_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.chroma_server,
              pytest.mark.timeout(300)]

REDIS_SERVER = shutil.which("redis-server")
CHROMA = Path(sys.executable).with_name("chroma")
if not TEST_DATABASE_URL:
    pytest.skip("TEST_DATABASE_URL not set (scripts/test.sh starts PostgreSQL)",
                allow_module_level=True)
if not REDIS_SERVER or not CHROMA.exists():
    pytest.skip("redis-server or chroma not installed", allow_module_level=True)

QUESTIONS = {
    "Do you ship to Canada?": "Yes, in 5 to 8 business days.",
    "Can I return a gift?": "Yes, within 30 days with the gift receipt.",
    "Is there a student discount?": "Yes: 15% with a valid student card.",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, ok: Callable[[], bool], timeout: float = 90.0) -> None:
    """Poll `ok` until it holds; fail naming `what` after `timeout` (a hung test, not a
    speed check: the figures are not asserted)."""
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.2)


@dataclass
class Server:
    """A throwaway server on a loopback port; stop and start it again on the same port and
    data directory."""

    name: str
    argv: list[str]
    url: str
    log: Path
    ready: Callable[[], bool]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        _wait(f"{self.name} to answer", lambda: self._alive() and self.ready(), timeout=90)

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
        return True

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def _redis_ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False
    return ready


def _http_ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            return False
    return ready


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Server]:
    port = _free_port()
    (tmp_path / "redis").mkdir()
    # No persistence, like a Redis whose memory is lost on restart (the worst case).
    server = Server("redis", [REDIS_SERVER or "redis-server", "--port", str(port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", str(tmp_path / "redis")],
                    f"redis://127.0.0.1:{port}/0", tmp_path / "redis.log",
                    _redis_ready(f"redis://127.0.0.1:{port}/0"))
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[Server]:
    port = _free_port()
    server = Server("chroma", [str(CHROMA), "run", "--host", "127.0.0.1", "--port", str(port),
                               "--path", str(tmp_path / "chroma")],
                    f"http://127.0.0.1:{port}", tmp_path / "chroma.log",
                    _http_ready(f"http://127.0.0.1:{port}/api/v2/heartbeat"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, redis_server: Server, chroma_server: Server) -> Iterator[Settings]:
    assert TEST_DATABASE_URL
    reset_postgres(TEST_DATABASE_URL)
    yield load_settings(AUTOTRAIN_DATA_DIR=tmp_path / "data", AUTOTRAIN_API_KEY=ADMIN_KEY,
                        DATABASE_URL=TEST_DATABASE_URL, CHROMA_URL=chroma_server.url,
                        REDIS_URL=redis_server.url)
    reset_postgres(TEST_DATABASE_URL)


@pytest.fixture
def svc(settings: Settings, embedder: Embedder) -> Iterator[Services]:
    services = build_core_services(settings, embedder=embedder)
    yield services
    services.close()


def _worker_env(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "SMTP_", "IMAP_", "AUTOTRAIN_"))}
    return {**env, "DATABASE_URL": settings.database_url or "",
            "CHROMA_URL": settings.chroma_url or "", "REDIS_URL": settings.redis_url or "",
            "AUTOTRAIN_DATA_DIR": str(tmp_path / "worker-data"),
            "ANONYMIZED_TELEMETRY": "False", **extra}


def _worker(*args: str) -> list[str]:
    """`autotrain worker ARGS` from this checkout (the console script may point elsewhere)."""
    return [sys.executable, "-m", "cli", "worker", *args]


def _pending_outbox(svc: Services, bot_id: str) -> int:
    with Session(svc.engine) as session:
        return int(session.exec(select(func.count()).select_from(IndexOutbox).where(
            IndexOutbox.bot_id == bot_id, col(IndexOutbox.processed_at).is_(None))).one())


def _no_duplicate_vectors(svc: Services, bot_id: str) -> None:
    stored = svc.index.snapshot(bot_id=bot_id)
    pairs = [(v["entry_id"], str(v["text"]).lower()) for v in stored.values()]
    assert len(pairs) == len(set(pairs)), "a phrasing is stored twice"


async def _pool(url: str) -> Any:
    from arq import create_pool
    from arq.connections import RedisSettings

    return await create_pool(RedisSettings.from_dsn(url))


# -- 1. a worker killed between the SQL commit and the Chroma upsert --------------------------


@pytest.mark.parametrize("point", ["before_index_upsert", "after_index_upsert"])
async def test_a_worker_killed_around_the_chroma_upsert_converges_after_a_restart(
        point: str, svc: Services, settings: Settings, tmp_path: Path) -> None:
    bot = svc.review.create_bot(slug="killed", name="Killed")
    with session_scope(svc.engine) as session:
        for question, answer in QUESTIONS.items():
            insert_entry(session, bot_id=bot.id, question=question, answer=answer,
                         variants=[question.replace("?", " please?")], category=None,
                         changed_by="test")
    # Committed in SQL, with its outbox rows; the worker's relay job pushes it to Chroma.
    pool = await _pool(settings.redis_url or "")
    try:
        await pool.enqueue_job("relay_outbox", _job_id="relay:killed")
    finally:
        await pool.aclose()
    killed = subprocess.run(_worker("--burst"), cwd=ROOT, timeout=240, capture_output=True,
                            env=_worker_env(settings, tmp_path, **{FAULT_ENV: point}))
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    before = svc.index_sync.reconcile(bot_id=bot.id)
    assert before["expected"] == 6
    if point == "before_index_upsert":
        assert (before["stored"], before["missing"]) == (0, 6)
    else:
        assert before["in_sync"]  # upserted, but the outbox never heard of it
    assert _pending_outbox(svc, bot.id) == 3

    # A fresh worker on its ordinary schedule (the relay runs every 15 s).
    log = (tmp_path / "worker.log").open("wb")
    restarted = subprocess.Popen(_worker(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 env=_worker_env(settings, tmp_path))
    try:
        _wait("the restarted worker to relay the outbox",
              lambda: _pending_outbox(svc, bot.id) == 0)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(60)
        log.close()
    after = svc.index_sync.reconcile(bot_id=bot.id)
    assert after["in_sync"] and after["stored"] == 6, after
    _no_duplicate_vectors(svc, bot.id)
    ref = svc.review.bot_by_id(bot.id)
    for question, answer in QUESTIONS.items():
        assert svc.answer(bot=ref, question=question).answer == answer


# -- 2. Chroma stopped during an approval ----------------------------------------------------


async def test_chroma_down_during_an_approval_the_outbox_catches_up_and_drift_is_repaired(
        svc: Services, chroma_server: Server) -> None:
    import chromadb

    from worker import reconcile_index, relay_outbox

    bot_id = charger_bot(svc, slug="outage", now=datetime.now(UTC))
    svc.cycle.run(bot_id=bot_id)
    bot = svc.review.bot_by_id(bot_id)
    [card] = svc.review.queue(bot, limit=10)
    question = "Does the 30W charger work with the iPhone 15?"

    chroma_server.stop()
    outcome = svc.review.execute(Approve(suggestion_id=card.id,
                                         actor=Actor("alice", Channel.api)), bot=bot)
    assert outcome.suggestion is not None and outcome.suggestion.status == "approved"
    ctx: dict[str, Any] = {"services": svc}
    # Two index changes wait: the new entry, and its questions no longer voting "nobody"
    # (the cycle had learned them as nobody's from the agents' replies, core.learning).
    assert (await relay_outbox(ctx))["pending"] == 2  # still waiting for the index
    with Session(svc.engine) as session:
        rows = session.exec(select(IndexOutbox).where(
            col(IndexOutbox.processed_at).is_(None))).all()
        assert outcome.entry is not None
        assert {r.entry_id for r in rows} == {outcome.entry.id, NOBODY}
        assert any(r.attempts >= 1 and r.last_error for r in rows)

    chroma_server.start()
    assert await relay_outbox(ctx) == {"processed": 2, "pending": 0}
    served = svc.answer(bot=svc.review.bot_by_id(bot_id), question=question)
    assert served.answer == outcome.suggestion.answer

    # Drift behind SQL's back: a vector lost, and a stray one for an entry SQL never had.
    port = int(chroma_server.url.rsplit(":", 1)[1])
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    [collection] = [c for c in client.list_collections() if c.name.startswith(f"kb-{bot_id}")]
    got = collection.get(include=["embeddings"])
    collection.delete(ids=[got["ids"][0]])
    collection.add(ids=["stray:1"], embeddings=[got["embeddings"][0]],
                   metadatas=[{"bot_id": bot_id, "entry_id": "gone", "active": True}],
                   documents=["a phrasing nobody wrote"])
    drift = svc.index_sync.reconcile(bot_id=bot_id)
    assert (drift["missing"], drift["extra"], drift["in_sync"]) == (1, 1, False)

    assert await reconcile_index(ctx) == {"bots_drifted": 1, "bots_repaired": 1}
    assert svc.index_sync.reconcile(bot_id=bot_id)["in_sync"]
    _no_duplicate_vectors(svc, bot_id)
    assert svc.answer(bot=svc.review.bot_by_id(bot_id),
                      question=question).answer == outcome.suggestion.answer


# -- 3. Redis restarted mid-schedule ---------------------------------------------------------


def _cycle_runs(svc: Services, bot_id: str) -> int:
    with Session(svc.engine) as session:
        return len(session.exec(select(CycleRun.id).where(CycleRun.bot_id == bot_id)).all())


def _slots(svc: Services) -> list[CycleSlot]:
    with Session(svc.engine) as session:
        return list(session.exec(select(CycleSlot)))


def _pending_suggestions(svc: Services) -> int:
    with Session(svc.engine) as session:
        return len(session.exec(select(Suggestion.id).where(
            Suggestion.status == "pending")).all())


async def _burst(svc: Services, url: str) -> Any:
    from arq.connections import RedisSettings
    from arq.worker import Worker

    from worker import cycle_all_bots, relay_outbox, run_cycle

    worker = Worker(functions=[run_cycle, relay_outbox, cycle_all_bots],
                    redis_settings=RedisSettings.from_dsn(url), burst=True,
                    ctx={"services": svc}, poll_delay=0.05, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def test_a_cycle_queued_before_redis_restarts_is_swept_and_run_once(
        svc: Services, redis_server: Server) -> None:
    from worker import cycle_all_bots

    bot_id = charger_bot(svc, slug="restart", now=datetime.now(UTC))
    pool = await _pool(redis_server.url)
    try:
        assert await cycle_all_bots({"services": svc, "redis": pool}) == 1
        assert await pool.zcard("arq:queue") == 1
    finally:
        await pool.aclose()
    redis_server.stop(kill=True)  # the queued cycle is lost with Redis's memory
    redis_server.start()

    worker = await _burst(svc, redis_server.url)
    assert worker.jobs_complete == 0 and _cycle_runs(svc, bot_id) == 0
    # The schedule's next tick finds the slot still due in SQL and queues it again.
    pool = await _pool(redis_server.url)
    try:
        assert await cycle_all_bots({"services": svc, "redis": pool}) == 1
    finally:
        await pool.aclose()
    worker = await _burst(svc, redis_server.url)
    assert worker.jobs_complete == 1 and worker.jobs_failed == 0
    assert _cycle_runs(svc, bot_id) == 1 and _pending_suggestions(svc) == 1
    [slot] = _slots(svc)
    assert (slot.state, slot.attempts) == ("done", 1)
    pool = await _pool(redis_server.url)
    try:  # done: nothing to sweep any more
        assert await cycle_all_bots({"services": svc, "redis": pool}) == 0
    finally:
        await pool.aclose()


# -- 4. two workers on the same schedule -----------------------------------------------------


async def test_two_workers_on_one_schedule_analyse_each_slot_once(
        svc: Services, settings: Settings, embedder: Embedder, redis_server: Server) -> None:
    from arq import cron
    from arq.connections import RedisSettings
    from arq.worker import Worker

    from worker import cycle_all_bots, run_cycle

    bot_id = charger_bot(svc, slug="twins", now=datetime.now(UTC))
    other = build_core_services(settings, embedder=embedder, run_migrations=False)
    redis_settings = RedisSettings.from_dsn(redis_server.url)
    workers = [Worker(functions=[run_cycle],
                      # The schedule ticking every second on both, so they race on every tick.
                      cron_jobs=[cron(cycle_all_bots, second=set(range(60)), unique=True)],
                      redis_settings=redis_settings, ctx={"services": s}, poll_delay=0.05,
                      handle_signals=False, max_jobs=2) for s in (svc, other)]
    tasks = [asyncio.create_task(w.main()) for w in workers]
    try:
        await asyncio.to_thread(_wait, "the slot to be done",
                                lambda: [s.state for s in _slots(svc)] == ["done"])
        await asyncio.sleep(3)  # more ticks of both schedules after the slot is done
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for w in workers:
            await w.close()
        other.close()
    assert _cycle_runs(svc, bot_id) == 1
    [slot] = _slots(svc)
    assert (slot.state, slot.attempts) == ("done", 1)
    assert _pending_suggestions(svc) == 1

    # Even if Redis forgot the job id (a restart after the slot ran), the slot is not run
    # again: a worker handed it finds it done in SQL.
    assert await run_cycle({"services": svc}, bot_id,
                           slot=slot.slot) == {"skipped": f"slot {slot.slot} already done or "
                                                           "running"}
    assert _cycle_runs(svc, bot_id) == 1


# -- 5. the app restarted while Slack retries a delivery -------------------------------------


def test_a_click_delivered_again_after_an_app_restart_is_one_decision(
        settings: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from app import create_app
    from bot.handlers import context
    from bot.ids import ActionId, CardPayload
    from bot.slack_notify import post_cards
    from tests.fake_slack import FakeSlack
    from tests.slack_signing import block_action_body, signed_headers

    monkeypatch.setattr(context, "WORKING_AFTER_SECONDS", 30.0)
    secret, channel, alice = "fault-secret", "C0FAULTS1", "U0ALICE1"
    with FakeSlack() as fake:
        slack = load_settings(**{**_env_of(settings), "SLACK_BOT_TOKEN": "xoxb-test",
                                 "SLACK_SIGNING_SECRET": secret,
                                 "SLACK_API_BASE_URL": fake.base_url})
        first = build_core_services(slack, embedder=embedder)
        bot = first.review.create_bot(slug="clicks", name="Clicks")
        first.review.execute(UpdateSettings(bot_id=bot.id, actor=Actor("setup", Channel.api),
                                            patch={"slack_channel": channel,
                                                   "slack_approvers": [alice]}), bot=bot)
        bot = first.review.bot_by_id(bot.id)
        sug = Suggestion(bot_id=bot.id, kind="new_answer", priority="critical", score=7.0,
                         confidence=85, question="Do you ship to Canada?",
                         answer="Yes, in 5 to 8 business days.", variants=[],
                         created_at=datetime.now(UTC))
        with session_scope(first.engine) as session:
            session.add(sug)

        def click(client: TestClient, **headers: str) -> int:
            posted = first.review.posted(sug.id, channel=Channel.slack)
            assert posted is not None
            body = block_action_body(action_id=ActionId.approve, user=alice, channel=channel,
                                     value=CardPayload(suggestion_id=sug.id).model_dump_json(),
                                     message_ts=posted[1], block_id=f"actions:{sug.id}")
            # Slack signs every delivery afresh, with the time it sends it.
            r = client.post("/slack/events", content=body.encode(),
                            headers={**signed_headers(body, secret), **headers})
            client.portal.call(client.app.state.slack.drain)  # type: ignore[union-attr,attr-defined]
            return r.status_code

        with TestClient(create_app(first, background_jobs=False)) as app1:
            app1.portal.call(lambda: post_cards(  # type: ignore[union-attr]
                first.review, app1.app.state.slack.client, bot, priority=None))  # type: ignore[attr-defined]
            assert click(app1) == 200
            fake.wait_for("chat.update")
        first.close()

        # A new process on the same database: Slack's retry of that delivery, and the same
        # click sent again (a retry without the header, a double click) both arrive here.
        second = build_core_services(slack, embedder=embedder)
        with TestClient(create_app(second, background_jobs=False)) as app2:
            assert click(app2, **{"X-Slack-Retry-Num": "1",
                                  "X-Slack-Retry-Reason": "http_timeout"}) == 200
            assert click(app2) == 200
            # Bolt runs a listener after its ack: wait for what the clicker is shown.
            [told] = fake.wait_for("chat.postEphemeral", timeout=30)
        with Session(second.engine) as session:
            decisions = session.exec(select(AuditEvent).where(
                AuditEvent.action == "suggestion.approved")).all()
            entries = session.exec(select(KBEntry)).all()
        second.close()
    assert len(decisions) == 1
    assert len(entries) == 1 and entries[0].version == 1
    # The second click was told why nothing happened.
    # The second click was told why nothing happened.
    assert told.body["user"] == alice and "already approved" in str(told.body["text"]).lower()


def _env_of(settings: Settings) -> dict[str, Any]:
    return {"AUTOTRAIN_DATA_DIR": settings.data_dir, "AUTOTRAIN_API_KEY": ADMIN_KEY,
            "DATABASE_URL": settings.database_url, "CHROMA_URL": settings.chroma_url,
            "REDIS_URL": settings.redis_url}


# -- 6. two workers' Slack rounds at once -----------------------------------------------------


async def test_two_workers_slack_rounds_at_once_post_each_card_and_announcement_once(
        settings: Settings, embedder: Embedder) -> None:
    from bot.slack_app import slack_client
    from core.models import Notification
    from tests.fake_slack import FakeSlack
    from worker import slack_round

    with FakeSlack() as fake:
        slack = load_settings(**{**_env_of(settings), "SLACK_BOT_TOKEN": "xoxb-test",
                                 "SLACK_SIGNING_SECRET": "fault-secret",
                                 "SLACK_API_BASE_URL": fake.base_url})
        first = build_core_services(slack, embedder=embedder)
        second = build_core_services(slack, embedder=embedder, run_migrations=False)
        bot = first.review.create_bot(slug="rounds", name="Rounds")
        # Critical only: no scheduled digest message joins the count.
        first.review.execute(UpdateSettings(bot_id=bot.id, actor=Actor("setup", Channel.api),
                                            patch={"slack_channel": "C0ROUNDS1",
                                                   "notify_frequency": "critical_only"}),
                             bot=bot)
        with session_scope(first.engine) as session:
            session.add(Suggestion(bot_id=bot.id, kind="new_answer", priority="critical",
                                   score=7.0, confidence=85, question="Do you ship to Canada?",
                                   answer="Yes, in 5 to 8 business days.", variants=[],
                                   created_at=datetime.now(UTC)))
            session.add(Notification(bot_id=bot.id, kind="auto_published",
                                     text="Published an answer about returns."))
        pool = await _pool(settings.redis_url or "")
        try:
            ctxs = [{"services": s, "slack_client": slack_client(slack), "redis": pool}
                    for s in (first, second)]
            # The cron round on one worker and a cycle's round on another, at once.
            await asyncio.gather(*(slack_round(ctx) for ctx in ctxs))
            await slack_round(ctxs[1])  # and a later round: nothing new
        finally:
            await pool.aclose()
            first.close()
            second.close()
    posts = fake.calls_to("chat.postMessage")
    assert len(posts) == 2, fake.methods()
    assert fake.calls_to("chat.delete") == []
