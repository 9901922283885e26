"""Least-privilege keys: what a chatbot, reviewer and admin key of a bot reach; a call outside
the scope is a 403 naming the scope it needs and changes nothing (issue 14 item 5)."""

from __future__ import annotations

from typing import Any

import pytest

# (method, path, body) → the least scope that reaches it. `{s}` is the bot's slug; `{e}` an
# entry and `{g}` a suggestion of that bot.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/api/v1/bots/{s}/answer", {"question": "How long does shipping take?"}, "chatbot"),
    ("POST", "/api/v1/bots/{s}/conversations", {"conversations": []}, "chatbot"),
    ("GET", "/api/v1/bots/{s}/suggestions", None, "reviewer"),
    ("GET", "/api/v1/suggestions/{g}", None, "reviewer"),
    ("POST", "/api/v1/suggestions/{g}/decision", {"action": "defer", "actor": "ana"},
     "reviewer"),
    ("POST", "/api/v1/bots/{s}/sandbox", {"question": "Do you ship?", "suggestion_ids": []},
     "reviewer"),
    ("GET", "/api/v1/bots/{s}/audit", None, "reviewer"),
    ("GET", "/api/v1/bots/{s}/metrics", None, "reviewer"),
    ("GET", "/api/v1/bots/{s}/stats", None, "reviewer"),
    ("POST", "/api/v1/bots/{s}/digest", None, "reviewer"),
    ("GET", "/api/v1/bots/{s}/settings", None, "admin"),
    ("PATCH", "/api/v1/bots/{s}/settings", {"autonomy": "advanced"}, "admin"),
    ("POST", "/api/v1/bots/{s}/pause", None, "admin"),
    ("GET", "/api/v1/bots/{s}/kb/entries", None, "admin"),
    ("POST", "/api/v1/bots/{s}/kb/entries", {"question": "Q?", "answer": "A."}, "admin"),
    ("PATCH", "/api/v1/bots/{s}/kb/entries/{e}", {"answer": "Changed."}, "admin"),
    ("POST", "/api/v1/bots/{s}/keys", {"name": "more"}, "admin"),
]
ORDER = ["chatbot", "reviewer", "admin"]


def _key(api: Any, slug: str, scope: str) -> dict[str, str]:
    r = api.client.post(f"/api/v1/bots/{slug}/keys", json={"name": scope, "scope": scope},
                        headers=api.admin)
    assert r.status_code == 201 and r.json()["scope"] == scope, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


@pytest.fixture
def world(api: Any, bot: Any) -> dict[str, Any]:
    entry = api.load_faq(bot.slug, ["shipping"])["shipping"]
    r = api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}/deactivate",
                        headers=api.admin)
    assert r.status_code == 200
    api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}/reactivate",
                    headers=api.admin)
    from core.db import session_scope
    from core.models import Suggestion
    services = api.client.app.state.services
    bot_id = services.review.bot(bot.slug).id
    sug = Suggestion(bot_id=bot_id, kind="new_answer", priority="low", score=1.0,
                     confidence=80, question="Do you ship to Canada?",
                     answer="Yes, in 5 to 8 days.", variants=[], evidence={})
    with session_scope(services.engine) as session:
        session.add(sug)
    return {"s": bot.slug, "e": entry["id"], "g": sug.id,
            "keys": {scope: _key(api, bot.slug, scope) for scope in ORDER}}


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_each_scope_reaches_its_routes_and_no_further(api, world, method, path, body, needed):
    url = path.format(s=world["s"], e=world["e"], g=world["g"])
    for scope in ORDER:
        before = api.client.get(f"/api/v1/bots/{world['s']}/audit", headers=api.admin).json()
        r = api.client.request(method, url, json=body, headers=world["keys"][scope])
        if ORDER.index(scope) >= ORDER.index(needed):
            assert r.status_code < 400, (scope, r.status_code, r.text)
            continue
        assert r.status_code == 403, (scope, r.status_code, r.text)
        assert r.json()["detail"] == (f"this key's scope is {scope}; this route needs a "
                                      f"{needed} key (or the admin key)")
        after = api.client.get(f"/api/v1/bots/{world['s']}/audit", headers=api.admin).json()
        assert after == before  # refused before anything ran


def test_an_unknown_scope_is_a_422_naming_the_field(api, bot):
    r = api.client.post(f"/api/v1/bots/{bot.slug}/keys", json={"name": "x", "scope": "root"},
                        headers=api.admin)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "scope"]


def test_a_chatbot_key_cannot_switch_the_bot_to_advanced_autonomy(api, bot, world):
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", json={"autonomy": "advanced"},
                         headers=world["keys"]["chatbot"])
    assert r.status_code == 403
    assert api.settings(bot.slug)["autonomy"] == "conservative"
