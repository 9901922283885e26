"""Checks on a draft before it is proposed: evidence replay, duplicates, contradictions."""

from __future__ import annotations

import numpy as np

from core.embeddings import Embedder
from core.index import Hit
from core.pipeline.checks import (
    KnownAnswer,
    contradicted_by,
    duplicate_of,
    evidence_replay,
)

SHIPPING = "Standard shipping takes 3-5 business days; express takes 1-2."
RETURNS = "You can return most items within 30 days of delivery for a full refund."


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_replay_counts_the_questions_the_proposal_would_win() -> None:
    # Two customer questions; today the index's best neighbour is another entry at 0.70
    # (a coin flip against escalating, so nothing is answered).
    q = np.stack([_unit([1, 0, 0]), _unit([1, 0.2, 0])])
    hits = [[Hit("p1", "other", 0.70)], [Hit("p1", "other", 0.70)]]
    # The proposal adds one phrasing equal to the first question.
    figures = evidence_replay(question_vectors=q, hits=hits, phrasing_vectors=q[:1],
                              target=None, threshold=70)
    assert (figures.questions, figures.answered_now) == (2, 0)
    assert figures.answered_with == 2  # cos 1.0 and 0.98 beat the 0.70 neighbour
    assert "2 of 2" in figures.sentence() and "now 0" in figures.sentence()
    # A proposal whose phrasing is far from the questions wins none of them.
    far = np.stack([_unit([0, 0, 1])])
    assert evidence_replay(question_vectors=q, hits=hits, phrasing_vectors=far,
                           target=None, threshold=70).answered_with == 0


def test_replay_of_variants_counts_what_the_entry_answers_now(embedder: Embedder) -> None:
    q = embedder.embed(["how long is shipping", "when does my parcel arrive"])
    # the entry already wins the first question, not the second
    hits = [[Hit("e1:a", "e1", 0.95)], [Hit("e1:a", "e1", 0.55), Hit("e2:a", "e2", 0.6)]]
    figures = evidence_replay(question_vectors=q, hits=hits, phrasing_vectors=q[1:],
                              target="e1", threshold=70)
    assert (figures.answered_now, figures.answered_with) == (1, 2)


def _known(embedder: Embedder, entry_id: str, questions: list[str], answer: str) -> KnownAnswer:
    return KnownAnswer(entry_id, questions[0], embedder.embed([answer])[0],
                       embedder.embed(questions))


def test_a_draft_that_restates_an_entry_is_a_duplicate(embedder: Embedder) -> None:
    known = [_known(embedder, "ship", ["How long does shipping take?"], SHIPPING),
             _known(embedder, "ret", ["What is your return policy?"], RETURNS)]
    same = embedder.embed(["Standard shipping takes 3-5 business days, express takes 1-2."])[0]
    assert duplicate_of(same, known) is known[0]
    other = embedder.embed(["We ship to Canada in 5-8 business days for $14.99."])[0]
    assert duplicate_of(other, known) is None


def test_an_entry_asked_alike_but_answered_otherwise_may_contradict(embedder: Embedder
                                                                   ) -> None:
    known = [_known(embedder, "ship", ["How long does shipping take?",
                                       "how many days for delivery"], SHIPPING),
             _known(embedder, "ret", ["What is your return policy?"], RETURNS)]
    asked = embedder.embed(["how long does shipping take", "How long is delivery?"])
    draft = embedder.embed(["Orders are delivered the same day by courier in every city."])[0]
    assert [k.entry_id for k in contradicted_by(draft, asked, known)] == ["ship"]
    # the entry the proposal itself changes is not its own contradiction
    assert contradicted_by(draft, asked, known, skip="ship") == []
    # agreeing with the entry is no contradiction
    agree = embedder.embed([SHIPPING])[0]
    assert contradicted_by(agree, asked, known) == []
