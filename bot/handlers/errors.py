"""One error handler: domain errors become a short message, anything else a quotable id."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.handlers.context import clicker, reference, tell
from bot.slack_app import SlackDeps
from core.errors import DomainError

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: SlackDeps) -> None:
    @app.error
    async def on_error(error: Exception, body: dict[str, Any],
                       client: AsyncWebClient) -> None:
        who = clicker(body or {})
        if isinstance(error, DomainError):
            text = str(error)
        else:
            ref = reference()
            # The body is not logged: it holds customer text and user ids.
            log.error("slack listener failed (ref %s)", ref, exc_info=error)
            text = f"Something went wrong on our side; quote reference {ref} when reporting it."
        if who.user:
            await tell(client, who, text)
