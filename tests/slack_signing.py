"""Slack request bodies (interactions, slash commands, events) and their v0 signatures."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
APP_ID = "A1"
BOT_USER_ID = "UBOT"
VERIFICATION_TOKEN = "legacy-verification-token"  # deprecated by Slack, still sent
# Slack's real response_url is on hooks.slack.com; a test must never reach it. Pass
# `FakeSlack.response_url` to record what is posted there.
UNREACHABLE_RESPONSE_URL = "http://127.0.0.1:9/response-url-not-configured"


def signature(body: str, secret: str, timestamp: int) -> str:
    """Slack's v0 signature of `body`: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    basestring = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), basestring, hashlib.sha256).hexdigest()


def signed_headers(body: str, secret: str, *, timestamp: int | None = None,
                   content_type: str = FORM) -> dict[str, str]:
    """The headers Slack sends with `body`; `timestamp` defaults to now (Slack's verifiers
    reject one more than five minutes old)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature(body, secret, ts)}


def _user(user: str, team: str) -> dict[str, Any]:
    return {"id": user, "username": f"user-{user.lower()}", "name": f"user-{user.lower()}",
            "team_id": team}


def _team(team: str) -> dict[str, Any]:
    return {"id": team, "domain": "fake-workspace"}


def _interaction(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def _option(value: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {"text": {"type": "plain_text", "text": value, "emoji": True}, "value": value}


def _block_id_of(action_id: str, blocks: list[dict[str, Any]]) -> str | None:
    for block in blocks:
        elements = [*block.get("elements", []), block.get("accessory") or {},
                    block.get("element") or {}]
        if any(e.get("action_id") == action_id for e in elements if isinstance(e, dict)):
            return block.get("block_id")
    return None


def block_action_body(*, action_id: str, value: str | None = None, user: str = "U123",
                      team: str = "T1", channel: str = "C123",
                      message_ts: str = "1700000000.000100",
                      selected_option: str | dict[str, Any] | None = None,
                      selected_date: str | None = None, trigger_id: str = "trig-1",
                      message_blocks: list[dict[str, Any]] | None = None,
                      block_id: str | None = None,
                      response_url: str = UNREACHABLE_RESPONSE_URL) -> str:
    """The form body (`payload=<json>`) of a `block_actions` click on a message.

    A `value` makes the action a button, `selected_option` (a value, or a full option
    object) a static_select, `selected_date` ("YYYY-MM-DD") a datepicker. `block_id` defaults
    to the id of the block in `message_blocks` holding `action_id`.
    """
    blocks = message_blocks or []
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id or _block_id_of(action_id, blocks) or f"block-{action_id}",
        "action_ts": "1700000001.000200",
    }
    if selected_option is not None:
        action.update(type="static_select", selected_option=_option(selected_option))
    elif selected_date is not None:
        action.update(type="datepicker", selected_date=selected_date)
    else:
        action.update(type="button", value=value)
    return _interaction({
        "type": "block_actions",
        "user": _user(user, team),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                      "is_ephemeral": False},
        "trigger_id": trigger_id,
        "team": _team(team),
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": f"channel-{channel.lower()}"},
        "message": {"type": "message", "user": BOT_USER_ID, "bot_id": "BBOT", "ts": message_ts,
                    "text": "", "blocks": blocks},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    })


@dataclass(frozen=True)
class Select:
    """A static_select's chosen option, in `view_submission_body`'s simplified values."""

    value: str
    text: str | None = None


@dataclass(frozen=True)
class MultiSelect:
    """A multi_static_select's chosen options, in `view_submission_body`'s simplified values."""

    values: tuple[str, ...]


Simple = str | None | dt.date | Select | MultiSelect | dict[str, Any]


def _state_value(simple: Simple) -> dict[str, Any]:
    if isinstance(simple, dict):
        return simple  # already Slack's shape: {"type": ..., ...}
    if simple is None or isinstance(simple, str):
        return {"type": "plain_text_input", "value": simple}
    if isinstance(simple, dt.date):
        return {"type": "datepicker", "selected_date": simple.isoformat()}
    if isinstance(simple, Select):
        return {"type": "static_select",
                "selected_option": _option({"text": {"type": "plain_text",
                                                     "text": simple.text or simple.value,
                                                     "emoji": True},
                                            "value": simple.value})}
    return {"type": "multi_static_select",
            "selected_options": [_option(v) for v in simple.values]}


def view_state(values: dict[str, dict[str, Simple]]) -> dict[str, Any]:
    """Slack's `view.state.values` from the simplified form `view_submission_body` takes."""
    return {block_id: {action_id: _state_value(simple) for action_id, simple in actions.items()}
            for block_id, actions in values.items()}


def view_submission_body(*, callback_id: str, values: dict[str, dict[str, Simple]],
                         private_metadata: str, user: str = "U123", team: str = "T1",
                         view_id: str = "V1", blocks: list[dict[str, Any]] | None = None) -> str:
    """The form body (`payload=<json>`) of a modal's `view_submission`.

    `values` is nested as Slack nests it, `{block_id: {action_id: value}}`, with each value
    simplified:
      - a str (or None for an empty optional field) -> plain_text_input `value`
      - a `datetime.date` -> datepicker `selected_date`
      - `Select("v")` -> static_select `selected_option`
      - `MultiSelect(("a", "b"))` -> multi_static_select `selected_options`
      - a dict -> used as is (Slack's own shape, e.g. {"type": "users_select", ...})
    """
    return _interaction({
        "type": "view_submission",
        "team": _team(team),
        "user": _user(user, team),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": "trig-view-1",
        "view": {
            "id": view_id, "team_id": team, "type": "modal", "callback_id": callback_id,
            "private_metadata": private_metadata, "blocks": blocks or [],
            "title": {"type": "plain_text", "text": "Autotrain"},
            "state": {"values": view_state(values)},
            "hash": "1700000000.hash", "clear_on_close": False, "notify_on_close": False,
            "root_view_id": view_id, "previous_view_id": None, "app_id": APP_ID,
            "external_id": "", "app_installed_team_id": team, "bot_id": "BBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    })


def slash_command_body(*, text: str, command: str = "/autotrain", user: str = "U123",
                       team: str = "T1", channel: str = "C123", trigger_id: str = "trig-1",
                       response_url: str = UNREACHABLE_RESPONSE_URL) -> str:
    """The form body of a slash command, with the fields Slack sends."""
    return urlencode({
        "token": VERIFICATION_TOKEN, "team_id": team, "team_domain": "fake-workspace",
        "channel_id": channel, "channel_name": f"channel-{channel.lower()}", "user_id": user,
        "user_name": f"user-{user.lower()}", "command": command, "text": text,
        "api_app_id": APP_ID, "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": trigger_id,
    })


def event_body(event: dict[str, Any], *, team: str = "T1", event_id: str = "Ev1") -> str:
    """The JSON `event_callback` envelope of an Events API `event` (sign it with
    `content_type=JSON`)."""
    return json.dumps({
        "token": VERIFICATION_TOKEN, "team_id": team, "api_app_id": APP_ID, "event": event,
        "type": "event_callback", "event_id": event_id, "event_time": 1_700_000_000,
        "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": BOT_USER_ID,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    })
