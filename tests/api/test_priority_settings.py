"""Per-bot priority thresholds: validated on PATCH, and honoured by the cycle."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import make_bot

BAD = [
    ({"critical_weekly_occurrences": 0}, "critical_weekly_occurrences"),
    ({"critical_weekly_occurrences": "5"}, "critical_weekly_occurrences"),
    ({"critical_weekly_occurrences": 100_001}, "critical_weekly_occurrences"),
    ({"medium_satisfaction": 101}, "medium_satisfaction"),
    ({"medium_satisfaction": -1}, "medium_satisfaction"),
    ({"medium_satisfaction": 59.5}, "medium_satisfaction"),
    ({"medium_satisfaction": None}, "medium_satisfaction"),
    ({"max_triggers": 0}, "max_triggers"),
    ({"max_triggers": 51}, "max_triggers"),
]


def test_priority_thresholds_have_defaults_and_can_be_changed(api, bot):
    settings = api.settings(bot.slug)
    assert settings["critical_weekly_occurrences"] == 5
    assert settings["medium_satisfaction"] == 60
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", headers=bot.headers,
                         json={"critical_weekly_occurrences": 3, "medium_satisfaction": 80})
    assert r.status_code == 200, r.text
    assert api.settings(bot.slug) == {**settings, "critical_weekly_occurrences": 3,
                                      "medium_satisfaction": 80}


@pytest.mark.parametrize(("patch", "field"), BAD)
def test_bad_priority_thresholds_are_422_naming_the_field(api, bot, patch, field):
    before = api.settings(bot.slug)
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", json=patch, headers=bot.headers)
    assert r.status_code == 422, r.text
    assert any(field in err["loc"] for err in r.json()["detail"]), r.json()
    assert api.settings(bot.slug) == before


CANADA = ["Do you ship to Canada?", "can i order from toronto", "Is delivery to Canada possible?"]
CANADA_REPLY = "Yes, we ship to Canada in 5-8 business days, duties included at checkout."


def _default_and_custom(api, bot, client, admin, settings: dict[str, int],
                        asked: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same escalations on the default bot and on one with `settings`; each bot's one
    pending suggestion after a cycle."""
    custom = make_bot(client, admin, "custom")
    r = api.client.patch(f"/api/v1/bots/{custom.slug}/settings", headers=custom.headers,
                         json=settings)
    assert r.status_code == 200, r.text
    for handle in (bot, custom):
        api.ingest(handle.slug, [api.escalated(f"ca{i}", q, CANADA_REPLY,
                                               api.BASE + timedelta(hours=i))
                                 for i, q in enumerate(asked)])
        api.run_cycle(handle.slug, as_of=api.BASE + timedelta(days=1))
    [default_sug] = api.suggestions(bot.slug, "pending")
    [custom_sug] = api.suggestions(custom.slug, "pending")
    return default_sug, custom_sug


def test_a_bot_with_a_lower_critical_rate_sees_three_a_week_as_critical(api, bot, client,
                                                                      admin):
    default_sug, strict_sug = _default_and_custom(
        api, bot, client, admin, {"critical_weekly_occurrences": 3}, CANADA)
    assert default_sug["priority"] == "low"  # 3 < 5: a new topic is not urgent yet
    assert strict_sug["priority"] == "critical"  # 3 >= 3
    assert "3 customers in 7 days" in strict_sug["evidence"]["reason"]


WRONG_Q = "Can I change the delivery address on my order?"


def test_an_answer_that_satisfies_most_customers_ranks_by_the_bots_threshold(api, bot,
                                                                           client, admin):
    """The bot gives the cancel entry to a different question (thumbs-down, no agent): an
    answer to improve. The entry satisfied 6 of the 9 customers it was given to (66 %):
    low under the default 60 %, medium for a bot that wants 70 %."""
    demanding = make_bot(client, admin, "demanding")
    r = api.client.patch(f"/api/v1/bots/{demanding.slug}/settings",
                         headers=demanding.headers, json={"medium_satisfaction": 70})
    assert r.status_code == 200, r.text
    level = {}
    for handle in (bot, demanding):
        cancel = api.load_faq(handle.slug, ["cancel"])["cancel"]
        q, a = cancel["question"], cancel["answer"]
        convs = [api.answered(f"ok{i}", q, a, cancel["id"], api.BASE + timedelta(hours=i))
                 for i in range(6)]
        convs += [api.answered(f"bad{i}", WRONG_Q, a, cancel["id"],
                               api.BASE + timedelta(hours=10 + i), then=None,
                               feedback=[{"message_index": 1, "rating": "down"}])
                  for i in range(3)]
        api.ingest(handle.slug, convs)
        api.run_cycle(handle.slug, as_of=api.BASE + timedelta(days=1))
        [sug] = api.suggestions(handle.slug, "pending")
        assert sug["kind"] == "improve_answer" and sug["entry_id"] == cancel["id"]
        assert "satisfaction 66 % (9 answers in 30 days)" in sug["evidence"]["reason"]
        assert sug["evidence"]["satisfaction"] == {"percent": 66, "answered_30d": 9}
        assert sug["evidence"]["incomplete"] is False
        level[handle.slug] = sug["priority"]
    assert level == {bot.slug: "low", demanding.slug: "medium"}


def test_a_bot_can_ask_for_fewer_triggers_per_suggestion(api, bot, client, admin):
    assert api.settings(bot.slug)["max_triggers"] == 8
    default_sug, terse_sug = _default_and_custom(
        api, bot, client, admin, {"max_triggers": 1},
        [*CANADA, "do you deliver to Canada", "shipping to Vancouver?"])
    assert len(default_sug["variants"]) >= 2
    assert len(terse_sug["variants"]) <= 1
