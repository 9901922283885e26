"""Signal rules on hand-written transcripts (docs/signals.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.pipeline.signals import Message, Transcript, detect

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def _t(*turns: tuple[str, str] | tuple[str, str, str | None],
       feedback: dict[int, str] | None = None, csat: int | None = None) -> Transcript:
    msgs = [Message(role=t[0], text=t[1], at=T0 + timedelta(seconds=30 * i),
                    entry_id=t[2] if len(t) > 2 else None) for i, t in enumerate(turns)]
    return Transcript(id="c1", started_at=T0, messages=msgs, feedback=feedback or {}, csat=csat)


def test_resolved_by_the_bot() -> None:
    signals, out = detect(_t(("customer", "How long does shipping take?"),
                             ("bot", "Standard shipping takes 3-5 days.", "e1"),
                             ("customer", "great, thanks")))
    assert signals == []
    assert out.resolved_automatically and not out.escalated and not out.abandoned
    assert out.resolution_seconds == 60


def test_handover_to_an_agent_is_unanswered_with_the_agents_reply() -> None:
    signals, out = detect(_t(("customer", "Do you ship to Canada at all?"),
                             ("bot", "Sorry, I'm not sure about that. Let me connect you with "
                                     "a teammate."),
                             ("agent", "Hi! Yes, we ship to Canada in 5-8 business days."),
                             ("customer", "thanks")))
    assert [(s.kind, s.question, s.agent_reply) for s in signals] == [
        ("unanswered", "Do you ship to Canada at all?",
         "Hi! Yes, we ship to Canada in 5-8 business days.")]
    assert out.escalated and not out.resolved_automatically


def test_fallback_without_an_agent_is_unanswered() -> None:
    signals, out = detect(_t(("customer", "can I pay with bitcoin please"),
                             ("bot", "Sorry, I didn't understand that.")))
    assert [s.kind for s in signals] == ["unanswered"]
    assert signals[0].agent_reply is None
    assert not out.resolved_automatically and not out.abandoned


def test_thumbs_down_is_negative_feedback_on_that_answer() -> None:
    signals, out = detect(_t(("customer", "Can I return an opened laptop?"),
                             ("bot", "You can return items within 30 days.", "e7"),
                             feedback={1: "down"}))
    assert [(s.kind, s.bot_entry_id) for s in signals] == [("negative_feedback", "e7")]
    assert out.negative_feedback and not out.abandoned and not out.resolved_automatically


def test_complaint_then_human_request_keeps_the_real_question() -> None:
    signals, _ = detect(_t(("customer", "When will my refund arrive on my card?"),
                           ("bot", "You can return items within 30 days.", "e7"),
                           ("customer", "that doesn't answer my question"),
                           ("customer", "human please"),
                           ("agent", "Refunds reach your card 3-5 business days after we "
                                     "receive the return.")))
    assert {s.question for s in signals} == {"When will my refund arrive on my card?"}
    assert {s.kind for s in signals} == {"negative_feedback"}
    assert signals[0].agent_reply is not None and "3-5 business days" in signals[0].agent_reply


def test_low_csat_alone_is_negative_feedback() -> None:
    signals, out = detect(_t(("customer", "How do I reset my password?"),
                             ("bot", "Use the forgot password link.", "e2"), csat=2))
    assert [s.kind for s in signals] == ["negative_feedback"] and out.negative_feedback


def test_leaving_after_an_answer_is_abandoned_unless_feedback_was_positive() -> None:
    turns = (("customer", "Do you have gift cards for sale?"),
             ("bot", "Our payment options are cards and PayPal.", "e3"))
    signals, out = detect(_t(*turns))
    assert out.abandoned and [s.kind for s in signals] == ["abandoned"]
    _, out_up = detect(_t(*turns, feedback={1: "up"}))
    _, out_csat = detect(_t(*turns, csat=5))
    assert not out_up.abandoned and out_up.resolved_automatically
    assert not out_csat.abandoned


# -- rephrasing: the customer asks the same question again right after a bot answer ----------

REFUND_Q = "When will my refund arrive on my card?"
RETURNS_A = "You can return items within 30 days."


def test_rephrasing_after_an_answer_is_negative_feedback_on_the_original_question() -> None:
    signals, out = detect(_t(("customer", REFUND_Q),
                             ("bot", RETURNS_A, "e7"),
                             ("customer", "I mean when do I get the refund money back to my "
                                          "card?"),
                             ("bot", "Refunds reach your card 3-5 business days after we "
                                     "receive the return.", "e9")))
    # The original wording is the one the bot failed to match.
    assert [(s.kind, s.question, s.bot_entry_id) for s in signals] == [
        ("negative_feedback", REFUND_Q, "e7")]
    assert out.negative_feedback and not out.resolved_automatically and not out.abandoned


def test_asking_the_same_thing_again_word_for_word_is_a_rephrase() -> None:
    signals, out = detect(_t(("customer", "Where is my order?"),
                             ("bot", "Orders ship within 24 hours.", "e4"),
                             ("customer", "where is my order??")))
    assert [s.kind for s in signals] == ["negative_feedback"] and out.negative_feedback


def test_a_thank_you_that_repeats_the_topic_is_not_a_rephrase() -> None:
    signals, out = detect(_t(("customer", REFUND_Q),
                             ("bot", "Refunds reach your card 3-5 business days after we "
                                     "receive the return.", "e9"),
                             ("customer", "Thanks, so the refund arrives on my card next "
                                          "week")))
    assert signals == []
    assert out.resolved_automatically and not out.negative_feedback


@pytest.mark.parametrize("follow_up", [
    "Do you also sell gift cards for birthdays?",                # unrelated
    "And how long does shipping to Mexico take?",                # builds on the answer
    "ok, what about shipping to Mexico, how long does it take?",
])
def test_a_new_follow_up_question_is_not_a_rephrase(follow_up: str) -> None:
    signals, out = detect(_t(("customer", "How long does shipping to Canada take?"),
                             ("bot", "Shipping to Canada takes 5-8 business days.", "e5"),
                             ("customer", follow_up),
                             ("bot", "Happy to help with anything else!")))
    assert [s.kind for s in signals if s.kind == "negative_feedback"] == []
    assert not out.negative_feedback


def test_an_explicit_thumbs_up_wins_over_an_inferred_rephrase() -> None:
    _, out = detect(_t(("customer", "Where is my order?"),
                       ("bot", "Track it under Account > Orders.", "e4"),
                       ("customer", "where is my order exactly?"),
                       feedback={1: "up"}))
    assert not out.negative_feedback and out.resolved_automatically


def test_a_message_answering_an_agent_is_not_a_rephrase_of_the_bot_question() -> None:
    signals, out = detect(_t(("customer", REFUND_Q),
                             ("bot", RETURNS_A, "e7"),
                             ("agent", "Hi! Which card did you pay with?"),
                             ("customer", "The refund should come back to my Visa card")))
    assert not out.negative_feedback
    assert [s.kind for s in signals] == ["unanswered"]


def test_rephrase_is_inferred_for_chatbots_that_send_no_entry_id() -> None:
    signals, out = detect(_t(("customer", REFUND_Q),
                             ("bot", RETURNS_A),
                             ("customer", "I asked when the refund arrives on my card")))
    assert [(s.kind, s.question, s.bot_entry_id) for s in signals] == [
        ("negative_feedback", REFUND_Q, None)]
    assert out.bot_answered and out.negative_feedback


# -- what counts as a bot answer ------------------------------------------------------------

def test_a_greeting_is_not_an_answer_so_leaving_after_it_is_not_abandonment() -> None:
    signals, out = detect(_t(("customer", "hi"),
                             ("bot", "Hi! I'm Volt. What can I help you with today?")))
    assert signals == []
    assert not out.bot_answered and not out.abandoned and not out.resolved_automatically


def test_leaving_after_the_answer_and_a_closing_line_is_abandoned() -> None:
    signals, out = detect(_t(("customer", "Do you have gift cards for sale?"),
                             ("bot", "Our payment options are cards and PayPal.", "e3"),
                             ("bot", "Anything else I can help with?")))
    assert out.abandoned and not out.resolved_automatically
    assert [(s.kind, s.bot_entry_id) for s in signals] == [("abandoned", "e3")]


def test_asking_for_a_human_after_an_answer_is_negative_feedback() -> None:
    signals, out = detect(_t(("customer", "Can I change the delivery address of my order?"),
                             ("bot", "Orders ship within 24 hours.", "e4"),
                             ("customer", "let me talk to a real person")))
    assert [(s.kind, s.bot_entry_id) for s in signals] == [("negative_feedback", "e4")]
    assert out.negative_feedback and not out.abandoned


def test_csat_three_is_neither_negative_nor_positive() -> None:
    turns = (("customer", "How do I reset my password?"),
             ("bot", "Use the forgot password link.", "e2"))
    _, out = detect(_t(*turns, csat=3))
    assert not out.negative_feedback and out.abandoned  # no positive feedback to keep it
