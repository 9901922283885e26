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
from core.pipeline.wording import clean_question
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


@pytest.mark.parametrize(("count", "level"), [(4, "low"), (5, "critical"), (6, "critical")])
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
    # The question is a customer's wording, tidied: its source is not offered again.
    source = {clean_question(q): q for q in CHARGER_QUESTIONS}
    assert p.question in source and source[p.question] not in p.variants
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
    # else: if the entry fails most customers it answers, its answer needs work...
    other = _evidence(embedder, ["do you deliver on sundays"],
                      ["No, our carriers do not deliver on Sundays or public holidays."])
    assert classify(other, [Candidate(entry, 0.7, satisfaction=0.4)], bot_answered_with="e1") \
        == ("improve_answer", entry)
    # ...if it satisfies most of them, these customers asked something else: a new topic
    assert classify(other, [Candidate(entry, 0.7, satisfaction=0.9)], bot_answered_with="e1") \
        == ("new_answer", None)
    # a thumbs-down with no agent reply only says the answer did not help
    unhappy = _evidence(embedder, ["how long is delivery to my area"], [None])
    assert classify(unhappy, [Candidate(entry, 0.7)], bot_answered_with="e1") == \
        ("improve_answer", entry)
    # and without such an entry nearby it is a new topic
    assert classify(other, [Candidate(entry, 0.3)], bot_answered_with=None) == \
        ("new_answer", None)


def test_agents_who_agree_with_each_other_more_than_with_an_entry_give_another_answer(
        embedder: Embedder) -> None:
    # Two answers sharing most of their sentences: close (cosine ≈ 0.7) but not the same.
    swallowed = ("If an ATM kept your card, freeze it in the Cards tab and order a new one. "
                 "It usually takes 3 to 5 working days.")
    declined = ("If a card payment was declined, check your balance and limits in the app. "
                "It usually takes 3 to 5 working days.")
    phr = embedder.embed(["Why was my card payment declined?"])
    entry = EntryView("e2", "Why was my card payment declined?", declined, [], phr,
                      embedder.embed([declined])[0])
    questions = ["the cash machine ate my card", "ATM did not give my card back",
                 "my card got stuck in the ATM"]
    ev = _evidence(embedder, questions, [swallowed] * 3)
    agree = float(embedder.embed([swallowed])[0] @ entry.answer_vector)
    assert 0.6 <= agree < 0.9  # alike enough to have fooled a fixed 0.6 threshold
    assert classify(ev, [Candidate(entry, 0.6)], bot_answered_with=None) == ("new_answer", None)


def test_triggers_come_only_from_questions_the_answer_answers(embedder: Embedder) -> None:
    questions = [*CANADA, "can I get a student discount"]
    ev = _evidence(embedder, questions, [CANADA_REPLY] * 3 +
                   ["Students get 10% off with a valid student email."])
    p = propose("new_answer", ev, None)
    assert p.answer == CANADA_REPLY
    assert "can I get a student discount" not in p.variants
    assert set(p.variants) | {p.question} == set(CANADA)


def test_variants_reach_the_questions_the_entry_does_not_yet_recognise(embedder: Embedder
                                                                      ) -> None:
    known = ["Do you ship to Canada?"]
    answer = CANADA_REPLY
    entry = EntryView("e3", known[0], answer, [], embedder.embed(known),
                      embedder.embed([answer])[0])
    asked = ["do you ship to canada", "can i order from toronto", "Is delivery to Canada possible?",
             "Do you deliver to Vancouver?"]
    ev = _evidence(embedder, asked, [answer] * len(asked))
    p = propose("add_variants", ev, entry, max_variants=2)
    # a near-copy of the existing phrasing teaches the bot nothing; the picks are questions
    # it does not recognise yet
    assert "do you ship to canada" not in p.variants and len(p.variants) == 2
    assert p.entry_id == "e3" and p.answer == answer


def test_diverse_drops_near_duplicates(embedder: Embedder) -> None:
    texts = ["Do you ship to Canada?", "do you ship to canada", "Do you ship to Canada??",
             "Can I order from Toronto?"]
    kept = diverse(texts, embedder.embed(texts), limit=8)
    assert len(kept) == 2 and "Can I order from Toronto?" in kept
