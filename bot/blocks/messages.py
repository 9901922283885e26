"""Messages: announcements, stats, the queue, the digest, an entry's history, help, notices."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.blocks.cards import actions_block_id, suggestion_card, undo_button
from bot.blocks.text import (
    CONTEXT_TEXT,
    HEADER_TEXT,
    MESSAGE_BLOCKS,
    PRIORITY_ICONS,
    SECTION_TEXT,
    bar,
    change,
    clip,
    escape,
    inline,
    more,
    percent,
    person,
    plain,
    quote,
    when,
)
from core.bots import SLACK_USER_RE
from core.policy.notify import NotificationKind
from core.review.views import (
    AnnouncementView,
    EntryHistory,
    Figures,
    QuestionKind,
    QuestionsView,
    StatsView,
    SuggestionView,
)

ANNOUNCEMENT_ICONS: dict[str, str] = {
    NotificationKind.auto_published: "🤖",
    NotificationKind.auto_rolled_back: "⏪",
    NotificationKind.rollback_suggested: "⚠️",
    NotificationKind.deferred_returned: "⏰",
    NotificationKind.paused: "⏸️",
    NotificationKind.resumed: "▶️",
}
PERIOD_WORDS = {"day": "last 24 hours", "week": "last 7 days", "month": "last 30 days"}
PREVIOUS_WORDS = {"day": "the 24 hours before", "week": "the 7 days before",
                  "month": "the 30 days before"}
VERSIONS_SHOWN = 10
# A queue line's question, at most: the line stays one line on a phone.
QUEUE_QUESTION = 150


def notice(text: str) -> list[Block]:
    """One section of escaped text (ephemeral replies, confirmations, errors)."""
    return [_section(escape(text))]


# -- announcements -----------------------------------------------------------------------


def announcement_message(a: AnnouncementView) -> list[Block]:
    """What happened without a person, with Undo for a change published automatically."""
    blocks: list[Block] = [_section(f"{_icon(a.kind)} {escape(a.text)}")]
    if a.kind == NotificationKind.auto_published and a.suggestion_id:
        blocks.append(ActionsBlock(block_id=actions_block_id(a.suggestion_id),
                                   elements=[undo_button(a.suggestion_id)]))
    return blocks


def announcement_text(a: AnnouncementView) -> str:
    return f"{_icon(a.kind)} {inline(a.text, 300)}"


def _icon(kind: str) -> str:
    return ANNOUNCEMENT_ICONS.get(kind, "📣")


# -- stats -------------------------------------------------------------------------------


def stats_message(stats: StatsView) -> list[Block]:
    """This period against the one before, each figure with its change, and what waits."""
    period = PERIOD_WORDS.get(stats.period, str(stats.period))
    before = PREVIOUS_WORDS.get(stats.period, "the period before")
    return [
        HeaderBlock(text=PlainTextObject(
            text=plain(f"Stats — {stats.bot_slug}, {period}", HEADER_TEXT), emoji=True)),
        _section("\n".join(_figure_lines(stats.current, stats.previous))),
        _section(_pending_line(stats)),
        _context(f"Changes compare with {before} "
                 f"({stats.previous.start:%Y-%m-%d} to {stats.previous.end:%Y-%m-%d})."),
    ]


def stats_text(stats: StatsView) -> str:
    period = PERIOD_WORDS.get(stats.period, str(stats.period))
    return (f"{inline(stats.bot_slug, 100)} {period}: "
            f"{percent(stats.current.resolution_rate)} resolved by the bot, "
            f"{stats.pending} pending")


def _figure_lines(now: Figures, then: Figures) -> list[str]:
    def count(n: int, m: int) -> str:
        return f"{n} ({change(n, m)})"

    csat = "—" if now.csat is None else f"{now.csat:.1f}/5"
    return [
        f"*Conversations:* {count(now.conversations, then.conversations)}",
        f"*Resolved by the bot:* {percent(now.resolution_rate)} `{bar(now.resolution_rate)}` "
        f"({change(now.resolution_rate, then.resolution_rate, unit=' pts', scale=100)})",
        f"*Escalations:* {count(now.escalations, then.escalations)} · "
        f"{percent(now.escalation_rate)} of conversations",
        f"*CSAT:* {csat} ({change(now.csat, then.csat, digits=1)})",
        f"*Negative feedback:* {count(now.negative_feedback, then.negative_feedback)}",
        f"*Suggestions decided:* {count(now.suggestions_decided, then.suggestions_decided)}",
        f"*Published automatically:* {count(now.auto_published, then.auto_published)}",
        # Counted so nobody wonders where those questions went; never worth a card.
        f"*Kept out of the queue:* {now.one_off_questions} asked once · "
        f"{now.declined_questions} declined by agents as off-topic",
    ]


def _pending_line(stats: StatsView) -> str:
    if stats.pending == 0:
        return "*Pending now:* nothing to review 🎉"
    critical = f" ({PRIORITY_ICONS['critical']} {stats.critical_pending} critical)" \
        if stats.critical_pending else ""
    return f"*Pending now:* {stats.pending}{critical} — `/autotrain queue`"


# -- the queue and the digest ------------------------------------------------------------


def queue_line(n: int, view: SuggestionView) -> str:
    """"3. 🔴 New answer · 87/100 · *Do you ship to Canada?*"."""
    icon = PRIORITY_ICONS.get(view.priority, "⚪")
    low = " ⚠️" if view.low_confidence else ""
    draft = " · _no answer yet_" if view.needs_answer else ""
    return (f"{n}. {icon} {escape(view.kind_label)} · {view.confidence}/100{low} · "
            f"*{inline(view.question, QUEUE_QUESTION)}*{draft}")


def queue_message(items: list[SuggestionView], *, total: int) -> list[Block]:
    """The pending queue, one numbered line per suggestion, most urgent first."""
    if not items:
        return [_section("Nothing to review 🎉")]
    blocks: list[Block] = [_section(f"*{max(total, len(items))} waiting for review*, "
                                    "most urgent first")]
    sections, shown = line_sections([queue_line(i, v) for i, v in enumerate(items, 1)],
                                    room=MESSAGE_BLOCKS - 2)
    blocks += sections
    tail = more(shown, max(total, len(items)))
    if tail:
        blocks.append(_context(f"{tail} — `/autotrain queue`"))
    return blocks


def questions_message(view: QuestionsView) -> list[Block]:
    """Failed questions kept out of the queue, newest first (identifiers already redacted)."""
    what = ("asked once, with no similar question" if view.kind is QuestionKind.one_off
            else "declined by the agents with a stock refusal")
    if not view.items:
        return [_section(f"No questions {what} in the last {view.days} days.")]
    blocks: list[Block] = [_section(f"*{view.total} questions {what}* in the last "
                                    f"{view.days} days — not proposed, newest first")]
    lines = [f"• {when(q.at)} — {inline(q.question, QUEUE_QUESTION)}" for q in view.items]
    sections, shown = line_sections(lines, room=MESSAGE_BLOCKS - 2)
    blocks += sections
    hint = ("A second customer asking alike makes one a suggestion."
            if view.kind is QuestionKind.one_off else
            "They never reach the queue; `/autotrain questions` shows the ones asked once.")
    tail = more(shown, view.total)
    blocks.append(_context(f"{tail} — {hint}" if tail else hint))
    return blocks


def digest_message(stats: StatsView, items: list[SuggestionView], *, total: int) -> list[Block]:
    """The review digest: the numbers, then the most urgent suggestions as full cards, as
    many as fit in one message."""
    head: list[Block] = [
        HeaderBlock(text=PlainTextObject(
            text=plain(f"Review digest — {stats.bot_slug}", HEADER_TEXT), emoji=True)),
        _section(digest_numbers(stats)),
    ]
    room = MESSAGE_BLOCKS - len(head) - 1  # one left for "and N more"
    body: list[Block] = []
    shown = 0
    for view in items:
        card: list[Block] = [DividerBlock(), *suggestion_card(view)]
        if len(body) + len(card) > room:
            break
        body += card
        shown += 1
    blocks = head + body
    if not items and total == 0:
        blocks.append(_section("Nothing to review 🎉"))
    tail = more(shown, max(total, len(items)))
    if tail:
        blocks.append(_context(f"{tail} — `/autotrain queue`"))
    return blocks


def digest_text(stats: StatsView) -> str:
    """The notification line: everything pending, whether or not its card is in this digest
    (critical ones were posted as found)."""
    critical = f" ({stats.critical_pending} critical)" if stats.critical_pending else ""
    return f"Review digest for {inline(stats.bot_slug, 100)}: {stats.pending} pending{critical}"


def digest_numbers(stats: StatsView) -> str:
    now, then = stats.current, stats.previous
    period = PERIOD_WORDS.get(stats.period, str(stats.period))
    critical = f" ({stats.critical_pending} critical)" if stats.critical_pending else ""
    return (f"*{period.capitalize()}:* {now.conversations} conversations · "
            f"{percent(now.resolution_rate)} resolved by the bot "
            f"({change(now.resolution_rate, then.resolution_rate, unit=' pts', scale=100)}) · "
            f"{now.escalations} escalations ({change(now.escalations, then.escalations)})\n"
            f"{now.suggestions_decided} decided · {now.auto_published} published "
            f"automatically · *{stats.pending} pending*{critical}")


# -- history -----------------------------------------------------------------------------


def history_message(h: EntryHistory) -> list[Block]:
    """An entry now and the versions it had, newest first, with how to go back to one."""
    e = h.entry
    state = "✅ active" if e.active else "⏸️ off (customers do not get it)"
    category = inline(e.category, 200) if e.category else "no category"
    now = (f"*{inline(e.question, 1500)}*\n{quote(clip(e.answer, 1200))}\n"
           f"{state} · version {e.version} · {category} · "
           f"updated {when(e.updated_at)}")
    slack_users = {a.actor for a in h.audit
                   if a.channel == "slack" and SLACK_USER_RE.match(a.actor)}
    versions = sorted(h.versions, key=lambda v: v.version, reverse=True)
    lines = []
    for v in versions[:VERSIONS_SHOWN]:
        who = person(v.changed_by, "slack" if v.changed_by in slack_users else None)
        reason = f" · {inline(v.reason, 200)}" if v.reason else ""
        off = " · off" if not v.active else ""
        lines.append(f"*v{v.version}* · {who} · {when(v.changed_at)}{reason}{off}")
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="Entry history")),
        _section(now),
        _section("*Versions, newest first*\n" + ("\n".join(lines) or "none recorded")),
    ]
    tail = more(len(lines), len(versions))
    hint = f"Go back to a version: `/autotrain revert {escape(e.id)} &lt;version&gt;`"
    blocks.append(_context(f"{tail}. {hint}" if tail else hint))
    return blocks


# -- help --------------------------------------------------------------------------------

COMMANDS: list[tuple[str, str]] = [
    ("stats", "the last 7 days against the 7 days before"),
    ("queue", "what waits for review, most urgent first"),
    ("questions [declined]", "questions kept out of the queue: asked once, or declined"),
    ("history <entry>", "an entry's versions, who changed it and why"),
    ("rollback <entry>", "take back an entry's latest change"),
    ("revert <entry> <version>", "put an entry back to one of its versions"),
    ("sandbox <question>", "how the bot would answer, with the pending suggestions live"),
    ("settings", "autonomy, notifications, excluded categories, daily limit"),
    ("pause", "stop auto-training (the bot keeps answering)"),
    ("resume", "start auto-training again"),
    ("help", "this list"),
]


def help_message(*, bot_slug: str | None) -> list[Block]:
    """Every subcommand with one line, and how the bot is chosen."""
    prefix = f"/autotrain {escape(bot_slug)}" if bot_slug else "/autotrain"
    lines = [f"`{prefix} {escape(cmd)}` — {escape(words)}" for cmd, words in COMMANDS]
    example = escape(bot_slug or "voltcart")
    choosing = ("In a bot's review channel the bot is implied; elsewhere start with its name: "
                f"`/autotrain {example} stats`.")
    return [_section("*Autotrain commands*\n" + "\n".join(lines)), _context(choosing)]


# -- parts -------------------------------------------------------------------------------


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT) or " "))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(text, CONTEXT_TEXT) or " ")])


def line_sections(lines: list[str], *, room: int) -> tuple[list[Block], int]:
    """Lines packed into as few sections as Slack's 3,000 characters allow, at most `room`
    sections, and how many lines made it (the caller says how many more there are)."""
    blocks: list[Block] = []
    current: list[str] = []
    size = 0
    shown = 0
    for line in lines:
        extra = len(line) + (1 if current else 0)
        if current and size + extra > SECTION_TEXT:
            blocks.append(_section("\n".join(current)))
            current, size = [], 0
            extra = len(line)
            if len(blocks) >= room:
                return blocks, shown
        current.append(line)
        size += extra
        shown += 1
    if current and len(blocks) < room:
        blocks.append(_section("\n".join(current)))
    elif current:
        shown -= len(current)
    return blocks, shown
