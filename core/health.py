"""What operations watch: whether the service's dependencies answer, and the figures behind
/metrics (read from SQL at scrape time, so every app replica and worker reports the same)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select

from core.index import PhrasingIndex
from core.models import AuditEvent, Bot, CycleRun, IndexOutbox, Suggestion, as_utc, utcnow


@dataclass(frozen=True)
class Check:
    ok: bool
    ms: float
    error: str | None = None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "ms": round(self.ms, 1)}
        if self.error:
            out["error"] = self.error
        return out


def _timed(fn: Any) -> Check:
    started = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # any failure means "not ready"; the message says which
        # Only the exception's type and first line: a DSN in a message must not leak.
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return Check(False, 1000 * (time.perf_counter() - started),
                     f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    return Check(True, 1000 * (time.perf_counter() - started))


def readiness(*, engine: Engine, index: PhrasingIndex, redis_url: str | None) -> dict[str, Check]:
    """Each dependency's answer: the database, the vector index, and Redis when configured."""

    def database() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    checks = {"database": _timed(database), "vector_index": _timed(index.heartbeat)}
    if redis_url:
        def redis() -> None:
            import redis as redis_lib

            client = redis_lib.Redis.from_url(redis_url, socket_connect_timeout=2,
                                              socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()

        checks["redis"] = _timed(redis)
    return checks


@dataclass
class Snapshot:
    """The figures of every bot, by its slug."""

    suggestions: dict[tuple[str, str], int] = field(default_factory=dict)  # (bot, status)
    pending: dict[tuple[str, str], int] = field(default_factory=dict)  # (bot, priority)
    decisions: dict[tuple[str, str, str], int] = field(default_factory=dict)  # bot, channel, act
    outbox_pending: dict[str, int] = field(default_factory=dict)
    outbox_lag_seconds: dict[str, float] = field(default_factory=dict)
    cycles: dict[str, int] = field(default_factory=dict)
    cycle_last_seconds: dict[str, float] = field(default_factory=dict)
    cycle_running: dict[str, int] = field(default_factory=dict)
    bots: list[str] = field(default_factory=list)


def snapshot(engine: Engine, *, now: datetime | None = None) -> Snapshot:
    now = as_utc(now) if now else utcnow()
    out = Snapshot()
    with Session(engine) as session:
        slugs = dict(session.exec(select(Bot.id, Bot.slug)).all())
        out.bots = sorted(slugs.values())
        for bot_id, status, n in session.exec(
                select(Suggestion.bot_id, Suggestion.status, func.count())
                .group_by(Suggestion.bot_id, Suggestion.status)).all():
            out.suggestions[(slugs.get(bot_id, bot_id), status)] = int(n)
        for bot_id, priority, n in session.exec(
                select(Suggestion.bot_id, Suggestion.priority, func.count())
                .where(Suggestion.status == "pending")
                .group_by(Suggestion.bot_id, Suggestion.priority)).all():
            out.pending[(slugs.get(bot_id, bot_id), priority)] = int(n)
        for bot_id, channel, action, n in session.exec(
                select(AuditEvent.bot_id, AuditEvent.channel, AuditEvent.action, func.count())
                .where(col(AuditEvent.action).like("suggestion.%"))
                .group_by(AuditEvent.bot_id, AuditEvent.channel, AuditEvent.action)).all():
            out.decisions[(slugs.get(bot_id, bot_id), channel,
                           action.removeprefix("suggestion."))] = int(n)
        for bot_id, n, oldest in session.exec(
                select(IndexOutbox.bot_id, func.count(), func.min(IndexOutbox.created_at))
                .where(col(IndexOutbox.processed_at).is_(None))
                .group_by(IndexOutbox.bot_id)).all():
            slug = slugs.get(bot_id, bot_id)
            out.outbox_pending[slug] = int(n)
            out.outbox_lag_seconds[slug] = max(0.0, (now - as_utc(oldest)).total_seconds())
        for bot_id, n in session.exec(select(CycleRun.bot_id, func.count())
                                      .where(col(CycleRun.finished_at).is_not(None))
                                      .group_by(CycleRun.bot_id)).all():
            out.cycles[slugs.get(bot_id, bot_id)] = int(n)
        for bot_id, n in session.exec(select(CycleRun.bot_id, func.count())
                                      .where(col(CycleRun.finished_at).is_(None))
                                      .group_by(CycleRun.bot_id)).all():
            out.cycle_running[slugs.get(bot_id, bot_id)] = int(n)
        latest = select(CycleRun.bot_id, func.max(CycleRun.finished_at).label("at")).where(
            col(CycleRun.finished_at).is_not(None)).group_by(CycleRun.bot_id).subquery()
        for bot_id, stats in session.exec(
                select(CycleRun.bot_id, CycleRun.stats).join(
                    latest, (col(CycleRun.bot_id) == latest.c.bot_id)
                    & (col(CycleRun.finished_at) == latest.c.at))).all():
            seconds = (stats or {}).get("seconds")
            if isinstance(seconds, int | float):
                out.cycle_last_seconds[slugs.get(bot_id, bot_id)] = float(seconds)
    return out
