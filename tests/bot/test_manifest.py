"""`autotrain slack manifest`: everything Slack needs to reach /slack/events, nothing more."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from bot.manifest import BOT_SCOPES
from cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_the_manifest_points_every_request_url_at_slack_events() -> None:
    out = CliRunner().invoke(app, ["slack", "manifest", "--url", "https://bot.example.com/at/"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    url = "https://bot.example.com/at/slack/events"
    assert got["settings"]["interactivity"] == {"is_enabled": True, "request_url": url}
    assert got["settings"]["event_subscriptions"]["request_url"] == url
    assert got["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    [command] = got["features"]["slash_commands"]
    assert (command["command"], command["url"]) == ("/autotrain", url)
    assert got["features"]["app_home"]["home_tab_enabled"] is True


def test_the_scopes_cover_every_web_api_method_the_bot_calls() -> None:
    # Each method the code calls, and the scope Slack requires for it.
    needs = {"chat_postMessage": "chat:write", "chat_update": "chat:write",
             "chat_postEphemeral": "chat:write", "chat_delete": "chat:write",
             "usergroups_users_list": "usergroups:read", "files_upload_v2": "files:write",
             "views_open": None, "views_publish": None, "views_update": None}
    called = set()
    for path in (ROOT / "bot").rglob("*.py"):
        if "mail" in path.relative_to(ROOT / "bot").parts:
            continue  # the email channel's clients (IMAP) are not Slack's
        called |= set(re.findall(r"client\.(\w+)\(", path.read_text()))
    unknown = called - set(needs)
    assert not unknown, f"add the scopes these need: {unknown}"
    assert {needs[m] for m in called if needs[m]} <= set(BOT_SCOPES)


def test_slack_only_calls_https() -> None:
    out = CliRunner().invoke(app, ["slack", "manifest", "--url", "http://localhost:8000"])
    assert out.exit_code == 2 and "https" in out.output
