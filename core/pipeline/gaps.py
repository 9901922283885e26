"""Stage 2 of the cycle: group failed questions into gaps by embedding similarity.

Incremental: new questions are assigned to the nearest existing open gap (by centroid) when
they are close enough, otherwise they seed new gaps; the cost is O(new × gaps), never a pass
over all history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


@dataclass
class GapState:
    """An open gap as the clustering sees it: running centroids of its questions and of the
    human agents' replies to them (None until one has a reply), and a size."""

    id: str | None  # None for a gap created in this pass
    centroid: np.ndarray
    size: int
    reply_centroid: np.ndarray | None = None
    replies: int = 0
    members: list[int] = field(default_factory=list)  # indexes into this pass's items
    # A frozen gap (one the reviewers rejected) still collects its failures but never moves:
    # a drifting rejected gap would end up swallowing unrelated questions.
    frozen: bool = False

    def add(self, index: int, vector: np.ndarray, reply: np.ndarray | None) -> None:
        self.members.append(index)
        if self.frozen:
            self.size += 1
            return
        self.centroid = _unit(self.centroid * self.size + vector)
        self.size += 1
        if reply is not None:
            base = self.reply_centroid if self.reply_centroid is not None else np.zeros_like(reply)
            self.reply_centroid = _unit(base * self.replies + reply)
            self.replies += 1


# Questions alone are a weaker witness than questions plus the agents' answers: without a
# reply on both sides, a question must be this much closer to join a gap.
QUESTION_ONLY_MARGIN = 0.10


def similarity(gap: GapState, vector: np.ndarray, reply: np.ndarray | None) -> float:
    """How well an item fits a gap: questions and agents' replies count half each, because
    the replies tell apart neighbouring topics that customers phrase alike."""
    q = float(gap.centroid @ vector)
    if reply is not None and gap.reply_centroid is not None:
        return 0.5 * q + 0.5 * float(gap.reply_centroid @ reply)
    return q - QUESTION_ONLY_MARGIN


def assign(vectors: np.ndarray, gaps: list[GapState], *, threshold: float,
           replies: list[np.ndarray | None] | None = None) -> list[GapState]:
    """Assign each row of `vectors` (unit-norm questions, with the agent's reply vector where
    there is one) to the most similar gap, or seed a new gap when none reaches `threshold`.
    Returns the gaps that changed or are new. Cost: O(items × gaps)."""
    replies = replies if replies is not None else [None] * len(vectors)
    touched: dict[int, GapState] = {}
    all_gaps = list(gaps)
    for i, v in enumerate(vectors):
        r = replies[i]
        best, best_sim = -1, threshold
        for j, g in enumerate(all_gaps):
            sim = similarity(g, v, r)
            if sim >= best_sim:
                best, best_sim = j, sim
        if best < 0:
            all_gaps.append(GapState(id=None, centroid=np.zeros_like(v), size=0))
            best = len(all_gaps) - 1
        all_gaps[best].add(i, v, r)
        touched[best] = all_gaps[best]
    return list(touched.values())


def medoid(vectors: np.ndarray) -> int:
    """Index of the row most similar to all the others: the group's most typical item."""
    if len(vectors) == 1:
        return 0
    sims = vectors @ vectors.T
    return int(np.argmax(sims.sum(axis=1)))


def diverse(texts: list[str], vectors: np.ndarray, *, limit: int,
            near_duplicate: float = 0.95, exclude: list[np.ndarray] | None = None) -> list[str]:
    """Up to `limit` phrasings, most typical first, skipping near-duplicates of ones kept."""
    if not texts:
        return []
    order = np.argsort(-(vectors @ vectors.mean(axis=0)))
    kept: list[int] = []
    kept_vecs: list[np.ndarray] = list(exclude or [])
    seen_text: set[str] = set()
    for i in order:
        key = " ".join(texts[i].lower().split())
        if key in seen_text:
            continue
        if kept_vecs and max(float(k @ vectors[i]) for k in kept_vecs) >= near_duplicate:
            continue
        kept.append(int(i))
        kept_vecs.append(vectors[i])
        seen_text.add(key)
        if len(kept) >= limit:
            break
    return [texts[i] for i in kept]
