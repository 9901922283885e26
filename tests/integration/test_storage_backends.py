"""Migrations and the whole service path on SQLite and on a real PostgreSQL; decisions race-safe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import Session, select

from core.bots import create_bot
from core.db import alembic_config, current_revision, make_engine, migrate, session_scope
from core.embeddings import Embedder
from core.errors import AlreadyDecided
from core.models import Suggestion
from core.policy.commands import Actor, Approve, Channel, Reject
from core.services import Services, build_core_services
from core.settings import load_settings
from tests.helpers import TEST_DATABASE_URL, charger_bot, reset_postgres

EXPECTED_TABLES = {"bot", "apikey", "kbentry", "kbentryversion", "indexoutbox", "conversation",
                   "gap", "gapevidence", "suggestion", "auditevent", "cyclerun",
                   "conversationanswer", "notification", "entrywatch", "notificationdelivery",
                   "postedcard", "digestsent"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL not set (scripts/test.sh starts PostgreSQL)")
    reset_postgres(TEST_DATABASE_URL)
    yield TEST_DATABASE_URL
    reset_postgres(TEST_DATABASE_URL)


def test_migrations_create_the_schema_and_are_idempotent(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)  # a second start must not fail or change anything
    engine = make_engine(database_url)
    # The newest migration file, whichever it is (0002 added the gap lifecycle columns).
    assert current_revision(engine) == ScriptDirectory.from_config(
        alembic_config(database_url)).get_current_head()
    assert {"published_at", "last_failure_at"} <= {
        c["name"] for c in inspect(engine).get_columns("gap")}
    assert EXPECTED_TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


@pytest.fixture
def backend_services(database_url: str, tmp_path: Path, embedder: Embedder
                     ) -> Iterator[Services]:
    settings = load_settings(AUTOTRAIN_DATA_DIR=tmp_path / "data", DATABASE_URL=database_url,
                             CHROMA_URL="", REDIS_URL="")
    svc = build_core_services(settings, embedder=embedder)
    yield svc
    svc.close()


def _seed_gap(svc: Services) -> str:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    bot_id = charger_bot(svc, slug="race", now=now)
    result = svc.cycle.run(bot_id=bot_id, as_of=now)
    assert result.suggestions_created == 1
    with Session(svc.engine) as session:
        return session.exec(select(Suggestion.id)).one()


def test_concurrent_decisions_record_exactly_one(backend_services: Services) -> None:
    sid = _seed_gap(backend_services)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def decide(i: int) -> None:
        actor = Actor(name=f"reviewer{i}", channel=list(Channel)[i % 3])
        cmd = Approve(suggestion_id=sid, actor=actor) if i % 2 else \
            Reject(suggestion_id=sid, actor=actor)
        barrier.wait()
        try:
            backend_services.policy.decide(cmd)
            out = f"won:{actor.name}"
        except AlreadyDecided as exc:
            out = f"lost:{exc}"
        with lock:
            outcomes.append(out)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [o for o in outcomes if o.startswith("won:")]
    assert len(outcomes) == 8 and len(winners) == 1, outcomes
    winner = winners[0].removeprefix("won:")
    assert all(winner in o for o in outcomes if o.startswith("lost:")), outcomes
    with Session(backend_services.engine) as session:
        sug = session.get(Suggestion, sid)
        assert sug is not None and sug.decided_by == winner
        from core.models import AuditEvent, KBEntry
        audits = session.exec(select(AuditEvent).where(AuditEvent.suggestion_id == sid)).all()
        assert len(audits) == 1
        entries = session.exec(select(KBEntry)).all()
        assert len(entries) == (1 if sug.status == "approved" else 0)


def test_two_auto_publishers_at_once_respect_the_daily_limit(
        backend_services: Services) -> None:
    """Two workers running the same bot's auto-publishing at the same moment: the day's
    limit holds (the bot row is locked while a slot is taken)."""
    from core.policy.commands import UpdateSettings

    svc = backend_services
    with session_scope(svc.engine) as session:
        bot = create_bot(session, slug="auto", name="Auto")
        for i in range(10):
            session.add(Suggestion(bot_id=bot.id, kind="new_answer", priority="critical",
                                   confidence=95, question=f"How do I turn on feature {i}?",
                                   answer=f"Open Settings and switch on feature {i}.",
                                   variants=[]))
    svc.policy.update_settings(UpdateSettings(
        bot_id=bot.id, patch={"autonomy": "moderate", "daily_auto_publish_limit": 3},
        actor=Actor(name="admin", channel=Channel.api)))
    barrier = threading.Barrier(2)
    published: list[list[str]] = []

    def worker() -> None:
        barrier.wait()
        published.append(svc.policy.auto_publish(bot_id=bot.id).published)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(len(p) for p in published) == 3, published
    with Session(svc.engine) as session:
        statuses = session.exec(select(Suggestion.status).where(
            Suggestion.bot_id == bot.id)).all()
    assert sorted(statuses).count("auto_published") == 3


def test_only_one_cycle_per_bot_runs_at_once(backend_services: Services) -> None:
    """The cycle lease holds on both backends: a second process's cycle is refused while
    the first runs, and runs once it has finished."""
    from core.errors import CycleRunning
    from core.models import CycleRun

    svc = backend_services
    bot_id = charger_bot(svc, slug="lease", now=datetime.now(UTC))
    with session_scope(svc.engine) as session:
        lease = CycleRun(bot_id=bot_id, as_of=datetime.now(UTC))
        session.add(lease)
    with pytest.raises(CycleRunning):
        svc.cycle.run(bot_id=bot_id)
    with session_scope(svc.engine) as session:
        running = session.get(CycleRun, lease.id)
        assert running is not None
        running.finished_at = datetime.now(UTC)
        session.add(running)
    assert svc.cycle.run(bot_id=bot_id).suggestions_created == 1

