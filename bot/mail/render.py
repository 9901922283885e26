"""Email rendering: the review digest and the reply confirmation as subject, HTML and plain text."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bot.blocks.cards import SAMPLES_SHOWN, VARIANTS_SHOWN
from bot.blocks.messages import ANNOUNCEMENT_ICONS, PERIOD_WORDS, PREVIOUS_WORDS
from bot.blocks.text import PRIORITY_ICONS, change, more, one_line, percent
from bot.mail.message import atom
from core.pipeline.proposals import LOW_CONFIDENCE
from core.policy.commands import RejectReason
from core.policy.notify import NotificationKind
from core.review.views import AnnouncementView, Figures, StatsView, SuggestionView

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"

# The plain-text part is wrapped here: under the 78 columns RFC 5322 asks for, with room
# for the "> " a reply quotes it with.
TEXT_WIDTH = 76

# What a manager types after "reject N"; the words the reply parser reads as each reason.
REJECT_REASON_WORDS: dict[RejectReason, str] = {
    RejectReason.wrong_information: "wrong info",
    RejectReason.not_a_gap: "not a gap",
    RejectReason.sensitive: "sensitive",
    RejectReason.duplicate: "duplicate",
    RejectReason.tone: "tone",
    RejectReason.other: "other",
}
REPLY_EXAMPLES = ("approve 1 3", "reject 2 wrong info", "edit 4: new answer", "defer 5 1w",
                  "undo 7")

PRIORITY_COLORS = {"critical": "#e01e5a", "medium": "#d08700", "low": "#616061"}


@dataclass(frozen=True)
class DigestItem:
    """One numbered suggestion of a digest."""

    number: int
    view: SuggestionView
    # One-click link pages (a GET shows a confirmation page); None when links are off.
    approve_url: str | None
    reject_url: str | None


@dataclass(frozen=True)
class DigestAnnouncement:
    """One numbered announcement; numbers continue after the items so "undo 7" is unambiguous."""

    number: int
    view: AnnouncementView
    undo_url: str | None  # only for an undoable announcement, when links are on

    @property
    def undoable(self) -> bool:
        """A change published automatically can be taken back by "undo N" (with or without
        a link)."""
        return self.view.kind == NotificationKind.auto_published and \
            self.view.suggestion_id is not None


@dataclass(frozen=True)
class Digest:
    digest_id: str  # stable id of this digest (goes in Message-ID and the image's Content-ID)
    bot_name: str
    bot_slug: str
    timezone: str
    generated_at: datetime
    stats: StatsView  # this period against the previous one
    items: list[DigestItem]  # in the order shown (the caller sorts by priority)
    announcements: list[DigestAnnouncement]
    more: int  # pending suggestions not in this digest
    chart_png: bytes | None  # resolution by week, embedded inline by CID
    reply_enabled: bool  # the recipient has a reply address: show the reply commands


@dataclass(frozen=True)
class EmailContent:
    subject: str
    html: str
    text: str
    # content-id (without <>) → PNG bytes, referenced as cid: in the html.
    images: dict[str, bytes]


@dataclass(frozen=True)
class ConfirmationLine:
    """What one command of a reply did: ("approve 1", True, "Approved: … — live now")."""

    command: str
    ok: bool
    message: str


@dataclass(frozen=True)
class Confirmation:
    bot_name: str
    bot_slug: str
    subject: str  # the subject of the reply it answers
    lines: list[ConfirmationLine]  # one per command, in the order written
    problems: list[str]  # lines that looked like commands but could not be read
    pending: int  # how many still wait for review
    notice: str | None = None  # a whole-message refusal instead of lines (then lines are empty)


@dataclass(frozen=True)
class _Figure:
    """One row of the numbers table, the same words in both parts."""

    label: str
    value: str
    change: str
    tone: str  # good | bad | same: the colour of the change in HTML


_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    # HTML is escaped; the plain-text part must not be (it would show &#39; for quotes).
    autoescape=lambda name: name is not None and name.endswith(".html.j2"),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _wrap(text: str, indent: int = 0, first: str | None = None,
          width: int = TEXT_WIDTH) -> str:
    """Text wrapped to `width` columns under `indent` spaces, its own line breaks kept
    (answers have paragraphs); `first` replaces the first line's indent (a label). URLs and
    other long words are never broken, so they stay clickable."""
    pad = " " * indent
    lines: list[str] = []
    lead = pad if first is None else first
    for paragraph in text.strip().splitlines() or [""]:
        words = " ".join(paragraph.split())
        lines.append(textwrap.fill(words, width=width, initial_indent=lead,
                                   subsequent_indent=pad, break_long_words=False,
                                   break_on_hyphens=False) if words else "")
        lead = pad
    return "\n".join(line.rstrip() for line in lines)


def _quoted(texts: list[str]) -> str:
    return " · ".join(f"“{one_line(t)}”" for t in texts)


def _item_commands(item: DigestItem) -> list[str]:
    """The reply commands that fit one item: a draft without an answer is approved by "edit"."""
    n = item.number
    approve = [] if item.view.needs_answer else [f"approve {n}"]
    return [*approve, f"reject {n} {REJECT_REASON_WORDS[RejectReason.wrong_information]}",
            f"edit {n}: …", f"defer {n} 1w"]


_env.filters.update(wrap=_wrap, one_line=one_line, quoted=_quoted)
_env.globals.update(
    PRIORITY_ICONS=PRIORITY_ICONS, PRIORITY_COLORS=PRIORITY_COLORS,
    LOW_CONFIDENCE=LOW_CONFIDENCE, VARIANTS_SHOWN=VARIANTS_SHOWN, SAMPLES_SHOWN=SAMPLES_SHOWN,
    REPLY_EXAMPLES=REPLY_EXAMPLES, REJECT_REASONS=list(REJECT_REASON_WORDS.values()),
    FONT="-apple-system, BlinkMacSystemFont, Segoe UI, Roboto, Helvetica, Arial, sans-serif",
    RULE="=" * TEXT_WIDTH, THIN_RULE="-" * TEXT_WIDTH, item_commands=_item_commands,
)


def render_digest(digest: Digest) -> EmailContent:
    """The digest email. Generated text (answers, questions, samples) is untrusted: the HTML
    template autoescapes it; the plain text shows it as written, indented under its label."""
    numbers = [i.number for i in digest.items] + [a.number for a in digest.announcements]
    if len(set(numbers)) != len(numbers):
        # A reply's "approve 3" must mean one thing.
        raise ValueError(f"digest {digest.digest_id}: numbers repeat: {numbers}")
    local = _local(digest.generated_at, digest.timezone)
    waiting = len(digest.items) + digest.more
    # Critical ones past the digest's limit are still counted (stats see the whole queue).
    critical = max(sum(i.view.priority == "critical" for i in digest.items),
                   min(digest.stats.critical_pending, waiting))
    summary = _summary(waiting, critical, len(digest.announcements))
    name = one_line(digest.bot_name)
    subject = f"[autotrain] {name}: {summary} — digest {local:%Y-%m-%d}"
    cid = f"resolution-chart.{atom(digest.digest_id) or 'digest'}@autotrain"
    images = {cid: digest.chart_png} if digest.chart_png else {}
    stats = digest.stats
    ctx: dict[str, Any] = {
        "d": digest, "name": name, "summary": summary,
        "date": f"{local:%A} {local.day} {local:%B %Y}",
        "period": PERIOD_WORDS.get(stats.period, str(stats.period)),
        "previous": PREVIOUS_WORDS.get(stats.period, "the period before"),
        "figures": _figures(stats.current, stats.previous),
        "headline": _headline(stats),
        "more_line": f"{more(0, digest.more)} waiting" if digest.more > 0 else "",
        "chart_cid": cid if images else None,
        "icons": ANNOUNCEMENT_ICONS,
    }
    ctx["preheader"] = f"{summary} · {ctx['headline']}"
    return EmailContent(subject=subject,
                        html=_env.get_template("mail_digest.html.j2").render(ctx),
                        text=_env.get_template("mail_digest.txt.j2").render(ctx),
                        images=images)


def render_confirmation(c: Confirmation) -> EmailContent:
    """The answer to a reply: what each command did (✓/✗), what could not be read, and how
    many still wait; or the one notice that refused the whole reply."""
    subject = one_line(c.subject) or f"[autotrain] {one_line(c.bot_name)}"
    # Mail clients thread on the subject too, and "Re: Re:" helps nobody.
    if not re.match(r"re\s*:", subject, flags=re.IGNORECASE):
        subject = f"Re: {subject}"
    done = sum(line.ok for line in c.lines)
    failed = len(c.lines) - done
    if c.notice:
        preheader = one_line(c.notice)
    else:
        parts = [f"{done} done"] + ([f"{failed} not done"] if failed else [])
        if c.problems:
            parts.append(f"{len(c.problems)} not understood")
        parts.append(_waiting(c.pending))
        preheader = " · ".join(parts)
    ctx: dict[str, Any] = {"c": c, "name": one_line(c.bot_name), "preheader": preheader,
                           "waiting": _waiting(c.pending)}
    return EmailContent(subject=subject,
                        html=_env.get_template("mail_confirmation.html.j2").render(ctx),
                        text=_env.get_template("mail_confirmation.txt.j2").render(ctx),
                        images={})


# -- parts -------------------------------------------------------------------------------


def _local(at: datetime, timezone: str) -> datetime:
    """`at` in the bot's timezone, so "digest 2026-12-01" is the manager's date."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    try:
        return at.astimezone(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        # Settings validate the zone; one renamed since must not stop the digest.
        return at.astimezone(UTC)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary(waiting: int, critical: int, updates: int) -> str:
    """"12 to review (3 critical), 2 updates"."""
    head = f"{waiting} to review" if waiting else "nothing to review"
    if critical:
        head += f" ({critical} critical)"
    if updates:
        head += f", {_plural(updates, 'update')}"
    return head


def _waiting(pending: int) -> str:
    return f"{pending} still waiting for review" if pending else "nothing else waits for review"


def _headline(stats: StatsView) -> str:
    now, then = stats.current, stats.previous
    return (f"{percent(now.resolution_rate)} resolved by the bot "
            f"({change(now.resolution_rate, then.resolution_rate, unit=' pts', scale=100)})")


def _tone(now: float | None, before: float | None, *, higher_is_better: bool | None) -> str:
    if now is None or before is None or now == before or higher_is_better is None:
        return "same"
    return "good" if (now > before) == higher_is_better else "bad"


def _figures(now: Figures, then: Figures) -> list[_Figure]:
    """The period's numbers, each with its change against the period before."""

    def count(label: str, a: int, b: int, better: bool | None, extra: str = "") -> _Figure:
        return _Figure(label, f"{a}{extra}", change(a, b), _tone(a, b, higher_is_better=better))

    csat = "—" if now.csat is None else f"{now.csat:.1f}/5"
    return [
        _Figure("Resolved by the bot", percent(now.resolution_rate),
                change(now.resolution_rate, then.resolution_rate, unit=" pts", scale=100),
                _tone(now.resolution_rate, then.resolution_rate, higher_is_better=True)),
        count("Conversations", now.conversations, then.conversations, None),
        count("Escalations", now.escalations, then.escalations, False,
              f" ({percent(now.escalation_rate)})" if now.escalation_rate is not None else ""),
        _Figure("CSAT", csat, change(now.csat, then.csat, digits=1),
                _tone(now.csat, then.csat, higher_is_better=True)),
        count("Negative feedback", now.negative_feedback, then.negative_feedback, False),
        count("Suggestions decided", now.suggestions_decided, then.suggestions_decided, None),
        count("Published automatically", now.auto_published, then.auto_published, None),
        count("Asked once (not proposed)", now.one_off_questions, then.one_off_questions, None),
        count("Declined by agents (off-topic)", now.declined_questions,
              then.declined_questions, None),
    ]
