"""Stage 2 of the cycle: group failed questions into gaps by embedding similarity.

Incremental: new questions are assigned to the nearest existing open gap (by centroid) when
they are close enough, otherwise they seed new gaps; the cost is O(new × gaps), never a pass
over all history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GapState:
    """An open gap as the clustering sees it: a running centroid and a size."""

    id: str | None  # None for a gap created in this pass
    centroid: np.ndarray
    size: int
    members: list[int] = field(default_factory=list)  # indexes into this pass's items

    def add(self, index: int, vector: np.ndarray) -> None:
        total = self.centroid * self.size + vector
        self.size += 1
        norm = float(np.linalg.norm(total))
        self.centroid = total / norm if norm > 0 else total
        self.members.append(index)


def assign(vectors: np.ndarray, gaps: list[GapState], *, threshold: float) -> list[GapState]:
    """Assign each row of `vectors` (unit-norm) to a gap; returns the gaps that changed or are new.

    Items are visited so that each joins the gap it is most similar to at that moment; a
    centroid moves as members join, so order matters little once gaps have a few members.
    """
    touched: dict[int, GapState] = {}
    all_gaps = list(gaps)
    dim = vectors.shape[1]
    matrix = np.stack([g.centroid for g in all_gaps]) if all_gaps else np.zeros((0, dim))
    for i, v in enumerate(vectors):
        best = -1
        if len(all_gaps):
            sims = matrix @ v
            j = int(np.argmax(sims))
            if float(sims[j]) >= threshold:
                best = j
        if best < 0:
            g = GapState(id=None, centroid=v.copy(), size=0)
            g.add(i, v)
            all_gaps.append(g)
            matrix = np.vstack([matrix, g.centroid[None, :]])
            touched[len(all_gaps) - 1] = g
        else:
            g = all_gaps[best]
            g.add(i, v)
            matrix[best] = g.centroid
            touched[best] = g
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
