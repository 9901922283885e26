"""Announcements for the reviewers, written in the same transaction as what they announce."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.models import Notification, utcnow


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


def undelivered(session: Session, *, bot_id: str, limit: int = 100) -> list[Notification]:
    """Announcements no channel has delivered yet, oldest first."""
    return list(session.exec(select(Notification).where(
        Notification.bot_id == bot_id, col(Notification.delivered_at).is_(None))
        .order_by(col(Notification.id)).limit(limit)))


def mark_delivered(session: Session, *, ids: list[int], at: datetime | None = None) -> None:
    if ids:
        session.execute(update(Notification).where(col(Notification.id).in_(ids))
                        .values(delivered_at=at or utcnow())
                        .execution_options(synchronize_session=False))
