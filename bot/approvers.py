"""Who may decide from Slack: a bot's approvers and the members of its approver user groups."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core.review import BotRef

log = logging.getLogger(__name__)

# A user-group's members are cached this long: a removed approver loses the right within a
# minute, and a burst of clicks costs one usergroups.users.list call.
GROUP_TTL_SECONDS = 60.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""  # why not, in words the clicker can act on


class Approvers:
    """Checks the request's user against the bot's settings, never a button's payload."""

    def __init__(self, *, ttl: float = GROUP_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def check(self, client: AsyncWebClient, bot: BotRef, user_id: str) -> Verdict:
        settings = bot.settings
        if not settings.slack_approvers and not settings.slack_approver_groups:
            return Verdict(False, f"No one may decide {bot.name}'s suggestions from Slack yet: "
                                  "an admin sets `slack_approvers` (Slack user ids) or "
                                  "`slack_approver_groups` with PATCH "
                                  f"/api/v1/bots/{bot.slug}/settings.")
        if user_id in settings.slack_approvers:
            return Verdict(True)
        for group in settings.slack_approver_groups:
            if user_id in await self._members(client, group):
                return Verdict(True)
        return Verdict(False, f"Only {bot.name}'s approvers can decide its suggestions; ask "
                              "an admin to add you to `slack_approvers`.")

    async def _members(self, client: AsyncWebClient, group: str) -> frozenset[str]:
        now = time.monotonic()
        cached = self._groups.get(group)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        try:
            resp = await client.usergroups_users_list(usergroup=group)
            members = frozenset(str(u) for u in resp.get("users") or [])
        except SlackApiError as exc:
            # Fail closed: an unreadable group grants nothing (and is not cached, so the
            # next click asks again).
            log.warning("usergroups.users.list failed for %s: %s", group,
                        exc.response.get("error"))
            return frozenset()
        self._groups[group] = (now, members)
        return members
