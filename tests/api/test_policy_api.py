"""Policy over HTTP: settings validation and audit, pause/resume, categories, category
corrections, defer, undo, and auto-published suggestions with their announcements."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from core.db import session_scope
from core.models import Bot, Suggestion

SHIPPING = {"name": "shipping", "description": "Delivery times, carriers and tracking.",
            "keywords": ["courier", "tracking number"]}


def bot_id(services, slug: str) -> str:
    with Session(services.engine) as session:
        bot = session.exec(select(Bot).where(Bot.slug == slug)).one()
        return bot.id


def suggest(services, slug: str, *, confidence: int = 60, category: str | None = None,
            question: str = "How do I enable dark mode in the mobile app?",
            answer: str = "Open Settings > Appearance in the app and switch on Dark mode.",
            status: str = "pending") -> str:
    """A suggestion with exact fields, as the cycle would have stored it."""
    sug = Suggestion(bot_id=bot_id(services, slug), kind="new_answer", priority="medium",
                     score=float(confidence), confidence=confidence, question=question,
                     answer=answer, variants=[], category=category, evidence={},
                     status=status)
    with session_scope(services.engine) as session:
        session.add(sug)
    return sug.id


def patch_settings(api, slug: str, patch: Any, headers: dict[str, str] | None = None):
    return api.client.patch(f"/api/v1/bots/{slug}/settings", json=patch,
                            headers=headers or api.admin)


def get_suggestion(api, sid: str) -> dict[str, Any]:
    r = api.client.get(f"/api/v1/suggestions/{sid}", headers=api.admin)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def notifications(api, slug: str, **params: Any) -> list[dict[str, Any]]:
    r = api.client.get(f"/api/v1/bots/{slug}/notifications", params=params, headers=api.admin)
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def categories(api, slug: str) -> dict[str, dict[str, Any]]:
    r = api.client.get(f"/api/v1/bots/{slug}/categories", headers=api.admin)
    assert r.status_code == 200, r.text
    return {c["name"]: c for c in r.json()["items"]}


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(("patch", "field"), [
    ({"autonomy": "reckless"}, "autonomy"),
    ({"daily_auto_publish_limit": -1}, "daily_auto_publish_limit"),
    ({"excluded_categories": ["pricing", "astrology"]}, "excluded_categories"),
    ({"training_excluded_categories": ["astrology"]}, "training_excluded_categories"),
    ({"moderate_auto_publish_above": 101}, "moderate_auto_publish_above"),
    ({"autonomyy": "moderate"}, "autonomyy"),
])
def test_bad_settings_are_422_naming_the_field_and_change_nothing(api, bot, patch, field):
    before, audit_before = api.settings(bot.slug), api.audit(bot.slug)
    r = patch_settings(api, bot.slug, patch)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"][-1] == field, detail
    assert detail[0]["msg"]
    assert api.settings(bot.slug) == before
    assert api.audit(bot.slug) == audit_before


def test_custom_category_may_not_reuse_a_builtin_name(api, bot):
    before = api.settings(bot.slug)
    r = patch_settings(api, bot.slug, {"custom_categories": [
        {"name": "Pricing", "description": "Our own pricing topic.", "keywords": ["price"]}]})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "custom_categories" in detail[0]["loc"], detail
    assert "built-in" in detail[0]["msg"]
    assert api.settings(bot.slug) == before
    assert [a for a in api.audit(bot.slug) if a["action"] == "settings.updated"] == []


def test_custom_category_can_then_be_excluded_and_each_change_is_audited_once(api, bot):
    r = patch_settings(api, bot.slug, {"custom_categories": [SHIPPING]})
    assert r.status_code == 200, r.text
    assert [c["name"] for c in r.json()["custom_categories"]] == ["shipping"]
    r = patch_settings(api, bot.slug, {"excluded_categories": ["pricing", "shipping"],
                                       "autonomy": "moderate"})
    assert r.status_code == 200, r.text
    settings = api.settings(bot.slug)
    assert settings["excluded_categories"] == ["pricing", "shipping"]
    assert settings["autonomy"] == "moderate"

    rows = [a for a in api.audit(bot.slug) if a["action"] == "settings.updated"]
    assert len(rows) == 2
    newest, first = rows
    assert first["before"] == {"custom_categories": []}
    assert first["after"]["custom_categories"][0]["name"] == "shipping"
    # Only the changed keys, with what they were and what they became.
    assert newest["before"] == {"excluded_categories": ["pricing", "legal", "medical"],
                                "autonomy": "conservative"}
    assert newest["after"] == {"excluded_categories": ["pricing", "shipping"],
                               "autonomy": "moderate"}
    assert newest["channel"] == "api"

    # A patch that changes nothing is no change: no audit row.
    assert patch_settings(api, bot.slug, {"autonomy": "moderate"}).status_code == 200
    assert len([a for a in api.audit(bot.slug) if a["action"] == "settings.updated"]) == 2


def test_categories_list_builtins_and_custom_with_their_flags(api, bot):
    cats = categories(api, bot.slug)
    assert set(cats) == {"pricing", "legal", "medical"}
    for name in ("pricing", "legal", "medical"):
        assert cats[name]["builtin"] is True
        assert cats[name]["excluded_from_auto_publish"] is True
        assert cats[name]["excluded_from_training"] is False
        assert cats[name]["description"]

    r = patch_settings(api, bot.slug, {"custom_categories": [SHIPPING],
                                       "excluded_categories": ["legal"],
                                       "training_excluded_categories": ["shipping"]})
    assert r.status_code == 200, r.text
    cats = categories(api, bot.slug)
    assert set(cats) == {"pricing", "legal", "medical", "shipping"}
    assert cats["shipping"]["builtin"] is False
    assert cats["shipping"]["keywords"] == ["courier", "tracking number"]
    assert cats["shipping"]["description"] == SHIPPING["description"]
    assert cats["shipping"]["excluded_from_training"] is True
    assert cats["shipping"]["excluded_from_auto_publish"] is False
    assert cats["pricing"]["excluded_from_auto_publish"] is False
    assert cats["legal"]["excluded_from_auto_publish"] is True


# -- pause and resume ------------------------------------------------------------------------


def test_pause_and_resume_flip_enabled_audit_and_announce(api, bot):
    r = api.client.post(f"/api/v1/bots/{bot.slug}/pause", json={"actor": "maria"},
                        headers=api.admin)
    assert r.status_code == 200, r.text
    assert api.settings(bot.slug)["enabled"] is False

    again = api.client.post(f"/api/v1/bots/{bot.slug}/pause", headers=api.admin)
    assert again.status_code == 409, again.text
    assert "already paused" in again.json()["detail"]
    assert api.settings(bot.slug)["enabled"] is False

    r = api.client.post(f"/api/v1/bots/{bot.slug}/resume", headers=bot.headers)
    assert r.status_code == 200, r.text
    assert api.settings(bot.slug)["enabled"] is True

    rows = [a for a in api.audit(bot.slug) if a["action"].startswith("autotraining.")]
    assert [(a["action"], a["before"], a["after"]) for a in rows] == [
        ("autotraining.resumed", {"enabled": False}, {"enabled": True}),
        ("autotraining.paused", {"enabled": True}, {"enabled": False}),
    ]
    assert rows[1]["actor"] == "maria"
    notes = notifications(api, bot.slug)
    assert [n["kind"] for n in notes] == ["resumed", "paused"]
    assert "maria" in notes[1]["text"]


def test_resume_when_not_paused_is_409(api, bot):
    r = api.client.post(f"/api/v1/bots/{bot.slug}/resume", headers=api.admin)
    assert r.status_code == 409, r.text
    assert api.settings(bot.slug)["enabled"] is True
    assert notifications(api, bot.slug) == []


def test_a_bot_key_cannot_pause_another_bot(api, bot, other_bot):
    r = api.client.post(f"/api/v1/bots/{other_bot.slug}/pause", headers=bot.headers)
    assert r.status_code == 404, r.text
    assert api.settings(other_bot.slug)["enabled"] is True
    assert api.audit(other_bot.slug) == []
    assert notifications(api, other_bot.slug) == []


# -- category corrections --------------------------------------------------------------------


def test_admin_sets_and_clears_a_suggestions_category(api, bot, services):
    sid = suggest(services, bot.slug)
    r = api.client.patch(f"/api/v1/suggestions/{sid}", json={"category": "legal"},
                         headers=api.admin)
    assert r.status_code == 200, r.text
    shown = get_suggestion(api, sid)
    assert (shown["category"], shown["category_source"], shown["status"]) == \
        ("legal", "admin", "pending")

    r = api.client.patch(f"/api/v1/suggestions/{sid}", json={"category": None},
                         headers=api.admin)
    assert r.status_code == 200, r.text
    assert get_suggestion(api, sid)["category"] is None


def test_unknown_category_on_a_suggestion_is_422(api, bot, services):
    sid = suggest(services, bot.slug, category="pricing")
    r = api.client.patch(f"/api/v1/suggestions/{sid}", json={"category": "astrology"},
                         headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "category"
    assert get_suggestion(api, sid)["category"] == "pricing"


def test_moving_a_suggestion_into_a_training_excluded_category_withdraws_it(
        api, bot, services):
    assert patch_settings(api, bot.slug, {"training_excluded_categories": ["medical"]}
                          ).status_code == 200
    sid = suggest(services, bot.slug)
    r = api.client.patch(f"/api/v1/suggestions/{sid}", json={"category": "medical"},
                         headers=bot.headers)
    assert r.status_code == 200, r.text
    shown = get_suggestion(api, sid)
    assert (shown["status"], shown["category"]) == ("withdrawn", "medical")
    assert sid not in [s["id"] for s in api.suggestions(bot.slug, "pending")]
    assert sid in [s["id"] for s in api.suggestions(bot.slug, "withdrawn")]


def test_deciding_a_withdrawn_suggestion_says_why_without_a_null_name(api, bot, services):
    assert patch_settings(api, bot.slug, {"training_excluded_categories": ["medical"]}
                          ).status_code == 200
    sid = suggest(services, bot.slug)
    assert api.client.patch(f"/api/v1/suggestions/{sid}", json={"category": "medical"},
                            headers=api.admin).status_code == 200
    r = api.decide(sid, "approve", "bob")
    assert r.status_code == 409, r.text
    assert "withdrawn" in r.json()["detail"]
    assert "None" not in r.json()["detail"]


# -- defer -----------------------------------------------------------------------------------


def test_defer_needs_a_future_time(api, bot, services):
    sid = suggest(services, bot.slug)
    past = datetime.now(UTC) - timedelta(hours=1)
    r = api.decide(sid, "defer", "maria", until=past.isoformat())
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "until"
    assert get_suggestion(api, sid)["status"] == "pending"

    future = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    r = api.decide(sid, "defer", "maria", until=future.isoformat())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "deferred"
    shown = get_suggestion(api, sid)
    assert shown["status"] == "deferred"
    until = datetime.fromisoformat(shown["defer_until"])
    # A naive time here is UTC (the API stores UTC).
    assert (until if until.tzinfo else until.replace(tzinfo=UTC)) == future


# -- undo ------------------------------------------------------------------------------------


def test_undo_takes_an_approved_answer_back(api, bot, services):
    question = "How do I export my invoices as a spreadsheet?"
    sid = suggest(services, bot.slug, question=question,
                  answer="Go to Billing > Invoices and press Export to get a CSV file.")
    r = api.decide(sid, "approve", "maria")
    assert r.status_code == 200, r.text
    entry_id = r.json()["entry_id"]
    live = api.answer(bot.slug, question, headers=bot.headers)
    assert (live["entry_id"], live["escalate"]) == (entry_id, False)

    r = api.client.post(f"/api/v1/suggestions/{sid}/undo", json={"actor": "maria"},
                        headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    gone = api.answer(bot.slug, question, headers=bot.headers)
    assert gone["escalate"] is True and gone["entry_id"] is None
    assert get_suggestion(api, sid)["status"] == "undone"

    again = api.client.post(f"/api/v1/suggestions/{sid}/undo", headers=api.admin)
    assert again.status_code == 409, again.text
    assert "undone" in again.json()["detail"]


def test_deciding_an_undone_suggestion_names_who_undid_it(api, bot, services):
    sid = suggest(services, bot.slug, question="How do I export my invoices as a spreadsheet?")
    assert api.decide(sid, "approve", "maria").status_code == 200
    assert api.client.post(f"/api/v1/suggestions/{sid}/undo", json={"actor": "bob"},
                           headers=api.admin).status_code == 200
    r = api.decide(sid, "approve", "carl")
    assert r.status_code == 409, r.text
    assert "undone by bob" in r.json()["detail"]


def test_undo_of_a_pending_suggestion_is_409(api, bot, services):
    sid = suggest(services, bot.slug)
    r = api.client.post(f"/api/v1/suggestions/{sid}/undo", headers=api.admin)
    assert r.status_code == 409, r.text
    assert get_suggestion(api, sid)["status"] == "pending"
    assert api.entries(bot.slug) == []


# -- auto-publish ----------------------------------------------------------------------------


@pytest.fixture
def auto_published(api, bot, services) -> dict[str, Any]:
    """Moderate autonomy publishes a pending suggestion at confidence 95."""
    assert patch_settings(api, bot.slug, {"autonomy": "moderate"}).status_code == 200
    question = "Can I change the language of the dashboard?"
    sid = suggest(services, bot.slug, confidence=95, question=question,
                  answer="Yes: open Profile > Preferences and pick a language.")
    held = suggest(services, bot.slug, confidence=90,
                   question="Can I set a default currency for reports?",
                   answer="Yes, under Reports > Settings.")
    report = services.policy.auto_publish(bot_id=bot_id(services, bot.slug), at=None)
    assert report.published == [sid]
    return {"id": sid, "held": held, "question": question}


def test_auto_published_suggestions_are_listed_and_announced(api, bot, auto_published):
    items = api.suggestions(bot.slug, "auto_published")
    assert [s["id"] for s in items] == [auto_published["id"]]
    assert items[0]["decided_channel"] == "auto"
    assert items[0]["status"] == "auto_published"
    assert auto_published["held"] in [s["id"] for s in api.suggestions(bot.slug, "pending")]

    notes = notifications(api, bot.slug, undelivered="true")
    published = [n for n in notes if n["kind"] == "auto_published"]
    assert len(published) == 1
    assert published[0]["suggestion_id"] == auto_published["id"]
    assert auto_published["question"] in published[0]["text"]
    assert published[0]["delivered_at"] is None
    # And it is live: the chatbot's next question gets it.
    assert api.answer(bot.slug, auto_published["question"])["escalate"] is False


def test_audit_csv_export_has_the_auto_published_row(api, bot, auto_published):
    r = api.client.get(f"/api/v1/bots/{bot.slug}/audit", params={"format": "csv"},
                       headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert f'{bot.slug}-audit.csv' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    auto = [row for row in rows if row["action"] == "suggestion.auto_published"]
    assert len(auto) == 1
    assert auto[0]["suggestion_id"] == auto_published["id"]
    assert (auto[0]["actor"], auto[0]["channel"]) == ("autotrain", "auto")
    assert auto[0]["entry_id"]
    # The settings change that allowed it is in the same export.
    assert "settings.updated" in [row["action"] for row in rows]


def test_audit_csv_before_and_after_cells_are_json(api, bot, auto_published):
    r = api.client.get(f"/api/v1/bots/{bot.slug}/audit", params={"format": "csv"},
                       headers=api.admin)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    (auto,) = [row for row in rows if row["action"] == "suggestion.auto_published"]
    (shown,) = [a for a in api.audit(bot.slug) if a["action"] == "suggestion.auto_published"]
    assert json.loads(auto["after"]) == shown["after"]


def test_audit_filters_by_suggestion_and_action(api, bot, auto_published):
    base = f"/api/v1/bots/{bot.slug}/audit"
    by_sug = api.client.get(base, params={"suggestion_id": auto_published["id"]},
                            headers=api.admin).json()["items"]
    assert [a["action"] for a in by_sug] == ["suggestion.auto_published"]
    by_action = api.client.get(base, params={"action": "settings.updated"},
                               headers=api.admin).json()["items"]
    assert by_action and {a["action"] for a in by_action} == {"settings.updated"}
