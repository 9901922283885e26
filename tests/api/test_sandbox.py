"""The sandbox: pending suggestions tried against live questions, nothing published."""

from __future__ import annotations

from datetime import timedelta

from tests.api.test_review import (
    CANADA_PARAPHRASE,
    CANADA_QUESTIONS,
    CANADA_REPLIES,
    RETURN_ANSWER,
    RETURN_MISSES,
    RETURN_REPLIES,
    escalations,
    returns_kb,
)
from tests.conftest import make_bot


def _try(api, slug: str, question: str, ids: list[str], headers=None):
    return api.client.post(f"/api/v1/bots/{slug}/sandbox", headers=headers or api.admin,
                           json={"question": question, "suggestion_ids": ids})


def _canada(api, bot) -> dict:
    api.load_faq(bot.slug, ["shipping", "returns", "payment"])
    api.ingest(bot.slug, escalations(api, "canada", CANADA_QUESTIONS, CANADA_REPLIES,
                                     api.BASE))
    api.run_cycle(bot.slug, api.BASE + timedelta(days=1))
    [sug] = api.suggestions(bot.slug, "pending")
    return sug


def test_a_new_answer_is_tried_without_publishing_it(api, bot):
    sug = _canada(api, bot)
    entries = api.entries(bot.slug)
    r = _try(api, bot.slug, CANADA_PARAPHRASE, [sug["id"]], headers=bot.headers)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["escalate"] is False and got["answer"] == sug["answer"]
    assert got["suggestion_id"] == sug["id"] and got["entry_id"] is None
    assert got["confidence"] >= 70
    assert got["live"]["escalate"] is True  # today the bot hands over
    # nothing changed: same KB, the bot still hands over, the suggestion still waits
    assert api.entries(bot.slug) == entries
    assert api.answer(bot.slug, CANADA_PARAPHRASE)["escalate"] is True
    assert [s["id"] for s in api.suggestions(bot.slug, "pending")] == [sug["id"]]


def test_an_unrelated_question_is_not_answered_by_the_tried_suggestion(api, bot):
    sug = _canada(api, bot)
    got = _try(api, bot.slug, "How do I reset my password?", [sug["id"]]).json()
    assert got["suggestion_id"] is None
    assert got["answer"] == got["live"]["answer"]


def test_variants_are_tried_on_their_entry(api, bot):
    entry = returns_kb(api, bot.slug)
    # Recognition only from reviewed phrasings: otherwise the cycle learns these questions
    # from the agents' replies (core.learning) and the bot answers them already.
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", headers=api.admin,
                         json={"learn_from_agents": False})
    assert r.status_code == 200, r.text
    api.ingest(bot.slug, escalations(api, "ret", RETURN_MISSES, RETURN_REPLIES, api.BASE))
    api.run_cycle(bot.slug, api.BASE + timedelta(days=1))
    [sug] = api.suggestions(bot.slug, "pending")
    assert sug["kind"] == "add_variants"
    question = sug["variants"][0]
    assert api.answer(bot.slug, question)["escalate"] is True
    got = _try(api, bot.slug, question, [sug["id"]]).json()
    assert (got["entry_id"], got["suggestion_id"], got["answer"]) == \
        (entry["id"], sug["id"], RETURN_ANSWER)


def test_only_this_bots_open_suggestions_can_be_tried(api, bot, client, admin):
    sug = _canada(api, bot)
    r = _try(api, bot.slug, CANADA_PARAPHRASE, ["nope"])
    assert r.status_code == 404 and "nope" in r.text
    other = make_bot(client, admin, "other")
    r = _try(api, other.slug, CANADA_PARAPHRASE, [sug["id"]], headers=other.headers)
    assert r.status_code == 404 and sug["id"] in r.text
    r = _try(api, bot.slug, CANADA_PARAPHRASE, [f"s{i}" for i in range(21)])
    assert r.status_code == 422 and "suggestion_ids" in r.text
    api.decide(sug["id"], "reject", "bob", reason="not_a_gap")
    r = _try(api, bot.slug, CANADA_PARAPHRASE, [sug["id"]])
    assert r.status_code == 422 and "rejected" in r.text and "suggestion_ids" in r.text
