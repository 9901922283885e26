"""Drafting a gap's proposed answer: the `Generator` protocol and the plain data it works on.

The cycle decides *what* a gap needs (kind, home entry, triggers) in `core.pipeline.proposals`;
a generator writes the answer text from the evidence. Two implementations, chosen by settings:
`OfflineGenerator` (the default: composed from the agents' replies and the KB, no LLM) and
`LLMGenerator` (any OpenAI-compatible endpoint). Customer and agent text in a `GapContext` is
data, never instructions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RejectedDraft:
    """A proposal the reviewers rejected for this gap, and why (shown to the LLM next time)."""

    answer: str
    reason: str          # wrong_information | not_a_gap | sensitive | duplicate | tone | other
    comment: str | None = None


@dataclass(frozen=True)
class GapContext:
    """Everything a generator may use to draft one gap's answer."""

    gap_id: str
    kind: str                    # new_answer | improve_answer | add_variants
    # The customers' questions this answer is for, most typical first.
    questions: list[str]
    # What human agents replied to those questions, most representative first. Only replies
    # that fit the gap's answer are here (see core.pipeline.proposals.answered_by).
    agent_replies: list[str]
    # The entry the gap concerns (improve_answer / add_variants), if any.
    entry_question: str | None = None
    entry_answer: str | None = None
    # Answers the bot already gives (nearest entries first): the bot's tone, and facts the KB
    # already states (links in them are allowed in a draft).
    kb_answers: list[str] = field(default_factory=list)
    rejected: list[RejectedDraft] = field(default_factory=list)


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt_tokens + other.prompt_tokens,
                          self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class Draft:
    """A drafted answer. `placeholder` means there was nothing to base an answer on: the text
    asks the reviewer to write it and the suggestion cannot be approved as is."""

    answer: str
    placeholder: bool = False
    # Things the reviewer must know: links removed, contradictions, fallbacks taken...
    warnings: list[str] = field(default_factory=list)
    # The LLM's own 0-1 judgement of how well the evidence supports the draft (None offline).
    self_check: float | None = None
    language: str | None = None  # ISO 639-1 code of the draft, when known
    usage: TokenUsage = field(default_factory=TokenUsage)
    generator: str = "offline"


class Generator(Protocol):
    """Writes answers for gaps. `draft_all` may work on several gaps at once (an LLM generator
    caps its concurrency); it returns one Draft per context, in order, and never raises for one
    gap's failure (it falls back and says so in the draft's warnings)."""

    name: str

    def draft_all(self, contexts: list[GapContext]) -> list[Draft]: ...
