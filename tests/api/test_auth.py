"""API keys and tenancy: 401 without a valid key, 404 on another bot's routes, admin-only routes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

WRONG_HEADERS: dict[str, dict[str, str]] = {
    "missing": {},
    "wrong key": {"Authorization": "Bearer not-a-real-key"},
    "basic scheme": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
    "no scheme": {"Authorization": "test-admin-key-0123456789"},
    "empty bearer": {"Authorization": "Bearer"},
    "token scheme": {"Authorization": "Token test-admin-key-0123456789"},
}

CANADA_QUESTIONS = [
    "Do you ship to Canada?",
    "Can you deliver my order to Canada?",
    "Do you deliver to Canada?",
]
CANADA_REPLY = "Yes! We ship to Canada: delivery takes 5-8 business days and costs $14.99."


@dataclass
class World:
    """One bot's data: an entry, stored conversations and a pending suggestion."""

    slug: str
    entry: dict[str, Any]
    suggestion: dict[str, Any]
    key_id: str


def populate(api, slug: str, key_id: str) -> World:
    q, a, v = api.FAQ["shipping"]
    entry = api.create_entry(slug, q, a, v, category="shipping")
    convs = [api.escalated(f"{slug}-{i}", text, CANADA_REPLY, api.BASE.replace(hour=9 + i))
             for i, text in enumerate(CANADA_QUESTIONS)]
    api.ingest(slug, convs)
    api.run_cycle(slug, api.BASE.replace(hour=20))
    suggestions = api.suggestions(slug)
    assert suggestions, "setup: the cycle should have proposed something"
    return World(slug, entry, suggestions[0], key_id)


def snapshot(api, world: World) -> dict[str, Any]:
    """Everything a user can read about a bot, through the admin key."""
    slug = world.slug
    return {
        "bot": api.client.get(f"/api/v1/bots/{slug}", headers=api.admin).json(),
        "settings": api.settings(slug),
        "entries": api.entries(slug),
        "versions": api.versions(slug, world.entry["id"]),
        "suggestions": api.suggestions(slug),
        "audit": api.audit(slug),
        "metrics": api.metrics(slug),
        "answer": api.answer(slug, "How long does delivery take?"),
    }


def bot_routes(world: World, api) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, body) for every bot-scoped route, aimed at `world`'s bot and data."""
    s, e, sug = world.slug, world.entry["id"], world.suggestion["id"]
    conv = api.escalated("intruder-1", "Do you ship to Mexico?", "Not yet, sorry!", api.BASE)
    return [
        ("GET", f"/api/v1/bots/{s}", None),
        ("GET", f"/api/v1/bots/{s}/settings", None),
        ("PATCH", f"/api/v1/bots/{s}/settings", {"autonomy": "advanced", "enabled": False}),
        ("POST", f"/api/v1/bots/{s}/keys", {"name": "stolen"}),
        ("DELETE", f"/api/v1/bots/{s}/keys/{world.key_id}", None),
        ("GET", f"/api/v1/bots/{s}/kb/entries", None),
        ("POST", f"/api/v1/bots/{s}/kb/entries",
         {"question": "Do you sell gift cards?", "answer": "No.", "variants": []}),
        ("GET", f"/api/v1/bots/{s}/kb/entries/{e}", None),
        ("PATCH", f"/api/v1/bots/{s}/kb/entries/{e}", {"answer": "Shipping is free forever!"}),
        ("GET", f"/api/v1/bots/{s}/kb/entries/{e}/versions", None),
        ("POST", f"/api/v1/bots/{s}/kb/entries/{e}/revert", {"version": 1}),
        ("POST", f"/api/v1/bots/{s}/kb/entries/{e}/deactivate", None),
        ("POST", f"/api/v1/bots/{s}/kb/entries/{e}/reactivate", None),
        ("POST", f"/api/v1/bots/{s}/answer", {"question": "How long does shipping take?"}),
        ("POST", f"/api/v1/bots/{s}/conversations", {"conversations": [conv]}),
        ("POST", f"/api/v1/bots/{s}/cycles", {"as_of": None}),
        ("GET", f"/api/v1/bots/{s}/suggestions", None),
        ("GET", f"/api/v1/bots/{s}/suggestions?status=pending", None),
        ("GET", f"/api/v1/bots/{s}/audit", None),
        ("GET", f"/api/v1/bots/{s}/audit?entry_id={e}", None),
        ("GET", f"/api/v1/bots/{s}/metrics", None),
        ("GET", f"/api/v1/bots/{s}/metrics?bucket=day", None),
        ("GET", f"/api/v1/bots/{s}/index", None),
        ("GET", f"/api/v1/suggestions/{sug}", None),
        ("POST", f"/api/v1/suggestions/{sug}/decision", {"action": "approve", "actor": "eve"}),
        ("POST", f"/api/v1/suggestions/{sug}/decision",
         {"action": "edit", "actor": "eve", "answer": "We ship everywhere for free."}),
        ("POST", f"/api/v1/suggestions/{sug}/decision", {"action": "reject", "actor": "eve"}),
    ]


def call(api, method: str, path: str, body: dict[str, Any] | None,
         headers: dict[str, str]) -> Any:
    return api.client.request(method, path, json=body, headers=headers)


@pytest.fixture
def acme_world(api, bot) -> World:
    return populate(api, bot.slug, bot.key_id)


@pytest.fixture
def globex_world(api, other_bot) -> World:
    return populate(api, other_bot.slug, other_bot.key_id)


# -- 401 ------------------------------------------------------------------------------------


def test_bad_credentials_get_401_everywhere_and_change_nothing(api, bot, acme_world):
    before = snapshot(api, acme_world)
    routes = [*bot_routes(acme_world, api),
              ("POST", "/api/v1/bots", {"slug": "sneaky", "name": "Sneaky"}),
              ("GET", "/api/v1/bots", None)]
    for name, headers in WRONG_HEADERS.items():
        for method, path, body in routes:
            r = call(api, method, path, body, headers)
            assert r.status_code == 401, (name, method, path, r.status_code, r.text)
            assert "detail" in r.json()
            # Nothing about the bot leaks into the refusal.
            assert acme_world.entry["answer"] not in r.text
    assert snapshot(api, acme_world) == before
    slugs = [b["slug"] for b in api.client.get("/api/v1/bots", headers=api.admin).json()["items"]]
    assert "sneaky" not in slugs
    # The real bot key was not revoked by the unauthenticated DELETE.
    assert api.client.get(f"/api/v1/bots/{bot.slug}/settings",
                          headers=bot.headers).status_code == 200


def test_unauthenticated_invalid_body_gets_401_not_a_validation_report(api, bot):
    r = api.client.post(f"/api/v1/bots/{bot.slug}/conversations",
                        json={"conversations": [{"id": 5}]})
    assert r.status_code == 401, r.text
    r = api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries", json={"question": ""},
                        headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401, r.text


def test_unauthenticated_malformed_json_gets_401(api, bot):
    r = api.client.post(f"/api/v1/bots/{bot.slug}/conversations",
                        content=b'{"conversations": [',
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text


def test_admin_and_bot_keys_are_accepted(api, bot):
    for headers in (api.admin, bot.headers):
        r = api.client.get(f"/api/v1/bots/{bot.slug}/settings", headers=headers)
        assert r.status_code == 200, r.text


def test_scheme_is_case_insensitive(api, bot):
    token = bot.headers["Authorization"].split(" ", 1)[1]
    r = api.client.get(f"/api/v1/bots/{bot.slug}/settings",
                       headers={"Authorization": f"bearer {token}"})
    assert r.status_code == 200, r.text


# -- revocation -----------------------------------------------------------------------------


def test_revoked_key_gets_401_from_then_on(api, bot):
    spare = api.client.post(f"/api/v1/bots/{bot.slug}/keys",
                            json={"name": "spare", "scope": "admin"}, headers=api.admin)
    assert spare.status_code == 201, spare.text
    spare_headers = {"Authorization": f"Bearer {spare.json()['key']}"}
    assert api.client.get(f"/api/v1/bots/{bot.slug}/settings",
                          headers=bot.headers).status_code == 200

    r = api.client.delete(f"/api/v1/bots/{bot.slug}/keys/{bot.key_id}", headers=api.admin)
    assert r.status_code == 204
    assert r.content == b""

    for method, path, body in [
        ("GET", f"/api/v1/bots/{bot.slug}/settings", None),
        ("POST", f"/api/v1/bots/{bot.slug}/answer", {"question": "How long does shipping take?"}),
        ("POST", f"/api/v1/bots/{bot.slug}/kb/entries", {"question": "Q?", "answer": "A."}),
    ]:
        r = call(api, method, path, body, bot.headers)
        assert r.status_code == 401, (path, r.text)
    assert api.entries(bot.slug) == []
    # Only that key is revoked: the bot's other key still works.
    assert api.client.get(f"/api/v1/bots/{bot.slug}/settings",
                          headers=spare_headers).status_code == 200


def test_new_key_is_shown_once_and_works(api, bot):
    r = api.client.post(f"/api/v1/bots/{bot.slug}/keys", json={"name": "import-script"},
                        headers=api.admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) >= {"id", "name", "scope", "key"}
    assert body["name"] == "import-script" and body["key"] and body["id"]
    assert body["scope"] == "chatbot"  # the default: what a chatbot's backend needs
    headers = {"Authorization": f"Bearer {body['key']}"}
    assert api.client.post(f"/api/v1/bots/{bot.slug}/answer", json={"question": "Hi there?"},
                           headers=headers).status_code == 200
    # The key is never shown again.
    for path in (f"/api/v1/bots/{bot.slug}", f"/api/v1/bots/{bot.slug}/settings",
                 f"/api/v1/bots/{bot.slug}/audit", "/api/v1/bots"):
        assert body["key"] not in api.client.get(path, headers=api.admin).text


def test_revoking_unknown_key_is_404(api, bot, other_bot):
    r = api.client.delete(f"/api/v1/bots/{bot.slug}/keys/no-such-key", headers=api.admin)
    assert r.status_code == 404
    # A key of another bot cannot be revoked through this bot's path.
    r = api.client.delete(f"/api/v1/bots/{bot.slug}/keys/{other_bot.key_id}", headers=api.admin)
    assert r.status_code == 404
    assert api.client.get(f"/api/v1/bots/{other_bot.slug}/settings",
                          headers=other_bot.headers).status_code == 200


# -- tenancy --------------------------------------------------------------------------------


def test_bot_key_gets_404_on_every_route_of_another_bot(api, bot, other_bot, globex_world):
    before = snapshot(api, globex_world)
    secrets = [globex_world.entry["answer"], globex_world.suggestion["question"],
               globex_world.suggestion["answer"], "Globex"]
    for method, path, body in bot_routes(globex_world, api):
        r = call(api, method, path, body, bot.headers)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        for secret in secrets:
            assert secret not in r.text, (method, path, r.text)
    assert snapshot(api, globex_world) == before
    # The other bot's own key still works (the DELETE above did not revoke it).
    r = api.client.get(f"/api/v1/bots/{other_bot.slug}/settings", headers=other_bot.headers)
    assert r.status_code == 200


def test_other_bots_key_is_untouched_by_cross_tenant_revoke(api, bot, other_bot):
    r = api.client.delete(f"/api/v1/bots/{other_bot.slug}/keys/{other_bot.key_id}",
                          headers=bot.headers)
    assert r.status_code == 404
    assert api.client.get(f"/api/v1/bots/{other_bot.slug}/settings",
                          headers=other_bot.headers).status_code == 200


def test_another_bots_data_is_not_reachable_through_own_slug(api, bot, globex_world):
    """Own slug, but ids belonging to the other bot: still 404 and nothing changes."""
    before = snapshot(api, globex_world)
    e = globex_world.entry["id"]
    own = f"/api/v1/bots/{bot.slug}/kb/entries/{e}"
    for method, path, body in [
        ("GET", own, None),
        ("GET", f"{own}/versions", None),
        ("PATCH", own, {"answer": "Shipping is free forever!"}),
        ("POST", f"{own}/revert", {"version": 1}),
        ("POST", f"{own}/deactivate", None),
    ]:
        for headers in (bot.headers, api.admin):
            r = call(api, method, path, body, headers)
            assert r.status_code == 404, (method, path, r.text)
            assert globex_world.entry["answer"] not in r.text
    r = api.client.get(f"/api/v1/bots/{bot.slug}/audit?entry_id={e}", headers=bot.headers)
    assert r.status_code == 200 and r.json()["items"] == []
    assert snapshot(api, globex_world) == before


def test_other_bot_is_indistinguishable_from_a_missing_one(api, bot, globex_world):
    """The refusal for an existing foreign bot reads exactly like the one for no bot at all."""
    for method, path, body in bot_routes(globex_world, api):
        if "/suggestions/" in path:
            ghost = path.replace(globex_world.suggestion["id"], "0" * 32)
            swap = (globex_world.suggestion["id"], "0" * 32)
        else:
            ghost = path.replace(f"/bots/{globex_world.slug}", "/bots/nosuch")
            swap = (globex_world.slug, "nosuch")
        real = call(api, method, path, body, bot.headers)
        fake = call(api, method, ghost, body, bot.headers)
        assert real.status_code == fake.status_code == 404, (path, real.text, fake.text)
        assert real.json()["detail"].replace(*swap) == fake.json()["detail"], (path,)


def test_bot_list_shows_only_own_bot_to_a_bot_key(api, bot, other_bot):
    r = api.client.get("/api/v1/bots", headers=bot.headers)
    assert r.status_code == 200
    assert [b["slug"] for b in r.json()["items"]] == [bot.slug]
    r = api.client.get("/api/v1/bots", headers=api.admin)
    assert {b["slug"] for b in r.json()["items"]} == {bot.slug, other_bot.slug}


def test_bot_key_cannot_create_bots_nor_a_chatbot_key_keys(api, bot):
    r = api.client.post("/api/v1/bots", json={"slug": "rogue", "name": "Rogue"},
                        headers=bot.headers)
    assert r.status_code == 403, r.text
    assert "detail" in r.json()
    chatbot = api.client.post(f"/api/v1/bots/{bot.slug}/keys", json={"name": "widget"},
                              headers=api.admin).json()["key"]
    r = api.client.post(f"/api/v1/bots/{bot.slug}/keys", json={"name": "more"},
                        headers={"Authorization": f"Bearer {chatbot}"})
    assert r.status_code == 403, r.text
    assert "key" not in r.json()
    slugs = [b["slug"] for b in api.client.get("/api/v1/bots", headers=api.admin).json()["items"]]
    assert slugs == [bot.slug]


# -- public routes --------------------------------------------------------------------------


def test_healthz_needs_no_auth(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", headers={"Authorization": "Bearer junk"}).status_code == 200


SPEC_ROUTES = [
    ("post", "/api/v1/bots"),
    ("post", "/api/v1/bots/{}/keys"),
    ("delete", "/api/v1/bots/{}/keys/{}"),
    ("get", "/api/v1/bots/{}/settings"),
    ("patch", "/api/v1/bots/{}/settings"),
    ("post", "/api/v1/bots/{}/kb/entries"),
    ("get", "/api/v1/bots/{}/kb/entries"),
    ("get", "/api/v1/bots/{}/kb/entries/{}/versions"),
    ("post", "/api/v1/bots/{}/kb/entries/{}/revert"),
    ("post", "/api/v1/bots/{}/kb/entries/{}/deactivate"),
    ("post", "/api/v1/bots/{}/answer"),
    ("post", "/api/v1/bots/{}/conversations"),
    ("post", "/api/v1/bots/{}/cycles"),
    ("get", "/api/v1/bots/{}/suggestions"),
    ("post", "/api/v1/suggestions/{}/decision"),
    ("get", "/api/v1/bots/{}/audit"),
    ("get", "/api/v1/bots/{}/metrics"),
    ("get", "/healthz"),
]


def test_openapi_lists_every_spec_route(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    published = {(method, re.sub(r"\{[^}]+\}", "{}", path))
                 for path, ops in doc["paths"].items() for method in ops}
    missing = [route for route in SPEC_ROUTES if route not in published]
    assert missing == []
    # The query parameters the spec names are documented too.
    params = {p["name"] for op in doc["paths"]["/api/v1/bots/{slug}/suggestions"].values()
              for p in op.get("parameters", [])}
    assert "status" in params
    params = {p["name"] for op in doc["paths"]["/api/v1/bots/{slug}/metrics"].values()
              for p in op.get("parameters", [])}
    assert "bucket" in params


def test_the_api_docs_work_offline(client):
    """/docs and /redoc load their scripts from this server, not a CDN: a machine with no
    internet still gets a working page, not a blank one."""
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
                         ("/redoc", ("redoc.standalone.js",))):
        r = client.get(page)
        assert r.status_code == 200
        html = r.text
        assert "cdn." not in html and "https://" not in html.split("<body>")[0]
        for asset in assets:
            src = re.search(rf'"([^"]*/{re.escape(asset)})"', html)
            assert src is not None, (page, asset)
            served = client.get(src.group(1))
            assert served.status_code == 200 and len(served.content) > 10_000, asset
