"""What the cycle may do to the review queue: withdraw, restore and reopen suggestions.

The cycle proposes (it creates pending suggestions and refreshes their evidence); taking a
suggestion out of the queue or putting one back is review state, decided here so that the
reason is always recorded the same way and the 409 a late reviewer gets can say why
(core.policy.service._closed_by reads `withdrawn_because`).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from core.models import Suggestion, as_utc, utcnow
from core.policy.notify import NotificationKind, announce
from core.status import OPEN_SUGGESTION_STATUSES, SuggestionStatus

# Why a suggestion left the queue without a reviewer (shown as "withdrawn by autotrain (...)").
NOTHING_LEFT = "nothing left to fix"
MERGED = "its gap was merged into another one with its own suggestion"
REANALYSED = "a re-analysis found no gap for its evidence"
ENTRY_CHANGED = "the entry changed again"


def excluded_category(name: str | None) -> str:
    """Why a suggestion in a category excluded from auto-training left the queue."""
    return f"its category ({name}) is excluded from auto-training"


def withdraw(session: Session, sug: Suggestion, *, because: str, at: datetime,
             category: str | None = None) -> None:
    """Take an open suggestion out of the queue. `category`: withdrawn because it was put in a
    category excluded from auto-training (a correction out of it restores it)."""
    if sug.status not in OPEN_SUGGESTION_STATUSES:
        return
    sug.status = SuggestionStatus.withdrawn
    sug.updated_at = at
    evidence = {**(sug.evidence or {}), "withdrawn_because": because}
    if category is not None:
        evidence["withdrawn_for_category"] = category
    sug.evidence = evidence
    session.add(sug)


def withdraw_open(session: Session, *, gap_id: str, because: str, at: datetime) -> int:
    """Withdraw every open suggestion of a gap; returns how many."""
    rows = list(session.exec(select(Suggestion).where(
        Suggestion.gap_id == gap_id, col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))))
    for sug in rows:
        withdraw(session, sug, because=because, at=at)
    return len(rows)


def restore(session: Session, sug: Suggestion, *, at: datetime) -> bool:
    """Put a suggestion withdrawn for its category back in the queue (the category was
    corrected out of the excluded one). Returns whether it came back."""
    evidence = dict(sug.evidence or {})
    if sug.status != SuggestionStatus.withdrawn or not evidence.get("withdrawn_for_category"):
        return False
    evidence.pop("withdrawn_for_category")
    evidence.pop("withdrawn_because", None)
    sug.status = SuggestionStatus.pending
    sug.evidence = evidence
    sug.updated_at = at
    session.add(sug)
    return True


def return_deferred(session: Session, *, bot_id: str, as_of: datetime) -> int:
    """Deferred suggestions whose date came return to the queue, with a reminder."""
    due = list(session.exec(select(Suggestion).where(
        Suggestion.bot_id == bot_id, Suggestion.status == SuggestionStatus.deferred,
        col(Suggestion.defer_until) <= as_of)))
    for sug in due:
        sug.status = SuggestionStatus.pending
        sug.updated_at = utcnow()
        session.add(sug)
        when = as_utc(sug.decided_at).date().isoformat() if sug.decided_at else "earlier"
        announce(session, bot_id=bot_id, kind=NotificationKind.deferred_returned,
                 suggestion_id=sug.id, entry_id=sug.entry_id, at=as_of,
                 text=f'Back in the queue: "{sug.question}" (deferred by {sug.decided_by} '
                      f"on {when}).", payload={"priority": sug.priority})
    return len(due)
