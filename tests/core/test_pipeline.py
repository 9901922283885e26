"""Gap clustering, kind, priority thresholds and proposals on hand-made evidence."""

from __future__ import annotations

import pytest

from core.embeddings import Embedder
from core.pipeline.gaps import GapState, assign, diverse
from core.pipeline.priorities import GapFacts, prioritise
from core.pipeline.proposals import (
    NO_EVIDENCE_ANSWER,
    Candidate,
    EntryView,
    Evidence,
    classify,
    propose,
)
from tests.helpers import CHARGER_QUESTIONS, CHARGER_REPLIES

CANADA = ["Do you ship to Canada?", "can i order from toronto", "Is delivery to Canada possible?"]
CANADA_REPLY = "Yes, we ship to Canada: 5-8 business days, duties included at checkout."


def test_questions_group_by_topic_and_agents_replies_keep_topics_apart(embedder: Embedder
                                                                        ) -> None:
    questions = CHARGER_QUESTIONS + CANADA
    replies = [CHARGER_REPLIES[i % 3] for i in range(len(CHARGER_QUESTIONS))] + \
        [CANADA_REPLY] * len(CANADA)
    q, r = embedder.embed(questions), embedder.embed(replies)
    gaps = assign(q, [], threshold=0.65, replies=list(r))
    groups = sorted(sorted(g.members) for g in gaps)
    assert groups == [list(range(6)), [6, 7, 8]]


def test_new_questions_join_an_existing_gap_instead_of_a_new_one(embedder: Embedder) -> None:
    q = embedder.embed(CHARGER_QUESTIONS[:3])
    r = embedder.embed(CHARGER_REPLIES[:3])
    first = assign(q, [], threshold=0.65, replies=list(r))
    assert len(first) == 1
    existing = GapState(id="g1", centroid=first[0].centroid, size=3,
                        reply_centroid=first[0].reply_centroid, replies=3)
    q2 = embedder.embed(CHARGER_QUESTIONS[3:])
    second = assign(q2, [existing], threshold=0.65,
                    replies=list(embedder.embed(CHARGER_REPLIES[:3])))
    assert [g.id for g in second] == ["g1"] and second[0].size == 6


@pytest.mark.parametrize(("count", "level"), [(4, "medium"), (5, "critical"), (6, "critical")])
def test_critical_starts_at_five_a_week_for_new_questions(count: int, level: str) -> None:
    facts = GapFacts(kind="new_answer", occurrences_7d=count, occurrences_total=count,
                     unanswered=count, negative_feedback=0, abandoned=0)
    assert prioritise(facts).level == level


def test_priority_levels_by_kind_and_reason_in_words() -> None:
    improve = prioritise(GapFacts("improve_answer", 9, 12, 2, 7, 1, previous_7d=3))
    assert improve.level == "medium"
    assert improve.reason == ("9 customers in 7 days, 12 in all, 2 handed to an agent or "
                              "unanswered, 7 negative feedback, 1 abandoned, rising")
    assert prioritise(GapFacts("add_variants", 20, 20, 20, 0, 0)).level == "low"
    assert prioritise(GapFacts("new_answer", 3, 3, 3, 0, 0), critical_weekly=3).level == \
        "critical"


def _evidence(embedder: Embedder, questions: list[str], replies: list[str | None]
              ) -> list[Evidence]:
    q = embedder.embed(questions)
    out = []
    for i, text in enumerate(questions):
        reply = replies[i]
        out.append(Evidence(text, q[i], reply,
                            embedder.embed([reply])[0] if reply else None))
    return out


def test_new_answer_proposes_the_most_representative_agent_reply(embedder: Embedder) -> None:
    ev = _evidence(embedder, CHARGER_QUESTIONS, [CHARGER_REPLIES[i % 3] for i in range(6)])
    p = propose("new_answer", ev, None)
    assert p.answer in CHARGER_REPLIES
    assert p.question in CHARGER_QUESTIONS and p.question not in p.variants
    assert 3 <= len(p.variants) <= 8 and p.confidence >= 60 and p.warning is None


def test_no_agent_reply_means_no_invented_answer(embedder: Embedder) -> None:
    ev = _evidence(embedder, CANADA, [None, None, None])
    p = propose("new_answer", ev, None)
    assert p.answer == NO_EVIDENCE_ANSWER and p.confidence < 60 and p.warning


def test_known_question_the_bot_missed_is_add_variants(embedder: Embedder) -> None:
    answer = "Standard shipping takes 3-5 business days; express takes 1-2."
    phr = embedder.embed(["How long does shipping take?", "When will my order arrive?"])
    entry = EntryView("e1", "How long does shipping take?", answer,
                      ["When will my order arrive?"], phr, embedder.embed([answer])[0])
    ev = _evidence(embedder, ["how many days for delivery", "my parcel, how long till it comes"],
                   [answer, "Shipping takes 3-5 business days (express 1-2)."])
    assert classify(ev, [Candidate(entry, 0.55)], bot_answered_with=None) == \
        ("add_variants", entry)
    p = propose("add_variants", ev, entry)
    assert p.entry_id == "e1" and p.answer == answer
    assert set(p.variants) == {"how many days for delivery", "my parcel, how long till it comes"}
    # the bot answered with this entry, customers were unhappy and the agents said something
    # else: the answer needs work
    other = _evidence(embedder, ["do you deliver on sundays"],
                      ["No, our carriers do not deliver on Sundays or public holidays."])
    assert classify(other, [Candidate(entry, 0.7)], bot_answered_with="e1") == \
        ("improve_answer", entry)
    # and without such an entry nearby it is a new topic
    assert classify(other, [Candidate(entry, 0.3)], bot_answered_with=None) == \
        ("new_answer", None)


def test_diverse_drops_near_duplicates(embedder: Embedder) -> None:
    texts = ["Do you ship to Canada?", "do you ship to canada", "Do you ship to Canada??",
             "Can I order from Toronto?"]
    kept = diverse(texts, embedder.embed(texts), limit=8)
    assert len(kept) == 2 and "Can I order from Toronto?" in kept
