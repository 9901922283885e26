"""Gap assignment: the vectorised scoring groups questions exactly as scoring one by one."""

from __future__ import annotations

import numpy as np

from core.embeddings import Embedder
from core.pipeline.gaps import GapState, assign, medoid, similarity
from tests.helpers import CHARGER_QUESTIONS, CHARGER_REPLIES

CANADA = ["Do you ship to Canada?", "can i order from toronto", "Is delivery to Canada possible?"]
CANADA_REPLY = "Yes, we ship to Canada: 5-8 business days, duties included at checkout."
GIFT = ["Do you offer gift wrapping?", "can you wrap my order as a present",
        "is gift wrap available?"]
GIFT_REPLY = "Yes: tick 'gift wrap' at checkout, it costs $4 and hides the price."


def assign_one_by_one(vectors: np.ndarray, gaps: list[GapState], *, threshold: float,
                      replies: list[np.ndarray | None]) -> list[GapState]:
    """The original double loop over items and gaps, kept as the reference."""
    touched: dict[int, GapState] = {}
    all_gaps = list(gaps)
    for i, v in enumerate(vectors):
        best, best_sim = -1, threshold
        for j, g in enumerate(all_gaps):
            sim = similarity(g, v, replies[i])
            if sim >= best_sim:
                best, best_sim = j, sim
        if best < 0:
            all_gaps.append(GapState(id=None, centroid=np.zeros_like(v), size=0))
            best = len(all_gaps) - 1
        all_gaps[best].add(i, v, replies[i])
        touched[best] = all_gaps[best]
    return list(touched.values())


def _existing(embedder: Embedder, questions: list[str], reply: str | None, gap_id: str,
              frozen: bool = False) -> GapState:
    q = embedder.embed(questions)
    centroid = q.mean(axis=0)
    r = embedder.embed([reply])[0] if reply else None
    return GapState(id=gap_id, centroid=centroid / np.linalg.norm(centroid), size=len(questions),
                    reply_centroid=r, replies=len(questions) if r is not None else 0,
                    frozen=frozen)


def _groups(gaps: list[GapState]) -> list[tuple[str | None, list[int]]]:
    return sorted((g.id or "", sorted(g.members)) for g in gaps)


def test_vectorised_assign_groups_real_questions_like_the_one_by_one_loop(
        embedder: Embedder) -> None:
    questions = CHARGER_QUESTIONS + CANADA + GIFT + ["What are your opening hours on Sunday?"]
    replies_text: list[str | None] = (
        [CHARGER_REPLIES[i % 3] for i in range(len(CHARGER_QUESTIONS))]
        + [None, CANADA_REPLY, CANADA_REPLY] + [GIFT_REPLY, GIFT_REPLY, None] + [None])
    order = [9, 0, 6, 3, 12, 1, 7, 10, 2, 4, 11, 8, 5]  # interleaved topics
    q = embedder.embed([questions[i] for i in order])
    r_vecs = embedder.embed([t for t in replies_text if t])
    it = iter(r_vecs)
    replies = [next(it) if t else None for t in replies_text]
    replies = [replies[i] for i in order]

    def fresh() -> list[GapState]:
        # A known gap (gift wrapping) and a rejected, frozen one (Canada).
        return [_existing(embedder, GIFT[:1], GIFT_REPLY, "gift"),
                _existing(embedder, CANADA[:1], CANADA_REPLY, "canada", frozen=True)]

    got = assign(q, fresh(), threshold=0.65, replies=replies)
    want = assign_one_by_one(q, fresh(), threshold=0.65, replies=replies)
    assert _groups(got) == _groups(want)
    # And the groups are the topics: every charger question in one new gap.
    by_topic = {g.id: {order[m] for m in g.members} for g in got}
    assert by_topic["gift"] == {9, 10, 11}
    assert by_topic["canada"] == {6, 7, 8}
    new = [{order[m] for m in g.members} for g in got if g.id is None]
    assert sorted(new, key=min) == [set(range(6)), {12}]
    frozen = next(g for g in got if g.id == "canada")
    assert frozen.size == 4 and np.allclose(frozen.centroid, fresh()[1].centroid)


def test_vectorised_assign_matches_the_loop_on_many_gaps_and_ties() -> None:
    rng = np.random.default_rng(7)
    topics = rng.normal(size=(40, 32)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    labels = rng.integers(0, 40, size=600)
    q = topics[labels] + 0.35 * rng.normal(size=(600, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[100] = q[99]  # exact duplicates, and two identical gaps below: ties
    replies: list[np.ndarray | None] = [topics[lb] if i % 3 else None
                                        for i, lb in enumerate(labels)]
    existing = [GapState(id=f"g{k}", centroid=topics[k].copy(), size=5,
                         reply_centroid=topics[k].copy(), replies=5, frozen=k % 8 == 0)
                for k in range(0, 40, 4)]
    existing.append(GapState(id="twin", centroid=topics[0].copy(), size=5,
                             reply_centroid=topics[0].copy(), replies=5))

    def fresh() -> list[GapState]:
        return [GapState(id=g.id, centroid=g.centroid.copy(), size=g.size,
                         reply_centroid=g.reply_centroid.copy()
                         if g.reply_centroid is not None else None, replies=g.replies,
                         frozen=g.frozen)
                for g in existing]

    got = assign(q, fresh(), threshold=0.6, replies=replies)
    want = assign_one_by_one(q, fresh(), threshold=0.6, replies=replies)
    assert _groups(got) == _groups(want)
    assert len(got) > 40  # new gaps were seeded as well as existing ones joined


def test_on_a_tie_the_later_gap_wins_as_before() -> None:
    v = np.eye(4, dtype=np.float32)[:1]
    twins = [GapState(id="first", centroid=v[0].copy(), size=2),
             GapState(id="second", centroid=v[0].copy(), size=2)]
    [joined] = assign(v, twins, threshold=0.5)
    assert joined.id == "second" and joined.size == 3


def test_medoid_is_the_most_typical_question(embedder: Embedder) -> None:
    vectors = embedder.embed([*CHARGER_QUESTIONS, "Do you ship to Canada?"])
    sims = vectors @ vectors.T
    assert medoid(vectors) == int(np.argmax(sims.sum(axis=1)))
    assert medoid(vectors) < len(CHARGER_QUESTIONS)


def test_a_frozen_gap_turns_away_a_look_alike_question_that_needed_another_answer(
        embedder: Embedder) -> None:
    stock_q = "is the usb-c charger out of stock"
    stock_reply = "It sold out last week; new stock arrives on the 14th, preorder now."
    rejected = _existing(embedder, CHARGER_QUESTIONS[:3], CHARGER_REPLIES[0], "rejected",
                         frozen=True)
    q = embedder.embed([stock_q, CHARGER_QUESTIONS[3]])
    r = embedder.embed([stock_reply, CHARGER_REPLIES[0]])
    # Loose enough that the stock question would join an open gap on its wording.
    got = assign(q, [rejected], threshold=0.1, replies=list(r))
    assert {g.id: g.members for g in got} == {None: [0], "rejected": [1]}
    unfrozen = _existing(embedder, CHARGER_QUESTIONS[:3], CHARGER_REPLIES[0], "open")
    assert [g.members for g in assign(q, [unfrozen], threshold=0.1, replies=list(r))] == \
        [[0, 1]]
