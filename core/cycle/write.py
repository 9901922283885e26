"""Writing a gap's planned suggestion into the queue, or closing a gap with nothing left to fix."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Session, col, select

from core.bots import BotSettings
from core.cycle.plan import OFF_TOPIC, SuggestionPlan
from core.models import Gap, Suggestion, utcnow
from core.policy.queue import NOTHING_LEFT, excluded_category, withdraw, withdraw_open
from core.status import OPEN_SUGGESTION_STATUSES, GapStatus, SuggestionKind, SuggestionStatus

# A rejected gap comes back only if it has grown this much since the rejection.
REJECTED_GROWTH = 2.0


class Outcome(StrEnum):
    created = "created"
    updated = "updated"
    held = "held"  # the plan's weekly allowance is used up
    excluded = "excluded"  # its category is excluded from auto-training
    skipped = "skipped"


def write_suggestion(session: Session, plan: SuggestionPlan, *, as_of: datetime,
                     settings: BotSettings, allowance: int | None) -> Outcome:
    """Create or refresh the gap's one open suggestion, and say what happened."""
    gap = session.get(Gap, plan.gap_id)
    assert gap is not None
    gap.kind = plan.fields["kind"]
    # A published gap stays tied to the entry it published, whatever a follow-up says.
    gap.entry_id = plan.fields["entry_id"] or (gap.entry_id if gap.status == GapStatus.published
                                               else None)
    session.add(gap)
    # The open suggestion, wherever it sits in the gap's history (one carried over by a merge
    # or a re-analysis may be older than a withdrawn one).
    current = session.exec(select(Suggestion).where(
        Suggestion.gap_id == plan.gap_id, col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))
        .order_by(col(Suggestion.created_at).desc())).first()
    excluded = plan.fields.get("category") in settings.training_excluded_categories
    if current is not None:
        # New evidence updates the open suggestion; it never adds a second one. A category a
        # person set stays.
        keep = ("category", "category_source") if current.category_source == "admin" else ()
        for k, v in plan.fields.items():
            if k not in keep:
                setattr(current, k, v)
        current.updated_at = utcnow()
        if current.category in settings.training_excluded_categories:
            withdraw(session, current, because=excluded_category(current.category), at=utcnow(),
                     category=current.category)
            return Outcome.excluded
        session.add(current)
        return Outcome.updated
    if gap.status == GapStatus.published and plan.fields["kind"] == SuggestionKind.add_variants \
            and not plan.fields["variants"]:
        # A follow-up that would add nothing to the published entry is not worth a review.
        return Outcome.skipped
    if excluded:
        # The topic stays under manual control: its failures keep gathering in the gap
        # (metrics and a later change of settings see them) but nobody is asked.
        return Outcome.excluded
    latest = session.exec(select(Suggestion).where(Suggestion.gap_id == plan.gap_id)
                          .order_by(col(Suggestion.created_at).desc())).first()
    if any(r.reason == OFF_TOPIC for r in plan.rejected):
        # Its failures keep joining it (so they seed no look-alike gap) and stay silent.
        return Outcome.skipped
    if latest is not None and latest.status == SuggestionStatus.rejected:
        size_then = int((latest.evidence or {}).get("occurrences_total", 0))
        if plan.repeats_rejection and \
                plan.occurrences_total < REJECTED_GROWTH * max(size_then, 1):
            return Outcome.skipped
    if allowance is not None and allowance <= 0:
        return Outcome.held
    # Stamped with the cycle's time: the plan's weekly allowance counts by it.
    session.add(Suggestion(bot_id=plan.bot_id, gap_id=plan.gap_id,
                           status=SuggestionStatus.pending, created_at=as_of, updated_at=as_of,
                           **plan.fields))
    return Outcome.created


def close_empty_gap(session: Session, *, gap_id: str) -> None:
    """Close an open gap whose evidence is all gone (every transcript behind it was corrected)."""
    gap = session.get(Gap, gap_id)
    if gap is None or gap.status != GapStatus.open:
        return
    gap.status = GapStatus.closed
    session.add(gap)
    # Nothing is left to fix: the question stops being asked of the reviewers.
    withdraw_open(session, gap_id=gap_id, because=NOTHING_LEFT, at=utcnow())
