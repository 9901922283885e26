"""Support metrics per day / week / month, on hand-made conversations with known outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

SHIP_Q = "How long does shipping take?"
SHIP_A = "Standard shipping takes 3-5 business days and express takes 1-2 business days."
CANCEL_Q = "Can I cancel my order after placing it?"
CANCEL_A = "You can cancel an order under Account > Orders within 1 hour of placing it."
MON = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday
TUE = MON + timedelta(days=1)


def msg(role: str, text: str, at: datetime, entry_id: str | None = None) -> dict[str, Any]:
    return {"role": role, "text": text, "at": at.isoformat(), "entry_id": entry_id}


def s(at: datetime, seconds: float) -> datetime:
    return at + timedelta(seconds=seconds)


def conversations(fallback: str) -> list[dict[str, Any]]:
    m1, m2, m3, m4 = (MON + timedelta(hours=h) for h in range(4))
    # 01:30 on Tuesday in UTC+5 is 20:30 on Monday in UTC.
    m5_local = datetime(2026, 11, 3, 1, 30, tzinfo=timezone(timedelta(hours=5)))
    t1, t2 = TUE, TUE + timedelta(hours=2)
    return [
        # Monday ---------------------------------------------------------------------------
        {   # resolved by the bot: answered, the customer thanks it (40 s), CSAT 5
            "id": "resolved", "started_at": m1.isoformat(), "csat": 5, "channel": "web",
            "messages": [msg("customer", SHIP_Q, m1), msg("bot", SHIP_A, s(m1, 2), "e-ship"),
                         msg("customer", "great, thanks!", s(m1, 40))]},
        {   # escalated: bot falls back, an agent answers (240 s), CSAT 4
            "id": "escalated", "started_at": m2.isoformat(), "csat": 4,
            "messages": [msg("customer", "Do you ship to Canada at all?", m2),
                         msg("bot", fallback, s(m2, 2)),
                         msg("agent", "Yes, we ship to Canada in 5-8 business days.",
                             s(m2, 180)),
                         msg("customer", "thank you!", s(m2, 240))]},
        {   # thumbs-down on the bot's answer, CSAT 1 (not abandoned: the customer reacted)
            "id": "thumbs-down", "started_at": m3.isoformat(), "csat": 1,
            "messages": [msg("customer", CANCEL_Q, m3),
                         msg("bot", CANCEL_A, s(m3, 2), "e-cancel")],
            "feedback": [{"message_index": 1, "rating": "down"}]},
        {   # abandoned: the bot answered and the customer never replied, no feedback
            "id": "abandoned", "started_at": m4.isoformat(),
            "messages": [msg("customer", SHIP_Q, m4), msg("bot", SHIP_A, s(m4, 2), "e-ship")]},
        {   # abandoned too, sent with a +05:00 offset: it belongs to Monday in UTC
            "id": "abandoned-offset", "started_at": m5_local.isoformat(),
            "messages": [msg("customer", SHIP_Q, m5_local),
                         msg("bot", SHIP_A, s(m5_local, 3), "e-ship")]},
        # Tuesday --------------------------------------------------------------------------
        {   # resolved: the bot answered and got a thumbs-up; no reply needed (2 s)
            "id": "thumbs-up", "started_at": t1.isoformat(),
            "messages": [msg("customer", CANCEL_Q, t1),
                         msg("bot", CANCEL_A, s(t1, 2), "e-cancel")],
            "feedback": [{"message_index": 1, "rating": "up"}]},
        {   # the customer asks for a human after the answer: negative AND escalated (300 s),
            # CSAT 2
            "id": "wants-human", "started_at": t2.isoformat(), "csat": 2,
            "messages": [msg("customer", SHIP_Q, t2), msg("bot", SHIP_A, s(t2, 2), "e-ship"),
                         msg("customer", "can I talk to a human please", s(t2, 30)),
                         msg("agent", "Hi, Dana here! Express takes 1-2 business days.",
                             s(t2, 300))]},
    ]


@pytest.fixture
def loaded(api, bot):
    assert api.ingest(bot.slug, conversations(api.FALLBACK)) == {"accepted": 7, "updated": 0}
    return bot


def by_start(buckets: list[dict[str, Any]]) -> dict[datetime, dict[str, Any]]:
    return {datetime.fromisoformat(b["start"]): b for b in buckets}


def test_day_buckets(api, loaded):
    r = api.client.get(f"/api/v1/bots/{loaded.slug}/metrics", params={"bucket": "day"},
                       headers=loaded.headers)
    assert r.status_code == 200
    days = by_start(r.json()["buckets"])
    assert set(days) == {datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)}
    mon = days[datetime(2026, 11, 2, tzinfo=UTC)]
    tue = days[datetime(2026, 11, 3, tzinfo=UTC)]

    assert mon["conversations"] == 5
    assert mon["automatic_resolution_rate"] == pytest.approx(1 / 5, abs=1e-3)
    assert mon["escalation_rate"] == pytest.approx(1 / 5, abs=1e-3)
    assert mon["negative_feedback_rate"] == pytest.approx(1 / 5, abs=1e-3)
    assert mon["abandonment_rate"] == pytest.approx(2 / 5, abs=1e-3)
    assert mon["csat"] == pytest.approx((5 + 4 + 1) / 3, abs=0.01)
    assert mon["avg_resolution_seconds"] == pytest.approx((40 + 240) / 2, abs=0.1)

    assert tue["conversations"] == 2
    assert tue["automatic_resolution_rate"] == pytest.approx(0.5)
    assert tue["escalation_rate"] == pytest.approx(0.5)
    assert tue["negative_feedback_rate"] == pytest.approx(0.5)
    assert tue["abandonment_rate"] == 0.0
    assert tue["csat"] == pytest.approx(2.0)
    assert tue["avg_resolution_seconds"] == pytest.approx((2 + 300) / 2, abs=0.1)

    for bucket in (mon, tue):
        assert set(bucket) == {"start", "conversations", "automatic_resolution_rate",
                               "escalation_rate", "negative_feedback_rate",
                               "abandonment_rate", "csat", "avg_resolution_seconds"}


def test_week_and_month_buckets(api, loaded):
    weeks = by_start(api.metrics(loaded.slug, "week"))
    assert list(weeks) == [datetime(2026, 11, 2, tzinfo=UTC)]  # Monday starts the week
    [week] = weeks.values()
    assert week["conversations"] == 7
    assert week["automatic_resolution_rate"] == pytest.approx(2 / 7, abs=1e-3)
    assert week["escalation_rate"] == pytest.approx(2 / 7, abs=1e-3)
    assert week["negative_feedback_rate"] == pytest.approx(2 / 7, abs=1e-3)
    assert week["abandonment_rate"] == pytest.approx(2 / 7, abs=1e-3)
    assert week["csat"] == pytest.approx((5 + 4 + 1 + 2) / 4, abs=0.01)

    months = by_start(api.metrics(loaded.slug, "month"))
    assert list(months) == [datetime(2026, 11, 1, tzinfo=UTC)]
    assert months[datetime(2026, 11, 1, tzinfo=UTC)]["conversations"] == 7


def test_no_csat_and_no_resolution_give_null(api, bot):
    convs = [c for c in conversations(api.FALLBACK) if c["id"] in ("abandoned", "thumbs-up")]
    api.ingest(bot.slug, convs)
    days = by_start(api.metrics(bot.slug, "day"))
    mon = days[datetime(2026, 11, 2, tzinfo=UTC)]
    assert mon["csat"] is None
    assert mon["avg_resolution_seconds"] is None
    assert mon["abandonment_rate"] == 1.0
    tue = days[datetime(2026, 11, 3, tzinfo=UTC)]
    assert tue["automatic_resolution_rate"] == 1.0


def test_replacing_a_transcript_updates_the_metrics(api, loaded):
    """The abandoned conversation is re-sent with the customer's thanks: now it is resolved."""
    convs = {c["id"]: c for c in conversations(api.FALLBACK)}
    fixed = convs["abandoned"]
    fixed["messages"].append(msg("customer", "perfect, thank you",
                                 MON + timedelta(hours=3, seconds=30)))
    assert api.ingest(loaded.slug, [fixed]) == {"accepted": 0, "updated": 1}
    mon = by_start(api.metrics(loaded.slug, "day"))[datetime(2026, 11, 2, tzinfo=UTC)]
    assert mon["conversations"] == 5
    assert mon["abandonment_rate"] == pytest.approx(1 / 5, abs=1e-3)
    assert mon["automatic_resolution_rate"] == pytest.approx(2 / 5, abs=1e-3)


def test_empty_bot_has_no_buckets_and_bad_bucket_is_422(api, bot):
    assert api.metrics(bot.slug, "day") == []
    r = api.client.get(f"/api/v1/bots/{bot.slug}/metrics", params={"bucket": "hour"},
                       headers=bot.headers)
    assert r.status_code == 422


def test_metrics_mark_thin_data_and_the_activation_of_auto_training(api, bot):
    questions = ["Do you ship to Canada?", "can i order from toronto",
                 "Is delivery to Canada possible?", "shipping to canada?",
                 "Do you deliver to Montreal?"]
    reply = "Yes, we ship to Canada in 5-8 business days, duties included."
    api.ingest(bot.slug, [api.escalated(f"ca{i}", q, reply, MON + timedelta(hours=i))
                          for i, q in enumerate(questions)])
    before = api.client.get(f"/api/v1/bots/{bot.slug}/metrics", headers=bot.headers).json()
    assert before["thin_data"] is True and before["activated_at"] is None

    api.run_cycle(bot.slug, as_of=MON + timedelta(days=1))
    sug = api.suggestions(bot.slug, "pending")[0]
    assert api.decide(sug["id"], "approve", "maria").status_code == 200
    after = api.client.get(f"/api/v1/bots/{bot.slug}/metrics", headers=bot.headers).json()
    approved = api.suggestions(bot.slug, "approved")[0]
    assert after["activated_at"] == approved["decided_at"]


def test_rephrases_greetings_and_closing_lines_count_as_documented(api, bot):
    """Four conversations on one day, each rate computed by hand from docs/metrics.md."""
    wed = MON + timedelta(days=2)
    w1, w2, w3, w4 = (wed + timedelta(hours=h) for h in range(4))
    convs = [
        {   # the customer rephrases after the answer: negative feedback, not resolved
            "id": "rephrased", "started_at": w1.isoformat(),
            "messages": [msg("customer", CANCEL_Q, w1),
                         msg("bot", SHIP_A, s(w1, 2), "e-ship"),
                         msg("customer", "I mean how do I cancel the order I just placed?",
                             s(w1, 30)),
                         msg("bot", CANCEL_A, s(w1, 32), "e-cancel"),
                         msg("customer", "thanks", s(w1, 60))]},
        {   # only a greeting, then nothing: no answer, so neither resolved nor abandoned
            "id": "greeting", "started_at": w2.isoformat(),
            "messages": [msg("customer", "hi", w2),
                         msg("bot", "Hi! What can I help you with today?", s(w2, 1))]},
        {   # answer, a closing line, and the customer left: abandoned
            "id": "closing-line", "started_at": w3.isoformat(),
            "messages": [msg("customer", SHIP_Q, w3), msg("bot", SHIP_A, s(w3, 2), "e-ship"),
                         msg("bot", "Anything else I can help with?", s(w3, 3))]},
        {   # resolved by the bot in 40 s
            "id": "thanked", "started_at": w4.isoformat(),
            "messages": [msg("customer", SHIP_Q, w4), msg("bot", SHIP_A, s(w4, 2), "e-ship"),
                         msg("customer", "great, thanks!", s(w4, 40))]},
    ]
    assert api.ingest(bot.slug, convs) == {"accepted": 4, "updated": 0}
    [day] = api.metrics(bot.slug, "day")
    assert datetime.fromisoformat(day["start"]) == datetime(2026, 11, 4, tzinfo=UTC)
    assert day == {**day, "conversations": 4, "automatic_resolution_rate": 0.25,
                   "escalation_rate": 0.0, "negative_feedback_rate": 0.25,
                   "abandonment_rate": 0.25, "csat": None, "avg_resolution_seconds": 40.0}
