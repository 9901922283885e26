"""The Slack app manifest: what to paste at api.slack.com/apps to connect autotrain."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

# What the app does with each scope (kept next to the list, so a reviewer of the install
# screen can check that nothing more is asked for).
BOT_SCOPES = {
    "chat:write": "post cards, digests and announcements; update them; reply ephemerally",
    "commands": "the /autotrain command",
    "usergroups:read": "check approver user groups (usergroups.users.list)",
    "files:write": "upload the stats chart (/autotrain stats)",
    "im:write": "answer in a direct message where there is no channel (App Home)",
}
USAGE = ("[bot] stats | queue | history <entry> | rollback <entry> | revert <entry> <version> "
         "| sandbox <question> | settings | pause | resume | help")


def manifest(base_url: str, *, name: str = "autotrain") -> dict[str, Any]:
    """The manifest with every Request URL at `{base_url}/slack/events`. Slack only calls
    public https URLs, so anything else is refused with the reason."""
    parts = urlsplit(base_url.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"{base_url!r}: Slack only calls https URLs it can reach, like "
                         "https://autotrain.example.com")
    events = f"https://{parts.netloc}{parts.path.rstrip('/')}/slack/events"
    return {
        "display_information": {
            "name": name,
            "description": "Review what your support bot learns, right in Slack.",
            "long_description": (
                "autotrain finds the questions your support chatbot could not answer and "
                "proposes answers built from your agents' replies. Approve, edit, reject, "
                "defer or test each suggestion from its card; /autotrain gives stats, the "
                "queue, an entry's history and one-step rollback."),
            "background_color": "#1d4f91",
        },
        "features": {
            # The messages tab shows the replies sent by DM (clicks from App Home), read-only.
            "app_home": {"home_tab_enabled": True, "messages_tab_enabled": True,
                         "messages_tab_read_only_enabled": True},
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [{
                "command": "/autotrain", "url": events,
                "description": "Stats, the review queue, history and rollback",
                "usage_hint": USAGE, "should_escape": False}],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": {"request_url": events, "bot_events": ["app_home_opened"]},
            "interactivity": {"is_enabled": True, "request_url": events},
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }
