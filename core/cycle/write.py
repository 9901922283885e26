"""Writing a gap's planned suggestion into the queue, or closing a gap with nothing left to fix."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

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
    one_off = "one_off"  # a question asked once, with no similar question: counted only
    skipped = "skipped"


# A question becomes a suggestion once this many conversations asked it (or one like it):
# one customer's question, unlike any other, is not yet a gap worth a reviewer's decision.
MIN_CONVERSATIONS = 2


def is_one_off(plan: SuggestionPlan) -> bool:
    """A question asked in one conversation only, with no similar question. Unrecognised
    phrasings of an entry (add_variants) are not: their similar question is the entry's own,
    and the agents' reply confirmed it."""
    return plan.occurrences_total < MIN_CONVERSATIONS \
        and plan.fields["kind"] != SuggestionKind.add_variants


def was_one_off(plan: SuggestionPlan) -> bool:
    """The gap was one question before the last 7 days, and was asked again since."""
    evidence = plan.fields["evidence"]
    recent = int(evidence.get("occurrences_7d") or 0)
    return recent >= 1 and plan.occurrences_total - recent == 1


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
        folded = dict((current.evidence or {}).get("also_from") or {})
        for k, v in plan.fields.items():
            if k not in keep:
                setattr(current, k, v)
        if folded:
            # Phrasings other gaps folded into this suggestion stay until it is decided.
            _apply_folded(current, folded)
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
    if is_one_off(plan):
        # Counted and listed on demand (GET /bots/{slug}/questions?kind=one_off); a second
        # customer asking alike makes it a suggestion.
        return Outcome.one_off
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
    host = _open_add_variants(session, plan) \
        if plan.fields["kind"] == SuggestionKind.add_variants and plan.fields["entry_id"] \
        else None
    if host is not None:
        # One open add-variants suggestion per entry: reviewers approve an entry's new
        # phrasings together instead of one card per gap that found some.
        _fold(host, plan)
        session.add(host)
        return Outcome.updated
    if allowance is not None and allowance <= 0:
        return Outcome.held
    # Stamped with the cycle's time: the plan's weekly allowance counts by it.
    session.add(Suggestion(bot_id=plan.bot_id, gap_id=plan.gap_id,
                           status=SuggestionStatus.pending, created_at=as_of, updated_at=as_of,
                           **plan.fields))
    return Outcome.created


def _open_add_variants(session: Session, plan: SuggestionPlan) -> Suggestion | None:
    """Another gap's open add-variants suggestion for the plan's entry, if there is one."""
    return session.exec(select(Suggestion).where(
        Suggestion.bot_id == plan.bot_id, Suggestion.kind == SuggestionKind.add_variants,
        Suggestion.entry_id == plan.fields["entry_id"], Suggestion.gap_id != plan.gap_id,
        col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))
        .order_by(col(Suggestion.created_at))).first()


def _fold(host: Suggestion, plan: SuggestionPlan) -> None:
    """Fold the plan's phrasings and evidence into `host`, replacing what the plan's gap folded
    in before (a gap re-planned every cycle is counted once)."""
    evidence = plan.fields["evidence"]
    folded = dict((host.evidence or {}).get("also_from") or {})
    _strip_folded(host, folded)
    folded[plan.gap_id] = {
        "variants": list(plan.fields["variants"]),
        "conversation_ids": list(evidence.get("conversation_ids") or []),
        "occurrences_total": int(evidence.get("occurrences_total") or 0),
        "occurrences_7d": int(evidence.get("occurrences_7d") or 0),
    }
    _apply_folded(host, folded)
    host.updated_at = utcnow()


def _strip_folded(host: Suggestion, folded: dict[str, dict[str, Any]]) -> None:
    """`host` as its own gap planned it: the folded gaps' contributions taken out."""
    evidence = dict(host.evidence or {})
    theirs = {v for f in folded.values() for v in f["variants"]}
    ids = {c for f in folded.values() for c in f["conversation_ids"]}
    evidence["conversation_ids"] = [c for c in evidence.get("conversation_ids") or []
                                    if c not in ids]
    for key in ("occurrences_total", "occurrences_7d"):
        evidence[key] = max(0, int(evidence.get(key) or 0)
                            - sum(int(f[key]) for f in folded.values()))
    evidence.pop("also_from", None)
    host.evidence = evidence
    host.variants = [v for v in host.variants or [] if v not in theirs]


def _apply_folded(host: Suggestion, folded: dict[str, dict[str, Any]]) -> None:
    """`host` (as its own gap planned it) with the folded gaps' phrasings and evidence added."""
    evidence = dict(host.evidence or {})
    seen = {" ".join(v.lower().split()) for v in host.variants or []}
    variants = list(host.variants or [])
    for f in folded.values():
        for v in f["variants"]:
            if " ".join(v.lower().split()) not in seen:
                seen.add(" ".join(v.lower().split()))
                variants.append(v)
    evidence["conversation_ids"] = list(dict.fromkeys(
        [*(evidence.get("conversation_ids") or []),
         *(c for f in folded.values() for c in f["conversation_ids"])]))[:50]
    for key in ("occurrences_total", "occurrences_7d"):
        evidence[key] = int(evidence.get(key) or 0) + sum(int(f[key]) for f in folded.values())
    evidence["also_from"] = folded
    host.evidence = evidence
    host.variants = variants


def close_empty_gap(session: Session, *, gap_id: str) -> None:
    """Close an open gap whose evidence is all gone (every transcript behind it was corrected)."""
    gap = session.get(Gap, gap_id)
    if gap is None or gap.status != GapStatus.open:
        return
    gap.status = GapStatus.closed
    session.add(gap)
    # Nothing is left to fix: the question stops being asked of the reviewers.
    withdraw_open(session, gap_id=gap_id, because=NOTHING_LEFT, at=utcnow())
