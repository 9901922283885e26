"""The cycle schedule in SQL: a slot per bot and period, recorded before queueing, claimed once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from core.db import session_scope
from core.models import Bot, CycleSlot, as_utc, utcnow

# A slot claimed this long ago and still running belongs to a worker that died (arq's job
# timeout is an hour); the sweep queues it again.
STALE_SLOT = timedelta(minutes=70)
# Finished slots are deleted after this (the cycle's own run records keep its history).
KEEP_FINISHED = timedelta(days=30)
# Rows per statement: well under SQLite's and PostgreSQL's limits on bound parameters.
BATCH = 500


class SlotState:
    due = "due"
    running = "running"
    done = "done"
    failed = "failed"
    skipped = "skipped"


@dataclass(frozen=True)
class DueSlot:
    bot_id: str
    slot: str

    @property
    def job_id(self) -> str:
        """The queue's job id: enqueueing the same slot twice is a no-op while Redis has it."""
        return f"cycle:{self.bot_id}:{self.slot}"


def slot_of(at: datetime, *, minutes: int) -> str:
    """The period `at` falls in, on a grid of `minutes` from the Unix epoch (so every process
    computes the same slot), as "2026-12-02T16:00Z"."""
    at = as_utc(at)
    start = int(at.timestamp()) // (minutes * 60) * (minutes * 60)
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%MZ")


def open_and_sweep(engine: Engine, *, now: datetime | None = None,
                   minutes: int) -> list[DueSlot]:
    """Record this period's slot for every bot (a no-op for those recorded already, by any
    process), retire older slots a newer one covers, and return every slot still to run:
    new ones, ones a queue lost, and ones whose worker died. Queueing them all again is
    safe: the queue drops a job id it holds, and a slot is claimed once (`claim`)."""
    now = as_utc(now) if now else utcnow()
    current = slot_of(now, minutes=minutes)
    with Session(engine) as session:
        bot_ids = list(session.exec(select(Bot.id).order_by(col(Bot.created_at))))
        opened = set(session.exec(select(CycleSlot.bot_id).where(
            col(CycleSlot.slot) == current)))
    # Most ticks find every slot recorded and write nothing (SQLite has one writer at a time).
    missing = [b for b in bot_ids if b not in opened]
    if missing:
        with session_scope(engine) as session:
            insert = (postgresql.insert if engine.dialect.name == "postgresql"
                      else sqlite.insert)(CycleSlot)
            for start in range(0, len(missing), BATCH):
                chunk = missing[start:start + BATCH]
                # Another process may record the same slots meanwhile: theirs stand.
                session.execute(insert.values([
                    {"bot_id": b, "slot": current, "state": SlotState.due, "created_at": now,
                     "attempts": 0} for b in chunk]).on_conflict_do_nothing(
                    index_elements=["bot_id", "slot"]))
                # A cycle reads every conversation not analysed yet, so the newest slot does
                # the work of any older one left due: running those too would repeat it.
                session.execute(update(CycleSlot).where(
                    col(CycleSlot.state) == SlotState.due, col(CycleSlot.slot) < current,
                    col(CycleSlot.bot_id).in_(chunk)).values(state=SlotState.skipped,
                                                             finished_at=now))
            # Once a period: the record of finished slots is kept for KEEP_FINISHED.
            session.execute(delete(CycleSlot).where(
                col(CycleSlot.state).in_([SlotState.done, SlotState.failed,
                                          SlotState.skipped]),
                col(CycleSlot.finished_at) < now - KEEP_FINISHED))
    with Session(engine) as session:
        found = session.exec(select(CycleSlot.bot_id, CycleSlot.slot).where(or_(
            col(CycleSlot.state) == SlotState.due,
            and_(col(CycleSlot.state) == SlotState.running,
                 col(CycleSlot.started_at) < now - STALE_SLOT),
        )).order_by(col(CycleSlot.slot), col(CycleSlot.bot_id))).all()
    return [DueSlot(bot_id, slot) for bot_id, slot in found]


def claim(engine: Engine, *, bot_id: str, slot: str, now: datetime | None = None) -> bool:
    """Take the slot for this process: True for exactly one caller, however many workers
    were handed it (one conditional UPDATE; a slot already done is never run again)."""
    now = as_utc(now) if now else utcnow()
    stale = now - STALE_SLOT
    with session_scope(engine) as session:
        taken = session.execute(update(CycleSlot).where(
            col(CycleSlot.bot_id) == bot_id, col(CycleSlot.slot) == slot,
            or_(col(CycleSlot.state) == SlotState.due,
                and_(col(CycleSlot.state) == SlotState.running,
                     col(CycleSlot.started_at) < stale)),
        ).values(state=SlotState.running, started_at=now,
                 attempts=CycleSlot.attempts + 1, error=None))
        return taken.rowcount == 1  # type: ignore[attr-defined]


def finish(engine: Engine, *, bot_id: str, slot: str, error: str | None = None,
           now: datetime | None = None) -> None:
    """Mark a claimed slot done, or failed for good (`error`: what went wrong, no customer
    text); it is not queued again either way."""
    _set(engine, bot_id=bot_id, slot=slot, error=error,
         state=SlotState.failed if error else SlotState.done, finished=now or utcnow())


def release(engine: Engine, *, bot_id: str, slot: str, error: str) -> None:
    """Hand a claimed slot back after a transient failure: the retry (or the next sweep)
    claims it again."""
    _set(engine, bot_id=bot_id, slot=slot, error=error, state=SlotState.due, finished=None)


def _set(engine: Engine, *, bot_id: str, slot: str, state: str, error: str | None,
         finished: datetime | None) -> None:
    with session_scope(engine) as session:
        session.execute(update(CycleSlot).where(
            col(CycleSlot.bot_id) == bot_id, col(CycleSlot.slot) == slot,
            col(CycleSlot.state) == SlotState.running,
        ).values(state=state, error=error[:500] if error else None,
                 finished_at=finished))
