"""Text helpers for Block Kit: Slack's limits, mrkdwn escaping, people, times and figures."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from core.bots import SLACK_USER_RE
from core.review.views import Decided

ELLIPSIS = "…"

# Slack's limits (characters), checked again by slack_sdk when a block is serialised.
SECTION_TEXT = 3000
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
INPUT_VALUE = 3000
OPTION_TEXT = 75
CONTEXT_TEXT = 2000
CONFIRM_TEXT = 300
MODAL_TITLE = 24
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100

# An escape sequence cut short by a clip ("&am"): Slack would show it as typed.
_PARTIAL_ENTITY = re.compile(r"&(?:a|am|amp|l|lt|g|gt)?$")

PRIORITY_ICONS = {"critical": "🔴", "medium": "🟠", "low": "⚪"}


def clip(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else cut to fit with a trailing "…"."""
    if len(text) <= limit:
        return text
    if limit < 1:
        return ""
    cut = _PARTIAL_ENTITY.sub("", text[: limit - 1]).rstrip()
    return cut + ELLIPSIS


def escape(text: str) -> str:
    """Text made inert for mrkdwn: no mentions (<!channel>, <@U…>) and no links (<url|x>)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed, for text shown inside a single line."""
    return " ".join(text.split())


def inline(text: str, limit: int) -> str:
    """Untrusted text as one escaped mrkdwn line of at most `limit` characters."""
    return clip(escape(one_line(text)), limit)


def quote(text: str) -> str:
    """Escaped text as a mrkdwn block quote (">" on every line)."""
    lines = escape(text.strip()).splitlines() or [""]
    return "\n".join(f">{line}" if line.strip() else ">" for line in lines)


def plain(text: str, limit: int) -> str:
    """Text for a plain_text object: whitespace collapsed, clipped, never empty."""
    return clip(one_line(text), limit) or "—"


def priority_label(priority: str) -> str:
    """"🔴 Critical", "🟠 Medium", "⚪ Low"."""
    return f"{PRIORITY_ICONS.get(priority, '⚪')} {priority.capitalize()}"


def when(at: datetime | None) -> str:
    """A time in UTC, the same for every reader: "2026-03-09 14:02 UTC"."""
    if at is None:
        return "an unknown time"
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M UTC")


def day(at: datetime | None) -> str:
    """A date in UTC: "2026-03-09"."""
    if at is None:
        return "an unknown date"
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.date().isoformat()


def person(name: str, channel: str | None) -> str:
    """Who acted, as mrkdwn: a mention for a Slack user id decided on Slack, otherwise the
    escaped name and the channel it came through ("manager@shop.example (email)")."""
    if channel == "slack" and SLACK_USER_RE.match(name):
        return f"<@{name}>"
    shown = inline(name, 200) or "someone"
    return f"{shown} ({escape(channel)})" if channel else shown


def decider(decided: Decided | None) -> str:
    return person(decided.by, decided.channel) if decided else "someone"


def percent(rate: float | None) -> str:
    """A share (0..1) as "62%"; "—" when there is nothing to divide."""
    return "—" if rate is None else f"{rate * 100:.0f}%"


def bar(rate: float | None, width: int = 10) -> str:
    """A share (0..1) as a bar of `width` cells: "▓▓▓▓▓▓░░░░"."""
    if rate is None:
        return "░" * width
    full = round(max(0.0, min(1.0, rate)) * width)
    return "▓" * full + "░" * (width - full)


def change(now: float | None, before: float | None, *, unit: str = "",
           scale: float = 1.0, digits: int = 0) -> str:
    """The change from `before` to `now`: "▲ 4 pts", "▼ 2", "no change"; "—" when either is
    unknown. `scale` turns shares into points (100)."""
    if now is None or before is None:
        return "—"
    delta = round((now - before) * scale, digits)
    if delta == 0:
        return "no change"
    arrow = "▲" if delta > 0 else "▼"
    size = f"{abs(delta):.{digits}f}"
    return f"{arrow} {size}{unit}"


def more(shown: int, total: int) -> str:
    """"and 12 more" when `total` exceeds what is shown, else ""."""
    return f"and {total - shown} more" if total > shown else ""
