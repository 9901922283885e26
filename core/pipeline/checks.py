"""Stage 4b of the cycle: checks on a drafted answer before it is proposed.

- **Evidence replay**: how many of the gap's own customer questions the bot would answer with
  the proposal live, against how many it answers with that entry now — the same vote as
  `answer`, over the index's neighbours plus the proposal's phrasings.
- **Duplicates**: a drafted new answer that says what an entry already says.
- **Contradictions**: an entry asked in (nearly) the same words whose answer says something
  else. This compares meaning by embeddings, not logic: it flags answers to check, it does not
  prove they disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.answering import NEIGHBOURS, vote
from core.index import Hit

# A draft this close to an entry's answer says the same thing.
DUPLICATE_ANSWER = 0.92
# An entry whose phrasings are this close to the gap's questions is asked the same thing...
SAME_QUESTION = 0.85
# ...and if its answer is this far from the draft, the two may disagree.
DIFFERENT_ANSWER = 0.6
# The replay looks at this many of the gap's questions (the most typical first).
REPLAY_QUESTIONS = 20
PROPOSED = "(proposed)"


@dataclass(frozen=True)
class ReplayFigures:
    questions: int    # how many of the gap's questions were replayed
    answered_now: int  # answered by the proposal's entry today (0 for a new answer)
    answered_with: int  # answered by it with the proposal live

    def public(self) -> dict[str, int]:
        return {"questions": self.questions, "answered_now": self.answered_now,
                "answered_with_proposal": self.answered_with}

    def sentence(self) -> str:
        return (f"With this live the bot would answer {self.answered_with} of "
                f"{self.questions} of these customers' questions (now {self.answered_now}).")


def evidence_replay(*, question_vectors: np.ndarray, hits: list[list[Hit]],
                    phrasing_vectors: np.ndarray, target: str | None,
                    threshold: int) -> ReplayFigures:
    """Vote each question as `answer` would, now and with the proposal's phrasings added to
    `target` (None: a new entry). `hits` are the index's current neighbours per question."""
    entry = target or PROPOSED
    now = with_ = 0
    for i, q in enumerate(question_vectors):
        current = hits[i]
        if _winner(current, threshold) == entry:
            now += 1
        extra = [Hit(f"{PROPOSED}:{j}", entry, float(q @ p))
                 for j, p in enumerate(phrasing_vectors)]
        merged = sorted(current + extra, key=lambda h: h.similarity, reverse=True)[:NEIGHBOURS]
        if _winner(merged, threshold) == entry:
            with_ += 1
    return ReplayFigures(len(question_vectors), now, with_)


def _winner(hits: list[Hit], threshold: int) -> str | None:
    ranked = vote(hits)
    if not ranked or round(100 * ranked[0].share) < threshold:
        return None
    return ranked[0].entry_id


@dataclass(frozen=True)
class KnownAnswer:
    entry_id: str
    question: str
    answer_vector: np.ndarray
    phrasing_vectors: np.ndarray


def duplicate_of(draft_vector: np.ndarray, known: list[KnownAnswer]) -> KnownAnswer | None:
    """The entry whose answer already says what the draft says, if any."""
    best = max(known, key=lambda k: float(k.answer_vector @ draft_vector), default=None)
    if best is not None and float(best.answer_vector @ draft_vector) >= DUPLICATE_ANSWER:
        return best
    return None


def contradicted_by(draft_vector: np.ndarray, question_vectors: np.ndarray,
                    known: list[KnownAnswer], *, skip: str | None = None) -> list[KnownAnswer]:
    """Entries asked in nearly the same words as the gap's questions whose answers say
    something else than the draft (`skip`: the entry the proposal itself changes)."""
    centre = question_vectors.mean(axis=0)
    centre = centre / (float(np.linalg.norm(centre)) or 1.0)
    out = []
    for k in known:
        if k.entry_id == skip or not len(k.phrasing_vectors):
            continue
        asked_alike = float(np.max(k.phrasing_vectors @ centre)) >= SAME_QUESTION
        if asked_alike and float(k.answer_vector @ draft_vector) < DIFFERENT_ANSWER:
            out.append(k)
    return out
