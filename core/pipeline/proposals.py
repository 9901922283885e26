"""Stage 4 of the cycle: what to propose for a gap, with a 0-100 confidence from the evidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.pipeline.gaps import diverse, medoid

LOW_CONFIDENCE = 60
NO_EVIDENCE_ANSWER = (
    "No human agent has answered this question yet, so there is nothing to base an answer on. "
    "Please write the answer."
)


@dataclass(frozen=True)
class Evidence:
    question: str
    question_vector: np.ndarray
    agent_reply: str | None
    reply_vector: np.ndarray | None


@dataclass(frozen=True)
class EntryView:
    id: str
    question: str
    answer: str
    variants: list[str]
    phrasing_vectors: np.ndarray  # question + variants, unit rows
    answer_vector: np.ndarray


@dataclass(frozen=True)
class Proposal:
    kind: str
    question: str
    answer: str
    variants: list[str]
    confidence: int
    warning: str | None
    entry_id: str | None


@dataclass(frozen=True)
class Candidate:
    """A KB entry the gap might belong to, and how close its phrasings are to the questions."""

    entry: EntryView
    similarity: float


# Agents' replies this close to an entry's answer say "that entry was the answer".
SAME_ANSWER = 0.6
SAME_ANSWER_ALONE = 0.8
NEAR_QUESTIONS = 0.5
NEAR_QUESTIONS_WITHOUT_REPLIES = 0.7


def classify(evidence: list[Evidence], candidates: list[Candidate], *,
             bot_answered_with: str | None) -> tuple[str, EntryView | None]:
    """new_answer, improve_answer or add_variants, and the entry it concerns.

    - the agents answered with what an entry says (reply ↔ answer cosine ≥ 0.8, or ≥ 0.6 with
      the questions near that entry's phrasings, cosine ≥ 0.5) → the bot did not recognise a
      known question: add variants to that entry;
    - the bot answered with an entry and the customers were unhappy → improve that answer;
    - no agent reply, but the questions sit very near an entry (cosine ≥ 0.7) → add variants;
    - otherwise → a new topic.
    """
    replies = [e.reply_vector for e in evidence if e.reply_vector is not None]
    if replies and candidates:
        rmat = np.stack(replies)
        scored = [(float(np.mean(rmat @ c.entry.answer_vector)), c) for c in candidates]
        agree, best = max(scored, key=lambda t: t[0])
        if agree >= SAME_ANSWER_ALONE or (agree >= SAME_ANSWER
                                          and best.similarity >= NEAR_QUESTIONS):
            if best.entry.id == bot_answered_with:
                # The bot already said what the agents said: its answer needs work, not
                # more triggers.
                return "improve_answer", best.entry
            return "add_variants", best.entry
    answered = next((c.entry for c in candidates if c.entry.id == bot_answered_with), None)
    if answered is not None:
        return "improve_answer", answered
    if not replies and candidates and candidates[0].similarity >= NEAR_QUESTIONS_WITHOUT_REPLIES:
        return "add_variants", candidates[0].entry
    return "new_answer", None


def propose(kind: str, evidence: list[Evidence], entry: EntryView | None, *,
            max_variants: int = 8) -> Proposal:
    """The most representative agent reply as the answer; the customers' phrasings as triggers."""
    qvecs = np.stack([e.question_vector for e in evidence])
    center = medoid(qvecs)
    question = evidence[center].question
    exclude = list(entry.phrasing_vectors) if entry is not None else []
    variants = [v for v in diverse([e.question for e in evidence], qvecs, limit=max_variants,
                                   exclude=exclude)
                if kind == "add_variants" or v != question]

    with_reply = [e for e in evidence if e.agent_reply and e.reply_vector is not None]
    warning: str | None = None
    if kind == "add_variants" and entry is not None:
        answer = entry.answer
        question = entry.question
        sims = qvecs @ entry.phrasing_vectors.T
        closeness = float(np.mean(sims.max(axis=1)))
        agreement = (float(np.mean([e.reply_vector @ entry.answer_vector for e in with_reply]))
                     if with_reply else closeness)
        confidence = _score(agreement, len(evidence), extra=closeness)
    elif with_reply:
        rvecs = np.stack([e.reply_vector for e in with_reply])  # type: ignore[misc]
        pick = medoid(rvecs)
        answer = with_reply[pick].agent_reply or ""
        agreement = float(np.mean(rvecs @ rvecs[pick])) if len(with_reply) > 1 else 0.6
        purity = float(np.mean(qvecs @ qvecs[center]))
        confidence = _score(agreement, len(with_reply), extra=purity)
    else:
        answer = entry.answer if (kind == "improve_answer" and entry is not None) \
            else NO_EVIDENCE_ANSWER
        confidence = 15
        warning = "No agent reply to learn from: write or check the answer before approving."
    if warning is None and confidence < LOW_CONFIDENCE:
        warning = f"Low confidence ({confidence}/100): check the answer before approving."
    return Proposal(kind, question, answer, variants, confidence, warning,
                    entry.id if entry is not None and kind != "new_answer" else None)


def _score(agreement: float, count: int, *, extra: float) -> int:
    """Blend agreement among the evidence, how much of it there is, and how tight the gap is."""
    volume = min(1.0, count / 5.0)
    raw = 0.5 * _unit(agreement, 0.4, 0.9) + 0.3 * volume + 0.2 * _unit(extra, 0.5, 0.9)
    return max(0, min(100, round(100 * raw)))


def _unit(x: float, lo: float, hi: float) -> float:
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))
