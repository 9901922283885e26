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


def classify(evidence: list[Evidence], entry: EntryView | None, *, bot_answered_with: str | None,
             entry_similarity: float, recognise_threshold: float = 0.6,
             same_answer_threshold: float = 0.6) -> str:
    """new_answer, improve_answer or add_variants, from the nearest entry and agents' replies.

    - the bot answered with an entry and the customers were unhappy → improve that answer;
    - the questions sit near an entry and the agents said what that entry says → the bot did
      not recognise a known question: add variants;
    - otherwise → a new topic.
    """
    if entry is None:
        return "new_answer"
    replies = [e.reply_vector for e in evidence if e.reply_vector is not None]
    agrees = bool(replies) and float(np.mean([r @ entry.answer_vector for r in replies])) \
        >= same_answer_threshold
    if bot_answered_with == entry.id:
        return "add_variants" if agrees and not replies else "improve_answer"
    if entry_similarity >= recognise_threshold and (agrees or not replies):
        return "add_variants"
    return "new_answer"


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
