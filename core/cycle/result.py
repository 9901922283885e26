"""The figures of one cycle: what it read, changed and proposed (stored with its run record)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.generation import TokenUsage


@dataclass
class CycleResult:
    conversations_analyzed: int = 0
    gaps: int = 0
    suggestions_created: int = 0
    suggestions_updated: int = 0
    auto_published: int = 0
    seconds: float = 0.0
    signals: Counter[str] = field(default_factory=Counter)
    gaps_merged: int = 0
    gaps_split: int = 0
    gaps_closed: int = 0
    suggestions_carried: int = 0
    suggestions_withdrawn: int = 0
    tokens: TokenUsage = field(default_factory=TokenUsage)
    generation_seconds: float = 0.0  # drafting answers (the generator's share of `seconds`)
    paused: bool = False  # auto-training is paused: nothing was analysed or proposed
    held_by_plan: int = 0  # new suggestions the plan's weekly allowance held back
    excluded: int = 0  # suggestions not made: their category is excluded from auto-training
    deferred_returned: int = 0
    rollbacks_suggested: int = 0
    rolled_back: int = 0  # auto-published changes rolled back by the watch (advanced)
    # Questions asked once with no similar question: counted, not proposed; of the gaps
    # proposed in this cycle, those that were one-off questions earlier and were asked again.
    one_off: int = 0
    one_off_repeated: int = 0
    declined: int = 0  # failures set aside as declined by the agents (a stock refusal)
    # Questions the agents answered with an entry's answer, now recognised as its
    # (core.learning).
    phrasings_learned: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "conversations_analyzed": self.conversations_analyzed,
            "gaps": self.gaps,
            "suggestions_created": self.suggestions_created,
            "auto_published": self.auto_published,
            "seconds": round(self.seconds, 3),
            "paused": self.paused,
            "held_by_plan": self.held_by_plan,
            "excluded": self.excluded,
            "rollbacks_suggested": self.rollbacks_suggested,
            "rolled_back": self.rolled_back,
            "one_off_questions": self.one_off,
            "one_off_repeated": self.one_off_repeated,
            "declined_questions": self.declined,
            "phrasings_learned": self.phrasings_learned,
        }
