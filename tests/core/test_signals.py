"""Signal rules on hand-written transcripts (docs/signals.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
