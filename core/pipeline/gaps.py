"""Stage 2 of the cycle: group failed questions into gaps by embedding similarity.

Incremental: new questions are assigned to the nearest existing open gap (by centroid) when
they are close enough, otherwise they seed new gaps; the cost is O(new × gaps) multiply-adds,
vectorised over the gaps, never a pass over all history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


@dataclass
class GapState:
    """A gap as the clustering sees it (open, or frozen: rejected or published): running
    centroids of its questions and of the human agents' replies to them (None until one has
    a reply), and a size."""

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
# A frozen gap (rejected or published) can never be split, so it turns away a failure whose
# agent's reply is less like its replies than this: that customer needed another answer.
FROZEN_REPLY_AGREEMENT = 0.80
REFUSED = -1.0


def similarity(gap: GapState, vector: np.ndarray, reply: np.ndarray | None) -> float:
    """How well an item fits a gap: questions and agents' replies count half each, because
    the replies tell apart neighbouring topics that customers phrase alike."""
    q = float(gap.centroid @ vector)
    if reply is not None and gap.reply_centroid is not None:
        r = float(gap.reply_centroid @ reply)
        if gap.frozen and r < FROZEN_REPLY_AGREEMENT:
            return REFUSED
        return 0.5 * q + 0.5 * r
    return q - QUESTION_ONLY_MARGIN


class _Centroids:
    """Every gap's centroids as rows of two matrices, so one item is scored against all gaps
    with two matrix-vector products instead of a Python loop over the gaps."""

    def __init__(self, gaps: list[GapState], dim: int) -> None:
        cap = max(16, 2 * len(gaps))
        self.q = np.zeros((cap, dim), dtype=np.float32)
        self.r = np.zeros((cap, dim), dtype=np.float32)
        self.has_reply = np.zeros(cap, dtype=bool)
        self.frozen = np.zeros(cap, dtype=bool)
        self.n = 0
        for g in gaps:
            self.append(g)

    def append(self, gap: GapState) -> int:
        if self.n == len(self.q):
            self.q = np.concatenate([self.q, np.zeros_like(self.q)])
            self.r = np.concatenate([self.r, np.zeros_like(self.r)])
            self.has_reply = np.concatenate([self.has_reply, np.zeros_like(self.has_reply)])
            self.frozen = np.concatenate([self.frozen, np.zeros_like(self.frozen)])
        self.set(self.n, gap)
        self.n += 1
        return self.n - 1

    def set(self, j: int, gap: GapState) -> None:
        self.q[j] = gap.centroid
        self.frozen[j] = gap.frozen
        if gap.reply_centroid is not None:
            self.r[j] = gap.reply_centroid
            self.has_reply[j] = True

    def scores(self, vector: np.ndarray, reply: np.ndarray | None) -> np.ndarray:
        """`similarity` of the item to every gap at once."""
        q = self.q[:self.n] @ vector
        if reply is None:
            return q - QUESTION_ONLY_MARGIN
        r = self.r[:self.n] @ reply
        has = self.has_reply[:self.n]
        scores = np.where(has, 0.5 * q + 0.5 * r, q - QUESTION_ONLY_MARGIN)
        refused = has & self.frozen[:self.n] & (r < FROZEN_REPLY_AGREEMENT)
        return np.where(refused, REFUSED, scores)


def assign(vectors: np.ndarray, gaps: list[GapState], *, threshold: float,
           replies: list[np.ndarray | None] | None = None) -> list[GapState]:
    """Assign each row of `vectors` (unit-norm questions, with the agent's reply vector where
    there is one) to the most similar gap, or seed a new gap when none reaches `threshold`.
    Items are taken in order and a gap's centroid moves as items join it, so the result is
    the same as scoring every item against every gap one by one (on a tie the later gap
    wins); the scoring itself is vectorised. Returns the gaps that changed or are new.
    Cost: O(items × gaps) multiply-adds, in numpy."""
    replies = replies if replies is not None else [None] * len(vectors)
    touched: dict[int, GapState] = {}
    all_gaps = list(gaps)
    if len(vectors) == 0:
        return []
    mats = _Centroids(all_gaps, vectors.shape[1])
    for i, v in enumerate(vectors):
        r = replies[i]
        best = -1
        if mats.n:
            sims = mats.scores(v, r)
            # The last of equal maxima, as the one-by-one loop with `>=` picked.
            last = mats.n - 1 - int(np.argmax(sims[::-1]))
            if float(sims[last]) >= threshold:
                best = last
        if best < 0:
            all_gaps.append(GapState(id=None, centroid=np.zeros_like(v), size=0))
            best = mats.append(all_gaps[-1])
        gap = all_gaps[best]
        gap.add(i, v, r)
        if not gap.frozen:
            mats.set(best, gap)
        touched[best] = gap
    return list(touched.values())


def medoid(vectors: np.ndarray) -> int:
    """Index of the row most similar to all the others: the group's most typical item."""
    if len(vectors) == 1:
        return 0
    # Σ_j v_i·v_j = v_i·(Σ_j v_j): the row sums of the similarity matrix in O(n·d), without
    # building the n×n matrix (a popular gap holds thousands of questions).
    return int(np.argmax(vectors @ vectors.sum(axis=0)))


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
