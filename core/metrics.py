"""Support metrics per day, week or month, computed from the stored conversation outcomes.

Definitions (docs/metrics.md): over the conversations that started in a bucket,
- automatic_resolution_rate: share the bot resolved alone (it answered; no handover, no
  negative feedback, not abandoned);
- escalation_rate: share handed over to a human agent;
- negative_feedback_rate: share with a thumbs-down, CSAT 1-2, a complaint or a request for a
  human after a bot answer;
- abandonment_rate: share where the customer left right after a bot answer without
  resolution;
- csat: mean of the CSAT scores given (null when none);
- avg_resolution_seconds: mean first-to-last message time of conversations resolved by the
  bot or by an agent (null when none).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.models import Conversation, Suggestion, as_utc

THIN_DATA_CONVERSATIONS = 200


class Bucket(StrEnum):
    day = "day"
    week = "week"
    month = "month"


def bucket_start(at: datetime, bucket: Bucket) -> datetime:
    at = as_utc(at)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == Bucket.day:
        return day
    if bucket == Bucket.week:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def activated_at(engine: Engine, *, bot_id: str) -> datetime | None:
    """When auto-training started changing the bot: its first published suggestion."""
    with Session(engine) as session:
        first = session.exec(
            select(Suggestion.decided_at).where(
                Suggestion.bot_id == bot_id,
                col(Suggestion.status).in_(("approved", "auto_published")),
                col(Suggestion.decided_at).is_not(None))
            .order_by(col(Suggestion.decided_at)).limit(1)).first()
    return as_utc(first) if first else None


def compute_metrics(engine: Engine, *, bot_id: str, bucket: Bucket,
                    since: datetime | None = None,
                    until: datetime | None = None) -> list[dict[str, Any]]:
    stmt = select(Conversation.started_at, Conversation.resolved_automatically,
                  Conversation.escalated, Conversation.negative_feedback, Conversation.abandoned,
                  Conversation.csat, Conversation.resolution_seconds
                  ).where(Conversation.bot_id == bot_id)
    if since is not None:
        stmt = stmt.where(col(Conversation.started_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Conversation.started_at) < until)
    acc: dict[datetime, dict[str, Any]] = {}
    with Session(engine) as session:
        for started, resolved, escalated, negative, abandoned, csat, seconds in session.exec(stmt):
            b = acc.setdefault(bucket_start(started, bucket), {
                "n": 0, "resolved": 0, "escalated": 0, "negative": 0, "abandoned": 0,
                "csat": [], "seconds": []})
            b["n"] += 1
            b["resolved"] += bool(resolved)
            b["escalated"] += bool(escalated)
            b["negative"] += bool(negative)
            b["abandoned"] += bool(abandoned)
            if csat is not None:
                b["csat"].append(csat)
            if seconds is not None:
                b["seconds"].append(seconds)
    out = []
    for start in sorted(acc):
        b = acc[start]
        n = b["n"]
        out.append({
            "start": start.isoformat(),
            "conversations": n,
            "automatic_resolution_rate": round(b["resolved"] / n, 4),
            "escalation_rate": round(b["escalated"] / n, 4),
            "negative_feedback_rate": round(b["negative"] / n, 4),
            "abandonment_rate": round(b["abandoned"] / n, 4),
            "csat": round(sum(b["csat"]) / len(b["csat"]), 2) if b["csat"] else None,
            "avg_resolution_seconds": round(sum(b["seconds"]) / len(b["seconds"]), 1)
            if b["seconds"] else None,
        })
    return out
