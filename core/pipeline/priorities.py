"""Stage 3 of the cycle: rank gaps critical / medium / low, with a reason a manager can read."""

from __future__ import annotations

from dataclasses import dataclass

PRIORITY_ORDER = {"critical": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class GapFacts:
    kind: str  # new_answer | improve_answer | add_variants
    occurrences_7d: int
    occurrences_total: int
    unanswered: int
    negative_feedback: int
    abandoned: int
    previous_7d: int = 0  # occurrences in the 7 days before, to tell a rising gap


@dataclass(frozen=True)
class Priority:
    level: str
    score: float
    reason: str


def prioritise(facts: GapFacts, *, critical_weekly: int = 5) -> Priority:
    """Critical: ≥ `critical_weekly` occurrences in 7 days with no answer; medium: an existing
    answer that fails (or a new question below the critical rate); low: unrecognised variations.
    """
    if facts.kind == "new_answer":
        level = "critical" if facts.occurrences_7d >= critical_weekly else "medium"
    elif facts.kind == "improve_answer":
        level = "medium"
    else:
        level = "low"
    rising = facts.occurrences_7d > facts.previous_7d * 1.5 and facts.occurrences_7d >= 3
    score = (facts.occurrences_7d + 0.25 * facts.occurrences_total
             + 0.5 * facts.negative_feedback + 0.5 * facts.abandoned + (2.0 if rising else 0.0))
    parts = [f"{facts.occurrences_7d} customer{'s' if facts.occurrences_7d != 1 else ''} "
             "in 7 days"]
    if facts.occurrences_total > facts.occurrences_7d:
        parts.append(f"{facts.occurrences_total} in all")
    if facts.unanswered:
        parts.append(f"{facts.unanswered} handed to an agent or unanswered")
    if facts.negative_feedback:
        parts.append(f"{facts.negative_feedback} negative feedback")
    if facts.abandoned:
        parts.append(f"{facts.abandoned} abandoned")
    if rising:
        parts.append("rising")
    return Priority(level, round(score, 2), ", ".join(parts))
