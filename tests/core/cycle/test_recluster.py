"""Re-clustering: gaps of one topic merge, a gap whose agents' replies disagree splits."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from core.embeddings import Embedder
from core.models import utcnow
from core.pipeline.recluster import Centroids, merge_groups, split_by_replies, split_parts
from core.services import Services
from tests.gap_world import GapWorld
from tests.helpers import CHARGER_QUESTIONS, CHARGER_REPLIES, drafted_from

CANADA = ["Do you ship to Canada?", "can i order from toronto", "Is delivery to Canada possible?"]
CANADA_REPLY = "Yes, we ship to Canada: 5-8 business days, duties included at checkout."
# Customers ask about "the charger" either way; the agents' answers show two topics.
CHARGER_STOCK = ["When will the 30W charger be back in stock?",
                 "is the usb-c charger out of stock",
                 "charger sold out, when do you restock?",
                 "Can I preorder the 30W charger?"]
STOCK_REPLY = ("It sold out last week; new stock arrives on the 14th and you can preorder now "
               "from the product page.")


def _centroid(vectors: np.ndarray) -> np.ndarray:
    c = vectors.mean(axis=0)
    return c / np.linalg.norm(c)


def test_two_gaps_of_one_topic_merge_and_another_topic_stays_apart(embedder: Embedder) -> None:
    q = embedder.embed(CHARGER_QUESTIONS)
    r = embedder.embed(CHARGER_REPLIES[:1])[0]
    canada = embedder.embed(CANADA)
    gaps = [Centroids(_centroid(q[:3]), r, 3), Centroids(_centroid(canada), embedder.embed(
        [CANADA_REPLY])[0], 3), Centroids(_centroid(q[3:]), r, 3)]
    assert merge_groups(gaps) == [[0, 2]]
    # Same questions, but the agents answer something else: not one topic.
    gaps[2] = Centroids(_centroid(q[3:]), embedder.embed([STOCK_REPLY])[0], 3)
    assert merge_groups(gaps) == []


def test_disagreeing_replies_split_and_reply_less_questions_follow_their_topic(
        embedder: Embedder) -> None:
    questions = CHARGER_QUESTIONS[:4] + CHARGER_STOCK + [CHARGER_QUESTIONS[4],
                                                         CHARGER_STOCK[0]]
    replies = [CHARGER_REPLIES[i % 3] for i in range(4)] + [STOCK_REPLY] * 4 + [None, None]
    vecs = embedder.embed([r for r in replies if r])
    it = iter(vecs)
    reply_vecs = [next(it) if r else None for r in replies]
    labels = split_by_replies(embedder.embed(questions), reply_vecs)
    assert labels is not None
    assert len(set(labels[:4])) == 1 and len(set(labels[4:8])) == 1
    assert labels[0] != labels[4]
    assert labels[8] == labels[0] and labels[9] == labels[4]
    # Paraphrased answers of one topic never split.
    same = embedder.embed([CHARGER_REPLIES[i % 3] for i in range(8)])
    assert split_parts(embedder.embed(CHARGER_QUESTIONS + CHARGER_QUESTIONS[:2]), list(same)) \
        is None


def test_a_cycle_merges_a_look_alike_gap_into_the_one_reviewers_see(services: Services) -> None:
    world = GapWorld(services)
    now = utcnow()
    world.escalate("a", [CHARGER_QUESTIONS[0], CHARGER_QUESTIONS[3]], CHARGER_REPLIES[:1],
                   now - timedelta(days=2))
    world.cycle(now - timedelta(days=1))
    [first] = world.open_suggestions()
    # A strict setting makes the next charger question seed a gap of its own...
    world.settings(gap_similarity=0.97)
    world.escalate("b", [CHARGER_QUESTIONS[4]], CHARGER_REPLIES[:1], now - timedelta(hours=2))
    result = world.cycle(now)
    # ...which re-clustering folds back: one gap, one suggestion, counting all three.
    assert result.gaps_merged == 1
    [sug] = world.open_suggestions()
    assert sug.id == first.id
    assert sug.evidence["occurrences_total"] == 3
    assert world.questions_of(sug.gap_id) == {CHARGER_QUESTIONS[i] for i in (0, 3, 4)}
    assert len(world.gaps("open")) == 1 and len(world.gaps("merged")) == 1


def test_a_cycle_splits_a_gap_whose_agents_answer_two_different_things(
        services: Services) -> None:
    world = GapWorld(services)
    now = utcnow()
    world.escalate("a", CHARGER_QUESTIONS[:4], CHARGER_REPLIES, now - timedelta(days=3))
    world.cycle(now - timedelta(days=2))
    [first] = world.open_suggestions()
    # A loose setting lets the stock questions join the compatibility gap...
    world.settings(gap_similarity=0.2)
    world.escalate("b", CHARGER_STOCK, [STOCK_REPLY], now - timedelta(hours=5))
    result = world.cycle(now)
    # ...but the agents' replies disagree, so the gap is split: each topic its own
    # suggestion with its own answer, and the original suggestion stays single.
    assert result.gaps_split == 1
    sugs = {s.gap_id: s for s in world.open_suggestions()}
    assert len(sugs) == 2 and first.gap_id in sugs
    assert world.questions_of(first.gap_id) == set(CHARGER_QUESTIONS[:4])
    [other] = [g for g in sugs if g != first.gap_id]
    assert world.questions_of(other) == set(CHARGER_STOCK)
    assert sugs[first.gap_id].id == first.id
    assert drafted_from(sugs[first.gap_id].answer, CHARGER_REPLIES)
    assert sugs[other].answer == STOCK_REPLY
