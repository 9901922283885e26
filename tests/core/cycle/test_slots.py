"""The cycle schedule's slots in SQL: recorded once, swept until done, claimed by one worker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from core.bots import create_bot
from core.cycle import slots
from core.db import make_engine, migrate, session_scope
from core.models import CycleSlot
from tests.helpers import TEST_DATABASE_URL, reset_postgres

NOON = datetime(2026, 12, 2, 12, 7, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    elif not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL not set (scripts/test.sh starts PostgreSQL)")
    else:
        url = TEST_DATABASE_URL
        reset_postgres(url)
    migrate(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()
    if request.param == "postgresql":
        reset_postgres(url)


def _bots(engine: Engine, *slugs: str) -> list[str]:
    with session_scope(engine) as session:
        return [create_bot(session, slug=s, name=s.title()).id for s in slugs]


def _states(engine: Engine) -> dict[tuple[str, str], str]:
    with Session(engine) as session:
        return {(r.bot_id, r.slot): r.state for r in session.exec(select(CycleSlot))}


def test_every_process_computes_the_same_slot_for_a_period() -> None:
    assert slots.slot_of(NOON, minutes=60) == "2026-12-02T12:00Z"
    assert slots.slot_of(NOON + timedelta(minutes=52), minutes=60) == "2026-12-02T12:00Z"
    assert slots.slot_of(NOON + timedelta(minutes=53), minutes=60) == "2026-12-02T13:00Z"
    assert slots.slot_of(NOON, minutes=15) == "2026-12-02T12:00Z"
    assert slots.slot_of(NOON + timedelta(minutes=8), minutes=15) == "2026-12-02T12:15Z"
    # A naive time is UTC, and another timezone's clock names the same slot.
    assert slots.slot_of(NOON.replace(tzinfo=None), minutes=60) == "2026-12-02T12:00Z"


def test_a_slot_is_recorded_once_swept_until_done_and_never_run_again(engine: Engine) -> None:
    a, b = _bots(engine, "alpha", "beta")
    due = slots.open_and_sweep(engine, now=NOON, minutes=60)
    assert {(d.bot_id, d.slot) for d in due} == {(a, "2026-12-02T12:00Z"),
                                                 (b, "2026-12-02T12:00Z")}
    assert due[0].job_id == f"cycle:{due[0].bot_id}:2026-12-02T12:00Z"
    # Another worker's schedule a minute later: the same slots, no new rows.
    again = slots.open_and_sweep(engine, now=NOON + timedelta(minutes=1), minutes=60)
    assert again == due and len(_states(engine)) == 2

    assert slots.claim(engine, bot_id=a, slot="2026-12-02T12:00Z", now=NOON)
    assert not slots.claim(engine, bot_id=a, slot="2026-12-02T12:00Z", now=NOON)
    slots.finish(engine, bot_id=a, slot="2026-12-02T12:00Z")
    assert not slots.claim(engine, bot_id=a, slot="2026-12-02T12:00Z", now=NOON)
    # Only beta's slot is left to run; alpha's is done.
    left = slots.open_and_sweep(engine, now=NOON + timedelta(minutes=2), minutes=60)
    assert [(d.bot_id, d.slot) for d in left] == [(b, "2026-12-02T12:00Z")]

    # The next period: a new slot each; beta's old one is covered by its new one.
    later = slots.open_and_sweep(engine, now=NOON + timedelta(hours=1), minutes=60)
    assert {(d.bot_id, d.slot) for d in later} == {(a, "2026-12-02T13:00Z"),
                                                   (b, "2026-12-02T13:00Z")}
    assert _states(engine)[(b, "2026-12-02T12:00Z")] == "skipped"
    assert _states(engine)[(a, "2026-12-02T12:00Z")] == "done"


def test_a_transient_failure_hands_the_slot_back_a_permanent_one_closes_it(
        engine: Engine) -> None:
    (a,) = _bots(engine, "alpha")
    slot = slots.open_and_sweep(engine, now=NOON, minutes=60)[0].slot
    assert slots.claim(engine, bot_id=a, slot=slot, now=NOON)
    assert slots.open_and_sweep(engine, now=NOON, minutes=60) == []  # running
    slots.release(engine, bot_id=a, slot=slot, error="IndexUnavailable")
    assert [d.slot for d in slots.open_and_sweep(engine, now=NOON, minutes=60)] == [slot]
    assert slots.claim(engine, bot_id=a, slot=slot, now=NOON)
    slots.finish(engine, bot_id=a, slot=slot, error="LookupError")
    assert slots.open_and_sweep(engine, now=NOON, minutes=60) == []
    with Session(engine) as session:
        row = session.exec(select(CycleSlot)).one()
    assert (row.state, row.attempts, row.error) == ("failed", 2, "LookupError")


def test_a_slot_whose_worker_died_is_swept_and_claimed_again(engine: Engine) -> None:
    (a,) = _bots(engine, "alpha")
    slot = slots.open_and_sweep(engine, now=NOON, minutes=180)[0].slot
    assert slots.claim(engine, bot_id=a, slot=slot, now=NOON)
    # The worker was killed: nobody finishes the slot. Within the stale window it is left
    # alone (it may still be running); after it, it is queued and claimed again.
    soon = NOON + slots.STALE_SLOT - timedelta(minutes=1)
    assert slots.open_and_sweep(engine, now=soon, minutes=180) == []
    assert not slots.claim(engine, bot_id=a, slot=slot, now=soon)
    late = NOON + slots.STALE_SLOT + timedelta(minutes=1)
    assert [d.slot for d in slots.open_and_sweep(engine, now=late, minutes=180)] == [slot]
    assert slots.claim(engine, bot_id=a, slot=slot, now=late)


def test_many_workers_claiming_one_slot_at_once_one_wins(engine: Engine) -> None:
    (a,) = _bots(engine, "alpha")
    slot = slots.open_and_sweep(engine, now=NOON, minutes=60)[0].slot
    start = threading.Barrier(8)
    won: list[bool] = []

    def worker() -> None:
        start.wait()
        won.append(slots.claim(engine, bot_id=a, slot=slot, now=NOON))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]


def test_finished_slots_are_kept_for_a_month_then_deleted(engine: Engine) -> None:
    (a,) = _bots(engine, "alpha")
    first = slots.open_and_sweep(engine, now=NOON, minutes=60)[0].slot
    assert slots.claim(engine, bot_id=a, slot=first, now=NOON)
    slots.finish(engine, bot_id=a, slot=first, now=NOON)
    slots.open_and_sweep(engine, now=NOON + timedelta(days=29), minutes=60)
    assert (a, first) in _states(engine)
    slots.open_and_sweep(engine, now=NOON + timedelta(days=31), minutes=60)
    assert (a, first) not in _states(engine)
    assert len(_states(engine)) == 2  # the two later periods' slots
