"""Only what deserves a decision reaches the queue: one-off questions are counted and listed,
questions the agents decline with a stock refusal are set aside, new topics under the critical
rate are low priority (issue 13, item 2)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.helpers import escalated_conversation

TOPICS = {
    "returns": (["How do I return an item?", "Can I send back a product I bought?",
                 "What's the process for returning my order?"],
                "You can return any item within 30 days from your account page under Orders, "
                "then Return."),
    "canada": (["Do you ship to Canada?", "Can I get my order delivered in Canada?",
                "Is shipping to Toronto possible?"],
               "Yes, we ship to Canada; delivery takes 5 to 8 business days."),
    "gift": (["Do you sell gift cards?", "Can I buy a gift voucher?",
              "Where can I purchase a gift card?"],
             "Gift cards from $10 to $500 are sold on our Gift Cards page."),
    "password": (["I forgot my password, what do I do?", "How do I reset my password?",
                  "I can't log in and need a new password"],
                 "Use 'Forgot password' on the sign-in page; the reset link arrives by email "
                 "within minutes."),
}
REFUSAL = "Sorry, I can only help with questions about your orders and our store."
OFF_TOPIC = ["Who won the football world cup in 2010?",
             "What's a good recipe for banana bread?",
             "Can you recommend a movie for tonight?",
             "How tall is the Eiffel tower in meters?"]
ENGRAVING = "Yes, engraving is free on every watch over $100; add it at checkout."


def _traffic(api: Any) -> list[dict[str, Any]]:
    convs, n = [], 0
    for questions, reply in TOPICS.values():
        for q in questions:
            convs.append(escalated_conversation(f"t{n}", q, reply, api.BASE + timedelta(hours=n)))
            n += 1
    for q in OFF_TOPIC:
        # Each customer's stock refusal greets them by name: the same reply all the same.
        convs.append(escalated_conversation(f"t{n}", q, REFUSAL.upper() if n % 2 else REFUSAL,
                                            api.BASE + timedelta(hours=n)))
        n += 1
    convs.append(escalated_conversation("once", "Do you offer engraving on watches?",
                                        ENGRAVING, api.BASE + timedelta(hours=n)))
    return convs


def _questions(api: Any, slug: str, kind: str) -> dict[str, Any]:
    # The data is from November: a window up to now that reaches back to it.
    r = api.client.get(f"/api/v1/bots/{slug}/questions", params={"kind": kind, "days": 365},
                       headers=api.admin)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_declined_and_one_off_questions_never_reach_a_reviewer(api, bot):
    api.ingest(bot.slug, _traffic(api))
    cycle = api.run_cycle(bot.slug, as_of=api.BASE + timedelta(days=1))
    pending = api.suggestions(bot.slug, "pending")
    asked = {q for s in pending for q in [s["question"], *s["variants"]]}
    assert not asked & set(OFF_TOPIC)
    assert "Do you offer engraving on watches?" not in asked
    # The four real topics are proposed, each at low priority (3 a week < 5: not urgent yet).
    assert len(pending) == 4
    assert {s["priority"] for s in pending} == {"low"}
    assert cycle["declined_questions"] == 4
    assert cycle["one_off_questions"] == 1

    declined = _questions(api, bot.slug, "declined")
    assert declined["total"] == 4
    assert {q["question"] for q in declined["items"]} == set(OFF_TOPIC)
    assert all(q["agent_reply"].lower() == REFUSAL.lower() for q in declined["items"])
    one_off = _questions(api, bot.slug, "one_off")
    assert [(q["question"], q["conversation_id"]) for q in one_off["items"]] == \
        [("Do you offer engraving on watches?", "once")]


def test_a_one_off_question_asked_again_becomes_a_suggestion(api, bot):
    api.ingest(bot.slug, _traffic(api))
    api.run_cycle(bot.slug, as_of=api.BASE + timedelta(days=1))
    later = api.BASE + timedelta(days=8)
    api.ingest(bot.slug, [escalated_conversation("again", "Can you engrave my new watch?",
                                                 ENGRAVING, later)])
    cycle = api.run_cycle(bot.slug, as_of=later + timedelta(hours=1))
    assert cycle["one_off_repeated"] == 1
    [sug] = [s for s in api.suggestions(bot.slug, "pending") if "engrav" in s["question"]]
    assert sug["evidence"]["occurrences_total"] == 2
    assert _questions(api, bot.slug, "one_off")["total"] == 0


def test_a_later_stock_refusal_leaves_the_gap_it_joined(api, bot):
    """Once the refusal is known, more declined questions go straight to the declined group,
    however they were clustered, and nothing is proposed from them."""
    api.ingest(bot.slug, _traffic(api))
    api.run_cycle(bot.slug, as_of=api.BASE + timedelta(days=1))
    later = api.BASE + timedelta(days=2)
    extra = ["What is the capital of Australia?", "Tell me a joke about cats please",
             "What is the capital city of Australia?"]
    api.ingest(bot.slug, [escalated_conversation(f"x{i}", q, REFUSAL, later + timedelta(hours=i))
                          for i, q in enumerate(extra)])
    cycle = api.run_cycle(bot.slug, as_of=later + timedelta(days=1))
    assert cycle["declined_questions"] == 3
    asked = {q for s in api.suggestions(bot.slug, "pending") for q in [s["question"],
                                                                       *s["variants"]]}
    assert not asked & set(extra)
    assert _questions(api, bot.slug, "declined")["total"] == 7


def test_question_lists_refuse_an_unknown_kind(api, bot):
    r = api.client.get(f"/api/v1/bots/{bot.slug}/questions", params={"kind": "spam"},
                       headers=api.admin)
    assert r.status_code == 422
    assert "kind" in r.text
