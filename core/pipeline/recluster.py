"""Periodic re-clustering of open gaps: merge gaps that converged, split gaps whose agents disagree.

Incremental assignment depends on the order questions arrive in: two gaps can start on one
topic (the first questions were far apart), and a gap can collect customers who phrase alike
but need different answers. Each cycle repairs both cheaply:

- merge: two open gaps whose question centroids AND agents'-reply centroids have converged
  are one topic. O(open gaps²) on the centroids, one matrix product.
- split: a gap whose agents' replies form two clearly different groups mixes unrelated
  questions. Only gaps that received a disagreeing reply this cycle are examined, O(evidence
  of that gap) per pass (a 2-means on the reply vectors, never a pairwise matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Both centroids this close: the same topic (agents say the same thing to the same question).
MERGE_QUESTION = 0.80
MERGE_REPLY = 0.90
# Without replies on both sides the questions alone must be this close.
MERGE_QUESTION_ALONE = 0.92
# Two reply groups whose centroids are less alike than this are different answers...
SPLIT_REPLY = 0.70
# ...so a reply less like its gap's reply centroid than this makes the gap worth examining:
# two equal groups whose centroids are SPLIT_REPLY apart sit at sqrt((1 + SPLIT_REPLY) / 2)
# from the centroid of both, and a smaller group further away. (Replies are compared by
# their distinctive parts, core.pipeline.macros: one topic's replies, pasted from one macro,
# sit near 1.)
SPLIT_HINT = float(np.sqrt((1 + SPLIT_REPLY) / 2))
# ...and each must hold at least this many replies, so one odd reply never splits a gap.
SPLIT_MIN_PART = 3
SPLIT_ROUNDS = 10


def unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


@dataclass
class Centroids:
    """An open gap as the merge sees it."""

    question: np.ndarray
    reply: np.ndarray | None
    size: int


def merge_groups(gaps: list[Centroids]) -> list[list[int]]:
    """Groups (indexes into `gaps`, two or more each) of gaps that are one topic.

    A pair is the same topic when both question and reply centroids are close
    (MERGE_QUESTION, MERGE_REPLY), or, if either has no reply yet, when the questions alone
    are very close (MERGE_QUESTION_ALONE). Groups are the connected pairs (union-find)."""
    n = len(gaps)
    if n < 2:
        return []
    q = np.stack([g.question for g in gaps])
    dim = q.shape[1]
    r = np.stack([g.reply if g.reply is not None else np.zeros(dim, dtype=q.dtype)
                  for g in gaps])
    has = np.array([g.reply is not None for g in gaps])
    qs, rs = q @ q.T, r @ r.T
    both = np.outer(has, has)
    same = np.where(both, (qs >= MERGE_QUESTION) & (rs >= MERGE_REPLY),
                    qs >= MERGE_QUESTION_ALONE)
    np.fill_diagonal(same, False)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(same)), strict=True):
        a, b = find(int(i)), find(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def merged_centroid(vectors: list[np.ndarray | None], weights: list[int]) -> np.ndarray | None:
    """The weighted mean direction of several running centroids (None if none exists)."""
    acc: np.ndarray | None = None
    for v, w in zip(vectors, weights, strict=True):
        if v is None or w <= 0:
            continue
        acc = v * w if acc is None else acc + v * w
    return unit(acc) if acc is not None else None


def disagrees(reply_centroid: np.ndarray | None, replies: np.ndarray) -> bool:
    """Whether any of `replies` is far enough from the gap's reply centroid to look at."""
    if reply_centroid is None or len(replies) == 0:
        return False
    return bool(np.min(replies @ reply_centroid) < SPLIT_HINT)


def split_by_replies(questions: np.ndarray, replies: list[np.ndarray | None]
                     ) -> np.ndarray | None:
    """Part labels (0 for the larger part, 1 for the other) when the agents' replies form two
    clearly different groups, else None.

    2-means on the reply vectors, seeded with the reply least like the others and the one
    least like it; the groups count as different when their centroids' cosine is below
    SPLIT_REPLY and each has SPLIT_MIN_PART replies. Questions without a reply follow the
    part whose questions they are closest to."""
    idx = [i for i, r in enumerate(replies) if r is not None]
    if len(idx) < 2 * SPLIT_MIN_PART:
        return None
    rv = np.stack([replies[i] for i in idx])  # type: ignore[misc]
    center = unit(rv.sum(axis=0))
    odd = int(np.argmin(rv @ center))
    if float(rv[odd] @ center) >= SPLIT_HINT:
        return None
    far = int(np.argmin(rv @ rv[odd]))
    centers = np.stack([rv[far], rv[odd]])
    labels = np.zeros(len(idx), dtype=int)
    for _ in range(SPLIT_ROUNDS):
        new = np.argmax(rv @ centers.T, axis=1)
        if np.bincount(new, minlength=2).min() == 0:
            return None
        centers = np.stack([unit(rv[new == k].sum(axis=0)) for k in (0, 1)])
        if np.array_equal(new, labels):
            break
        labels = new
    counts = np.bincount(labels, minlength=2)
    if counts.min() < SPLIT_MIN_PART or float(centers[0] @ centers[1]) >= SPLIT_REPLY:
        return None
    if counts[1] > counts[0]:
        labels = 1 - labels
    out = np.full(len(replies), -1, dtype=int)
    out[idx] = labels
    rest = [i for i, r in enumerate(replies) if r is None]
    if rest:
        with_reply = questions[idx]
        qc = np.stack([unit(with_reply[labels == k].sum(axis=0)) for k in (0, 1)])
        out[rest] = np.argmax(questions[rest] @ qc.T, axis=1)
    return out


def split_parts(questions: np.ndarray, replies: list[np.ndarray | None], *,
                max_parts: int = 4) -> np.ndarray | None:
    """Split repeatedly (each part again) while the agents' replies disagree, into at most
    `max_parts` parts. Labels 0..k-1 with 0 the largest part (on a tie, the one with the
    earliest item), or None when nothing splits."""
    labels = np.zeros(len(questions), dtype=int)
    queue, parts = [0], 1
    while queue and parts < max_parts:
        k = queue.pop()
        idx = np.nonzero(labels == k)[0]
        sub = split_by_replies(questions[idx], [replies[i] for i in idx])
        if sub is None:
            continue
        labels[idx[sub == 1]] = parts
        queue += [k, parts]
        parts += 1
    if parts == 1:
        return None
    # The largest part first; between equals, the one holding the earliest item (the gap's
    # original topic when items are in arrival order).
    counts = np.bincount(labels)
    order = sorted(range(parts), key=lambda k: (-counts[k], int(np.argmax(labels == k))))
    remap = np.empty(parts, dtype=int)
    remap[order] = np.arange(parts)
    return remap[labels]
