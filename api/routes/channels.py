"""The review channels on demand: send a bot's digest now on every configured channel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from slack_sdk.errors import SlackApiError

from api.checked import CheckedRoute
from api.deps import REVIEWER, BotDep

router = APIRouter(prefix="/api/v1", tags=["channels"], route_class=CheckedRoute)


@router.post("/bots/{slug}/digest", dependencies=[REVIEWER])
async def send_digest(bot: BotDep, request: Request) -> dict[str, Any]:
    """Send the review digest now, whatever `notify_frequency` says: on Slack one message
    with the period's numbers and the most urgent suggestions that have no card yet; by email
    one message per recipient with the numbered queue and their own reply address. Returns
    what each channel sent, or why it sent nothing."""
    from bot.mail.digest import send_digest as send_email_digest
    from bot.slack_notify import post_digest

    slack = getattr(request.app.state, "slack", None)
    if slack is None:
        slack_sent: dict[str, Any] = {"sent": False, "reason": "Slack is off on this server "
                                      "(SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET unset)"}
    else:
        try:
            slack_sent = await post_digest(slack.review, slack.client, bot)
        except SlackApiError as exc:
            slack_sent = {"sent": False, "reason": f"Slack refused the message: "
                                                   f"{exc.response.get('error')}"}
    mail = request.app.state.mail
    email_sent = await send_email_digest(mail.review, mail.settings, mail.mailer, bot)
    return {"slack": slack_sent, "email": email_sent}
