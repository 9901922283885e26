"""Bots (tenants) and their settings."""

from __future__ import annotations

from datetime import datetime

SPEC_SETTINGS = {
    "autonomy": {"conservative", "moderate", "advanced"},
    "notify_frequency": {"daily", "weekly", "critical_only"},
}


def test_create_bot_returns_201_with_settings(api):
    r = api.client.post("/api/v1/bots", json={"slug": "acme", "name": "Acme support"},
                        headers=api.admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["slug"] == "acme"
    assert body["name"] == "Acme support"
    settings = body["settings"]
    assert settings["autonomy"] in SPEC_SETTINGS["autonomy"]
    assert settings["notify_frequency"] in SPEC_SETTINGS["notify_frequency"]
    assert isinstance(settings["excluded_categories"], list)
    assert isinstance(settings["daily_auto_publish_limit"], int)
    assert settings["daily_auto_publish_limit"] >= 0
    assert settings["enabled"] is True
    # The settings route serves the same settings the bot was created with.
    assert api.settings("acme") == settings


def test_duplicate_slug_is_409_and_keeps_the_first_bot(api):
    assert api.client.post("/api/v1/bots", json={"slug": "acme", "name": "Acme support"},
                           headers=api.admin).status_code == 201
    r = api.client.post("/api/v1/bots", json={"slug": "acme", "name": "Impostor"},
                        headers=api.admin)
    assert r.status_code == 409, r.text
    assert "acme" in r.json()["detail"]
    bots = api.client.get("/api/v1/bots", headers=api.admin).json()["items"]
    assert [(b["slug"], b["name"]) for b in bots] == [("acme", "Acme support")]


BAD_SLUGS = ["Acme", "acme support", "-acme", "acme-", "", "a" * 65, "acme_support", "acmé"]


def test_bad_slug_is_422_and_creates_nothing(api):
    for slug in BAD_SLUGS:
        r = api.client.post("/api/v1/bots", json={"slug": slug, "name": "Acme"},
                            headers=api.admin)
        assert r.status_code == 422, (slug, r.text)
        assert any("slug" in err["loc"] for err in r.json()["detail"]), (slug, r.text)
    assert api.client.get("/api/v1/bots", headers=api.admin).json()["items"] == []


def test_longest_and_shortest_valid_slugs(api):
    for slug in ("a", "a" * 64, "acme-2"):
        r = api.client.post("/api/v1/bots", json={"slug": slug, "name": "x"}, headers=api.admin)
        assert r.status_code == 201, (slug, r.text)


def test_get_and_patch_settings(api, bot):
    patch = {"autonomy": "moderate", "notify_frequency": "weekly",
             "excluded_categories": ["pricing", "legal"], "daily_auto_publish_limit": 3,
             "enabled": False}
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", json=patch, headers=bot.headers)
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in patch} == patch
    got = api.client.get(f"/api/v1/bots/{bot.slug}/settings", headers=bot.headers)
    assert got.status_code == 200
    assert {k: got.json()[k] for k in patch} == patch
    assert got.json() == r.json()


def test_patch_changes_only_the_given_settings(api, bot):
    before = api.settings(bot.slug)
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", json={"autonomy": "advanced"},
                         headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {**before, "autonomy": "advanced"}
    assert api.settings(bot.slug) == {**before, "autonomy": "advanced"}


BAD_PATCHES = [
    ({"autonomy": "reckless"}, "autonomy"),
    ({"notify_frequency": "hourly"}, "notify_frequency"),
    ({"daily_auto_publish_limit": -1}, "daily_auto_publish_limit"),
    ({"excluded_categories": "pricing"}, "excluded_categories"),
    ({"enabled": "maybe"}, "enabled"),
    ({"autonomyy": "moderate"}, "autonomyy"),
    # A valid change next to an invalid one is refused as a whole.
    ({"autonomy": "advanced", "daily_auto_publish_limit": -5}, "daily_auto_publish_limit"),
    ({"notify_frequency": "weekly", "colour": "blue"}, "colour"),
]


def test_bad_settings_are_422_naming_the_field_and_change_nothing(api, bot):
    before = api.settings(bot.slug)
    for patch, field in BAD_PATCHES:
        r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", json=patch,
                             headers=bot.headers)
        assert r.status_code == 422, (patch, r.text)
        detail = r.json()["detail"]
        assert any(field in err["loc"] for err in detail), (patch, detail)
        assert api.settings(bot.slug) == before, patch
    assert [e for e in api.audit(bot.slug) if e["action"].startswith("settings")] == []


def test_settings_body_must_be_an_object(api, bot):
    before = api.settings(bot.slug)
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", content=b"[1, 2]",
                         headers={**bot.headers, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert api.settings(bot.slug) == before


def test_settings_change_is_audited_with_before_and_after(api, bot):
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings",
                         json={"autonomy": "moderate", "daily_auto_publish_limit": 4},
                         headers=bot.headers)
    assert r.status_code == 200
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", json={"enabled": False},
                         headers=api.admin)
    assert r.status_code == 200
    items = api.audit(bot.slug)
    assert [i["action"] for i in items] == ["settings.updated", "settings.updated"]
    newest, oldest = items
    assert newest["after"]["enabled"] is False and newest["before"]["enabled"] is True
    assert oldest["after"]["autonomy"] == "moderate"
    assert oldest["before"]["autonomy"] == "conservative"
    assert oldest["after"]["daily_auto_publish_limit"] == 4
    assert datetime.fromisoformat(newest["at"]) >= datetime.fromisoformat(oldest["at"])
    assert all(i["channel"] == "api" and i["actor"] for i in items)
    assert newest["actor"] != oldest["actor"]  # admin key vs the bot's key
    assert set(newest) == {"at", "actor", "channel", "action", "entry_id", "suggestion_id",
                           "before", "after"}


def test_patch_that_changes_nothing_is_not_audited(api, bot):
    current = api.settings(bot.slug)
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings",
                         json={"autonomy": current["autonomy"]}, headers=bot.headers)
    assert r.status_code == 200
    assert api.audit(bot.slug) == []


def test_unknown_bot_is_404(api):
    for method, path in [("GET", "/api/v1/bots/nosuch/settings"),
                         ("PATCH", "/api/v1/bots/nosuch/settings"),
                         ("POST", "/api/v1/bots/nosuch/keys")]:
        body = {"name": "x"} if path.endswith("keys") else \
            ({"autonomy": "moderate"} if method == "PATCH" else None)
        r = api.client.request(method, path, json=body, headers=api.admin)
        assert r.status_code == 404, (method, path, r.text)
