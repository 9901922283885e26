"""The read path the chatbot calls: match a question to a KB entry or tell it to escalate."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.embeddings import Embedder
from core.index import Hit, PhrasingIndex
from core.learning import NOBODY
from core.models import KBEntry

# Neighbours that vote, and how sharply closeness counts: the measured note on BANKING77
# shows a vote over the neighbourhood beats one nearest phrasing at the same error rate; a
# sharper vote (20 rather than 10) answered 3-4 points more at the same 2% wrong answers.
NEIGHBOURS = 10
TEMPERATURE = 20.0
# The "nobody here" competitor: a phrasing this similar is a coin flip against escalating.
NULL_SIMILARITY = 0.70


@dataclass(frozen=True)
class Match:
    entry_id: str
    similarity: float  # best phrasing of that entry
    share: float       # 0..1, the entry's share of the vote (the null option included)


@dataclass(frozen=True)
class AnswerResult:
    answer: str | None
    entry_id: str | None
    confidence: int
    escalate: bool
    similarity: float | None = None


def vote(hits: list[Hit]) -> list[Match]:
    """Entries ranked by their share of a softmax vote over the neighbours, null included
    (the fixed "nobody" level, and the questions the bot learned are nobody's)."""
    if not hits:
        return []
    weights: dict[str, float] = defaultdict(float)
    best: dict[str, Hit] = {}
    top = max(h.similarity for h in hits)
    # Subtract the top similarity before exponentiating for numeric stability.
    for h in hits:
        weights[h.entry_id] += math.exp(TEMPERATURE * (h.similarity - top))
        if h.entry_id not in best or h.similarity > best[h.entry_id].similarity:
            best[h.entry_id] = h
    # Questions the agents answered with something no entry says (core.learning) vote with
    # the "nobody here" competitor: near them, handing over wins.
    null = math.exp(TEMPERATURE * (NULL_SIMILARITY - top)) + weights.pop(NOBODY, 0.0)
    total = sum(weights.values()) + null
    ranked = sorted(weights, key=lambda e: weights[e], reverse=True)
    return [Match(e, best[e].similarity, weights[e] / total) for e in ranked]


def rank_entries(*, index: PhrasingIndex, bot_id: str, vector: np.ndarray) -> list[Match]:
    return vote(index.query(bot_id=bot_id, vector=vector, k=NEIGHBOURS))


def answer_question(*, engine: Engine, index: PhrasingIndex, embedder: Embedder, bot_id: str,
                    question: str, threshold: int) -> AnswerResult:
    """Answer from the best active entry, or escalate when confidence is under `threshold`."""
    vector = embedder.embed([question])[0]
    matches = rank_entries(index=index, bot_id=bot_id, vector=vector)
    return pick_answer(engine=engine, bot_id=bot_id, matches=matches, threshold=threshold)


def pick_answer(*, engine: Engine, bot_id: str, matches: list[Match], threshold: int,
                overrides: dict[str, str] | None = None) -> AnswerResult:
    """The best of the top three voted entries that is active in SQL (or has an answer in
    `overrides`, which also replaces an entry's), escalating under `threshold`."""
    if not matches:
        return AnswerResult(None, None, 0, True)
    overrides = overrides or {}
    with Session(engine) as session:
        # SQL is the truth: an entry the index still lists but SQL has deactivated is skipped.
        live: dict[str, str] = dict(session.exec(
            select(KBEntry.id, KBEntry.answer).where(
                col(KBEntry.id).in_([m.entry_id for m in matches[:3]]),
                KBEntry.bot_id == bot_id, col(KBEntry.active))
        ).all())
    for m in matches[:3]:
        answer = overrides.get(m.entry_id, live.get(m.entry_id))
        if answer is None:
            continue
        confidence = round(100 * m.share)
        if confidence < threshold:
            return AnswerResult(None, None, confidence, True, m.similarity)
        return AnswerResult(answer, m.entry_id, confidence, False, m.similarity)
    return AnswerResult(None, None, 0, True)
