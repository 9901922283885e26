"""Announcements for the reviewers, written in the same transaction as what they announce."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from core.models import Notification, NotificationDelivery, utcnow


class NotificationKind(StrEnum):
    auto_published = "auto_published"
    auto_rolled_back = "auto_rolled_back"
    rollback_suggested = "rollback_suggested"
    deferred_returned = "deferred_returned"
    paused = "paused"
    resumed = "resumed"


def announce(session: Session, *, bot_id: str, kind: NotificationKind, text: str,
             suggestion_id: str | None = None, entry_id: str | None = None,
             payload: dict[str, Any] | None = None, at: datetime | None = None) -> None:
    session.add(Notification(bot_id=bot_id, kind=kind.value, text=text,
                             suggestion_id=suggestion_id, entry_id=entry_id,
                             payload=payload or {}, created_at=at or utcnow()))


def undelivered(session: Session, *, bot_id: str, channel: str,
                limit: int = 100) -> list[Notification]:
    """Announcements `channel` has not delivered yet, oldest first."""
    done = select(NotificationDelivery.notification_id).where(
        NotificationDelivery.notification_id == Notification.id,
        NotificationDelivery.channel == channel)
    return list(session.exec(select(Notification).where(
        Notification.bot_id == bot_id, ~done.exists())
        .order_by(col(Notification.id)).limit(limit)))


def mark_delivered(session: Session, *, ids: list[int], channel: str,
                   at: datetime | None = None) -> None:
    """Record that `channel` delivered these announcements; one already recorded stays as it
    was (a job delivering twice, two workers at once)."""
    if not ids:
        return
    rows = [{"notification_id": i, "channel": channel, "delivered_at": at or utcnow()}
            for i in sorted(set(ids))]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(NotificationDelivery).values(rows).on_conflict_do_nothing())
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(NotificationDelivery).values(rows)
                        .on_conflict_do_nothing())
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        known = set(session.exec(select(NotificationDelivery.notification_id).where(
            col(NotificationDelivery.notification_id).in_(ids),
            NotificationDelivery.channel == channel)).all())
        session.execute(insert(NotificationDelivery),
                        [r for r in rows if r["notification_id"] not in known])
