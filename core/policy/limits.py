"""Plan allowances and the autonomy daily limit, counted in the bot's own calendar."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.bots import WEEKLY_SUGGESTIONS, BotSettings
from core.models import Suggestion, as_utc

AUTO_ACTOR = "autotrain"


def local_day(at: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The calendar day containing `at` in `timezone`, as a UTC [start, end) pair (a DST day
    is 23 or 25 hours long)."""
    zone = ZoneInfo(timezone)
    local = as_utc(at).astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Aware arithmetic with a ZoneInfo is wall-clock: this is the next local midnight.
    return as_utc(start), as_utc(start + timedelta(days=1))


def local_week(at: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The Monday-to-Sunday week containing `at` in `timezone`, as a UTC [start, end) pair."""
    zone = ZoneInfo(timezone)
    local = as_utc(at).astimezone(zone)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0,
                                                                 microsecond=0)
    return as_utc(monday), as_utc(monday + timedelta(days=7))


def auto_published_on(session: Session, *, bot_id: str, at: datetime, timezone: str) -> int:
    """How many suggestions autonomy published on `at`'s day (reverting one later does not
    give its slot back: the limit bounds how much changes without a person)."""
    start, end = local_day(at, timezone)
    return int(session.exec(select(func.count()).select_from(Suggestion).where(
        Suggestion.bot_id == bot_id, Suggestion.decided_channel == "auto",
        col(Suggestion.decided_at) >= start, col(Suggestion.decided_at) < end)).one())


def weekly_allowance(session: Session, *, bot_id: str, settings: BotSettings,
                     at: datetime) -> int | None:
    """New suggestions the bot's plan still allows in `at`'s week; None: unlimited. Every
    suggestion offered counts, whatever became of it, so rejecting does not buy more."""
    cap = WEEKLY_SUGGESTIONS[settings.plan]
    if cap is None:
        return None
    start, end = local_week(at, settings.timezone)
    offered = int(session.exec(select(func.count()).select_from(Suggestion).where(
        Suggestion.bot_id == bot_id, col(Suggestion.gap_id).is_not(None),
        col(Suggestion.created_at) >= start, col(Suggestion.created_at) < end)).one())
    return max(0, cap - offered)
