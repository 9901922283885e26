"""Block Kit builders: pure functions from a view object to Slack blocks."""

from bot.blocks.cards import (
    actions_block_id,
    card_text,
    reject_words,
    suggestion_card,
    suggestion_of_block,
)
from bot.blocks.home import home_view
from bot.blocks.messages import (
    announcement_message,
    announcement_text,
    digest_message,
    digest_text,
    help_message,
    history_message,
    notice,
    questions_message,
    queue_message,
    stats_message,
    stats_text,
)
from bot.blocks.modals import (
    defer_modal,
    edit_modal,
    error_modal,
    reject_modal,
    settings_modal,
    test_modal,
)
from bot.blocks.text import clip, escape

__all__ = [
    "actions_block_id",
    "announcement_message",
    "announcement_text",
    "card_text",
    "clip",
    "defer_modal",
    "digest_message",
    "digest_text",
    "edit_modal",
    "error_modal",
    "escape",
    "help_message",
    "history_message",
    "home_view",
    "notice",
    "questions_message",
    "queue_message",
    "reject_modal",
    "reject_words",
    "settings_modal",
    "stats_message",
    "stats_text",
    "suggestion_card",
    "suggestion_of_block",
    "test_modal",
]
