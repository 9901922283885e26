"""Stage 3 of the cycle: rank gaps critical / medium / low, with a reason a manager can read."""

from __future__ import annotations

from dataclasses import dataclass

from core.pipeline.signals import content_words
from core.status import PRIORITY_ORDER as PRIORITY_ORDER  # the one order; still importable here

# An agent's reply after the bot's answer "adds information" when it brings at least this
# many content words the answer lacks, and they are at least this share of the reply's
# content words (a greeting, the customer's name and a sign-off stay below both).
ADDED_WORDS = 5
ADDED_SHARE = 0.4
# Agents' small talk that is not information about the question.
CHATTER = frozenset(content_words(
    "sorry thanks thank you for waiting wait team here happy glad help welcome anything else "
    "great day hope apologies inconvenience support today there let me check sure"))


@dataclass(frozen=True)
class GapFacts:
    kind: str  # new_answer | improve_answer | add_variants
    occurrences_7d: int
    occurrences_total: int
    unanswered: int
    negative_feedback: int
    abandoned: int
    previous_7d: int = 0  # occurrences in the 7 days before, to tell a rising gap
    # improve_answer: the entry's satisfaction over the last 30 days (core.metrics): the
    # conversations where the bot answered with it, and how many of them were satisfied.
    answered_30d: int = 0
    satisfied_30d: int = 0
    # improve_answer: the gap's conversations where the bot answered with the entry, and
    # those where an agent then added information the answer lacks (`adds_information`).
    answered_in_gap: int = 0
    agent_additions: int = 0

    @property
    def incomplete(self) -> bool:
        """Agents had to add to the answer in at least a third of the gap's conversations
        where the bot gave it (and at least once)."""
        return self.agent_additions >= 1 and 3 * self.agent_additions >= self.answered_in_gap

    def satisfaction_below(self, percent: int) -> bool | None:
        """Whether satisfaction is under `percent` %; None when the entry has no answered
        conversation in the window (exact integer comparison: 59.9 % is below 60 %)."""
        if self.answered_30d == 0:
            return None
        return self.satisfied_30d * 100 < percent * self.answered_30d


@dataclass(frozen=True)
class Priority:
    level: str
    score: float
    reason: str


def adds_information(agent_reply: str, answer: str) -> bool:
    """True when an agent's reply after the bot's answer says something the answer does not:
    ADDED_WORDS or more new content words, ADDED_SHARE or more of the reply's."""
    reply = content_words(agent_reply) - CHATTER
    new = reply - content_words(answer)
    return len(new) >= ADDED_WORDS and len(new) >= ADDED_SHARE * len(reply)


def prioritise(facts: GapFacts, *, critical_weekly: int = 5,
               medium_satisfaction: int = 60) -> Priority:
    """Critical: ≥ `critical_weekly` occurrences in 7 days with no answer; medium: an existing
    answer that is incomplete or satisfies fewer than `medium_satisfaction` % of customers
    (when its 30-day record is too thin to say, the gap's own unhappy customers speak for
    it); low: everything else — a new question below the critical rate (a new topic is not
    urgent until it is frequent), an existing answer that works, unrecognised variations of
    an entry.
    """
    below = facts.satisfaction_below(medium_satisfaction)
    if facts.kind == "new_answer":
        level = "critical" if facts.occurrences_7d >= critical_weekly else "low"
    elif facts.kind == "improve_answer":
        level = "medium" if facts.incomplete or below is not False else "low"
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
    if facts.kind == "improve_answer" and below is not None:
        parts.append(f"satisfaction {facts.satisfied_30d * 100 // facts.answered_30d} % "
                     f"({facts.answered_30d} answers in 30 days)")
    if facts.kind == "improve_answer" and facts.incomplete:
        parts.append(f"agents added to the answer {facts.agent_additions} "
                     f"time{'s' if facts.agent_additions != 1 else ''}")
    if rising:
        parts.append("rising")
    return Priority(level, round(score, 2), ", ".join(parts))
