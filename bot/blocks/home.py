"""App Home: the bot's numbers this period and the pending queue by priority."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.blocks.messages import digest_numbers, line_sections, queue_line
from bot.blocks.text import HEADER_TEXT, VIEW_BLOCKS, more, plain, priority_label
from core.review.views import StatsView, SuggestionView
from core.status import Priority


def home_view(stats: StatsView, items: list[SuggestionView], *, total: int) -> View:
    """The Home tab: this period's numbers, then the queue grouped by priority (in the
    queue's own order, numbered as `/autotrain queue` numbers it)."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=plain(f"Autotrain — {stats.bot_slug}",
                                                    HEADER_TEXT), emoji=True)),
        SectionBlock(text=MarkdownTextObject(text=digest_numbers(stats))),
        DividerBlock(),
    ]
    if not items:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="Nothing to review 🎉")))
        return View(type="home", blocks=blocks)
    numbered = list(enumerate(items, 1))
    groups = [p.value for p in Priority]
    groups += sorted({v.priority for v in items} - set(groups))
    shown = 0
    room = VIEW_BLOCKS - len(blocks) - 1  # one left for "and N more"
    for level in groups:
        lines = [queue_line(n, v) for n, v in numbered if v.priority == level]
        if not lines or room < 2:
            continue
        sections, fitted = line_sections(lines, room=room - 1)
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=f"*{priority_label(level)}* ({len(lines)})")))
        blocks += sections
        room -= 1 + len(sections)
        shown += fitted
        if fitted < len(lines):
            break
    tail = more(shown, max(total, len(items)))
    if tail:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"{tail} — `/autotrain queue`")]))
    return View(type="home", blocks=blocks)
