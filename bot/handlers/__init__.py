"""Slack action, view and command handlers: ack, parse, one call into the review door, re-render."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

    from bot.slack_app import SlackDeps


def register(app: AsyncApp, deps: SlackDeps) -> None:
    """Every listener of the Slack app."""
    from bot.handlers import cards, commands, errors, home

    cards.register(app, deps)
    commands.register(app, deps)
    home.register(app, deps)
    errors.register(app, deps)
