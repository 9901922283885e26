"""The lean answer path: remembered keys still obey revocation, and SQL stays the truth for
what is served even when another process changes it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from core.keycache import KeyCache

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _in_another_process(services, code: str) -> None:  # type: ignore[no-untyped-def]
    """Run `code` in a fresh Python process on the same database (`engine` is bound)."""
    script = textwrap.dedent(f"""
        from sqlalchemy import create_engine, text
        engine = create_engine({services.settings.sqlalchemy_url!r})
        with engine.begin() as db:
    """) + textwrap.indent(textwrap.dedent(code), "    ")
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _chatbot_key(api, bot) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    r = api.client.post(f"/api/v1/bots/{bot.slug}/keys",
                        json={"name": "widget", "scope": "chatbot"}, headers=api.admin)
    assert r.status_code == 201, r.text
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['key']}"}


def test_a_key_revoked_here_is_refused_on_the_very_next_call(api, bot):
    api.load_faq(bot.slug, ["shipping"])
    key_id, widget = _chatbot_key(api, bot)
    for _ in range(3):  # now remembered by this process
        assert api.answer(bot.slug, "How long does delivery take?", headers=widget)
    r = api.client.delete(f"/api/v1/bots/{bot.slug}/keys/{key_id}", headers=api.admin)
    assert r.status_code == 204
    r = api.client.post(f"/api/v1/bots/{bot.slug}/answer", headers=widget,
                        json={"question": "How long does delivery take?"})
    assert r.status_code == 401


def test_a_key_revoked_by_another_process_is_refused_within_the_ttl(api, bot, services):
    api.load_faq(bot.slug, ["shipping"])
    key_id, widget = _chatbot_key(api, bot)
    services.keys = KeyCache(services.keys.lookup, ttl=0.5)
    assert api.answer(bot.slug, "How long does delivery take?", headers=widget)
    _in_another_process(services, f"""
        db.execute(text("UPDATE apikey SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id"),
                   {{"id": {key_id!r}}})
    """)
    time.sleep(0.6)  # the TTL this test configured; nothing here measures speed
    r = api.client.post(f"/api/v1/bots/{bot.slug}/answer", headers=widget,
                        json={"question": "How long does delivery take?"})
    assert r.status_code == 401


def test_a_new_key_works_at_once_and_unknown_keys_are_never_remembered(api, bot, services):
    bad = {"Authorization": "Bearer atk_not-a-key"}
    r = api.client.post(f"/api/v1/bots/{bot.slug}/answer", headers=bad, json={"question": "hi"})
    assert r.status_code == 401
    _, widget = _chatbot_key(api, bot)
    assert api.answer(bot.slug, "hello", headers=widget)["escalate"] is True
    # A refusal is not remembered: a key that becomes valid must work at once too.
    assert hashlib.sha256(b"atk_not-a-key").hexdigest() not in services.keys._cache


def test_an_entry_deactivated_by_another_process_is_never_served(api, bot, services):
    """Only SQL is changed (the other process does not touch this one's vector index): the
    index still finds the entry, and `answer` must still not serve it."""
    entries = api.load_faq(bot.slug, ["shipping", "returns"])
    question = "How long does delivery take?"
    before = api.answer(bot.slug, question)
    assert before["entry_id"] == entries["shipping"]["id"] and not before["escalate"]
    _in_another_process(services, f"""
        db.execute(text("UPDATE kbentry SET active = false WHERE id = :id"),
                   {{"id": {entries['shipping']['id']!r}}})
    """)
    after = api.answer(bot.slug, question)
    assert after["entry_id"] != entries["shipping"]["id"]
    assert after["answer"] != entries["shipping"]["answer"]
