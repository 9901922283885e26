"""Review commands read from the new text of an email reply: "approve 1 3", "reject 2 tone"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from core.policy.commands import RejectReason

Action = Literal["approve", "reject", "edit", "defer", "undo"]
Scope = Literal["all", "critical", "medium", "low"]

MAX_ITEM = 999
DEFAULT_DEFER_DAYS = 7
MAX_DEFER_DAYS = 366


@dataclass(frozen=True)
class ReplyCommand:
    action: Action
    item: int | None  # the digest's item number; None with a scope
    scope: Scope | None = None  # only approve takes one
    reason: str | None = None  # reject: a RejectReason value
    comment: str | None = None  # reject: free text that is not a reason
    answer: str | None = None  # edit: the new answer
    until: date | None = None  # defer: a date
    days: int | None = None  # defer: a relative period

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "item": self.item}
        for key in ("scope", "reason", "comment", "answer", "days"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.until is not None:
            out["until"] = self.until.isoformat()
        return out


@dataclass(frozen=True)
class ReadReply:
    commands: list[ReplyCommand]
    problems: list[str] = field(default_factory=list)


# --- words -----------------------------------------------------------------------------------

_VERBS: dict[str, Action] = {
    **dict.fromkeys(("approve", "approved", "approves", "yes", "ok", "okay", "lgtm"), "approve"),
    **dict.fromkeys(("reject", "rejected", "rejects", "decline", "declined", "no", "nope"),
                    "reject"),
    **dict.fromkeys(("edit", "edited"), "edit"),
    **dict.fromkeys(("defer", "deferred", "later", "snooze", "snoozed", "postpone"), "defer"),
    **dict.fromkeys(("undo", "revert", "reverted", "rollback"), "undo"),
}
# Words people also use in ordinary sentences ("Ok, thanks", "No worries", "Later today…") only
# count as a command when an item number follows, so such a line is neither read nor a problem.
_WEAK = {"yes", "ok", "okay", "lgtm", "no", "nope", "later"}
_VERB = "|".join(sorted((re.escape(v) for v in _VERBS), key=len, reverse=True)) + r"|roll\s+back"
_STRONG_VERB = "|".join(sorted((re.escape(v) for v in _VERBS if v not in _WEAK), key=len,
                               reverse=True)) + r"|roll\s+back"

# "item 2", "items 1 and 3", "no. 2", "#2": words people put in front of numbers.
_ITEM_WORD = r"(?:(?:items?|suggestions?|numbers?|nos?\.|nr\.?|n°)\s*)"
_NUM = r"#?\s*\d+"
_ITEM_START = rf"(?:{_ITEM_WORD}?#?\s*\d)"
_HEAD_VERB_FIRST = re.compile(rf"(?P<verb>{_VERB})\b", re.IGNORECASE)
# What makes a line (or the rest of one) a command: a strong verb; a weak verb followed by an item
# or "all"; or item numbers followed by a verb ("1 approve", "#2: reject wrong info").
_COMMAND_START = re.compile(
    rf"(?:(?:{_STRONG_VERB})\b"
    rf"|(?:{_VERB})\b[\s:=-]*(?:{_ITEM_START}|all\b)"
    rf"|{_ITEM_WORD}?{_NUM}(?:\s*(?:[-–,&+/]|and|to)\s*{_NUM})*\s*[.):,-]?\s*(?:{_VERB})\b)",
    re.IGNORECASE)
# Inside free text (a reject comment) a new command starts only after a separator and only when
# an item follows, so "reject 2 because we never approve that" stays one comment.
_NEXT_COMMAND = re.compile(
    rf"\s*(?:[,;.]|\band\b|&|\bthen\b|\balso\b)+\s*(?=(?:{_VERB})\b[\s:=-]*(?:{_ITEM_START}|all\b)"
    rf"|{_ITEM_WORD}?{_NUM}\s*[.):,-]?\s*(?:{_VERB})\b)",
    re.IGNORECASE)
_SEPARATOR = re.compile(r"\s*(?:[,;]|\band\b|&|\bthen\b|\balso\b|\bplus\b)+\s*", re.IGNORECASE)
# Bullets, "please", and a greeting or thanks before a command ("Hi team, approve 1").
_LEAD = re.compile(
    r"^\s*(?:[-*•·–]+\s*)?"
    r"(?:(?:hi|hello|hey|dear|thanks|thank\s+you|great|perfect|cool|ok|okay|yes)(?:\s+\w+)?"
    r"\s*[,!.:;]\s*)?"
    r"(?:(?:please|pls|plz|kindly|also|and|then)\b[\s,]*)*", re.IGNORECASE)
# What may follow a command without making it unreadable: "approve 1 3 please", "ok 2, thanks!".
_FILLER = re.compile(
    r"(?:\s|[!.,;:)]|:\)|please|pls|plz|thanks|thank\s+you|thx|ty|too|as\s+well|now|both|asap|"
    r"for\s+now|looks\s+good|lgtm|great|cheers|ones?|items?|suggestions?|of\s+them|them)*$",
    re.IGNORECASE)
_CLOSING = re.compile(
    r"^(?:thanks|thank\s+you|thx|ty|many\s+thanks|cheers|best|regards|best\s+regards|"
    r"kind\s+regards|warm\s+regards|br|cordially|sincerely|ta)(?:\s+(?:a\s+lot|again|so\s+much))?"
    r"[\s,.!]*$", re.IGNORECASE)

_SCOPES: dict[str, Scope] = {"critical": "critical", "medium": "medium", "low": "low"}
_REASONS: list[tuple[RejectReason, re.Pattern[str]]] = [
    (RejectReason.wrong_information, re.compile(
        r"wrong\s+info(?:rmation)?|incorrect(?:\s+info(?:rmation)?)?|inaccurate|factually\s+wrong|"
        r"not\s+(?:correct|accurate|true|right)|outdated|out\s+of\s+date|wrong|false", re.I)),
    (RejectReason.not_a_gap, re.compile(
        r"not\s+a\s+(?:real\s+)?gap|no\s+gap|not\s+needed|unnecessary|not\s+necessary|irrelevant|"
        r"not\s+relevant", re.I)),
    (RejectReason.duplicate, re.compile(
        r"duplicate[sd]?|dup(?:e|licated)?|already\s+(?:exists|covered|answered|there)", re.I)),
    (RejectReason.tone, re.compile(
        r"(?:bad|wrong|poor)\s+tone|tone(?:\s+of\s+voice)?|rude|too\s+(?:casual|formal)|"
        r"off[-\s]brand", re.I)),
    (RejectReason.sensitive, re.compile(
        r"sensitive|confidential|private|privacy|legal(?:\s+issue)?|internal\s+only", re.I)),
    (RejectReason.other, re.compile(r"other", re.I)),
]
_REASON_LEAD = re.compile(
    r"^[\s:=,.;–—-]*(?:(?:because|since|as|reason\s*[:=]?|due\s+to)\s+)?"
    r"(?:(?:it'?s|it\s+is|this\s+is|that'?s|that\s+is|its)\s+)?(?:(?:a|an|the)\s+)?", re.I)

_MONTHS = {name: n for n, names in enumerate(
    (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
     ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
     ("oct", "october"), ("nov", "november"), ("dec", "december")), start=1) for name in names}
_WEEKDAYS = {name: n for n, names in enumerate(
    (("mon", "monday"), ("tue", "tues", "tuesday"), ("wed", "wednesday"), ("thu", "thur", "thurs",
     "thursday"), ("fri", "friday"), ("sat", "saturday"), ("sun", "sunday"))) for name in names}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAY = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_UNITS = {"d": 1, "day": 1, "days": 1, "w": 7, "wk": 7, "wks": 7, "week": 7, "weeks": 7,
          "m": 30, "mo": 30, "month": 30, "months": 30}
_UNIT = "|".join(sorted(_UNITS, key=len, reverse=True))
_PERIOD = re.compile(
    rf"\s*(?:(?:for|by|in|until|till|til|to|on)\s+)?(?:"
    rf"(?P<n>\d+)\s*(?P<unit>{_UNIT})\b"
    rf"|(?:a|one)\s+(?P<one>day|week|month)\b"
    rf"|(?P<tomorrow>tomorrow)\b"
    rf"|next\s+(?P<next>week|month)\b"
    rf"|(?P<iy>\d{{4}})-(?P<im>\d{{1,2}})-(?P<id>\d{{1,2}})\b"
    rf"|(?P<dd>\d{{1,2}})(?:st|nd|rd|th)?\.?\s+(?:of\s+)?(?P<dm>{_MONTH})\b\.?(?:,?\s+(?P<dy>\d{{4}}))?"
    rf"|(?P<mm>{_MONTH})\b\.?\s+(?P<md>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<my>\d{{4}}))?"
    rf"|(?P<ed>\d{{1,2}})\.(?P<em>\d{{1,2}})(?:\.(?P<ey>\d{{4}}|\d{{2}})?)?(?![\d.])"
    rf"|(?:next\s+)?(?P<wd>{_WEEKDAY})\b"
    rf")", re.IGNORECASE)
_UNTIL_ONLY = re.compile(r"\s*(?:until|till|til)\b", re.IGNORECASE)


class _Unreadable(Exception):
    """Why one command on a line cannot be read; the line is reported, nothing of it applied."""


# --- reading ---------------------------------------------------------------------------------


def read_commands(text: str, *, today: date) -> ReadReply:
    """The commands written in `text` (only the new text of a reply: quoted history must already be
    gone) and the lines that look like commands but could not be read."""
    commands: list[ReplyCommand] = []
    problems: list[str] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        found, problem, edit_open = _read_line(line, today=today)
        if problem:
            problems.append(problem)
        if edit_open is not None:
            # The answer of "edit 4" goes on until the next command line or the end.
            body: list[str] = [edit_open[1]] if edit_open[1] else []
            while i < len(lines) and not starts_command(lines[i]):
                body.append(lines[i])
                i += 1
            answer = _answer("\n".join(body))
            if answer:
                found.append(ReplyCommand("edit", edit_open[0], answer=answer))
            else:
                problems.append(f'"{_quote(line)}": no new answer after edit {edit_open[0]}')
        commands.extend(found)
    return _first_per_item(commands, problems)


def starts_command(line: str) -> bool:
    """Whether a line begins like a command (what ends an edit's multi-line answer)."""
    return bool(_COMMAND_START.match(_LEAD.sub("", line, count=1)))


def _read_line(line: str, *, today: date
               ) -> tuple[list[ReplyCommand], str | None, tuple[int, str] | None]:
    """Commands on one line, a problem with it, and an edit whose answer starts here (item,
    text on this line)."""
    s = _LEAD.sub("", line, count=1).rstrip()
    if not _COMMAND_START.match(s):
        return [], None, None
    out: list[ReplyCommand] = []
    pos = 0
    try:
        while True:
            segment_start = pos
            action, items, scope, pos = _head(s, pos)
            if action == "edit":
                if scope is not None or len(items) != 1:
                    raise _Unreadable("edit takes exactly one item number")
                # An edit's answer is the rest of the line (and the lines after): never split.
                return out, None, (items[0], s[pos:].strip().lstrip(":：=-–— ").strip())
            if action == "reject":
                m = _NEXT_COMMAND.search(s, pos)
                free, pos = (s[pos:m.start()], m.end()) if m else (s[pos:], len(s))
                reason, comment = _reason(free)
                out += [ReplyCommand("reject", n, reason=reason, comment=comment) for n in items]
            elif action == "defer":
                until, days, pos = _period(s, pos, today=today)
                out += [ReplyCommand("defer", n, until=until, days=days) for n in items]
            elif scope is not None:
                out.append(ReplyCommand("approve", None, scope=scope))
            else:
                out += [ReplyCommand(action, n) for n in items]
            if pos >= len(s) or _FILLER.fullmatch(s, pos):
                return out, None, None
            sep = _SEPARATOR.match(s, pos)
            after = sep.end() if sep else _skip(r"\s*", s, pos)
            if not _COMMAND_START.match(s, after):
                raise _Unreadable(f'"{s[pos:].strip()}" is not understood after '
                                  f'"{s[segment_start:pos].strip()}"')
            pos = after
    except _Unreadable as why:
        # Nothing of a line with an unreadable part is applied: the rest may depend on it.
        return [], f'"{_quote(line)}": {why}', None


def _head(s: str, pos: int) -> tuple[Action, list[int], Scope | None, int]:
    """The verb and its items (or approve's scope), in either order, from `pos`."""
    m = _HEAD_VERB_FIRST.match(s, pos)
    if m:
        action = _verb(m.group("verb"))
        pos = m.end()
        pos = _skip(r"[\s:=-]*", s, pos)
        scope, pos = _scope(s, pos)
        if scope is not None:
            if action != "approve":
                raise _Unreadable(f'only approve can take "{scope}"')
            return action, [], scope, pos
        # An edit names one item; what follows is the answer, even when it starts with a number.
        items, pos = _items(s, pos, verb=m.group("verb"), single=action == "edit")
        return action, items, None, pos
    items, pos = _items(s, pos, verb=None)
    pos = _skip(r"\s*[.):,-]?\s*", s, pos)
    m = _HEAD_VERB_FIRST.match(s, pos)
    if not m:  # cannot happen after _COMMAND_START matched; kept for safety
        raise _Unreadable("no command word after the item numbers")
    return _verb(m.group("verb")), items, None, m.end()


def _verb(word: str) -> Action:
    return _VERBS[re.sub(r"\s+", "", word.lower())]


def _scope(s: str, pos: int) -> tuple[Scope | None, int]:
    m = re.compile(r"(?:all\b(?:\s+(?:the|of\s+the))?\s*(?P<p>critical|medium|low)?\b"
                   r"|(?P<q>critical|medium|low)\b)", re.I).match(s, pos)
    if not m:
        return None, pos
    word = (m.group("p") or m.group("q") or "").lower()
    return (_SCOPES[word] if word else "all"), m.end()


_ITEM_RE = re.compile(
    rf"{_ITEM_WORD}?#?\s*(?P<a>\d+)(?:\s*(?:-|–|—|to|through|thru)\s*#?\s*(?P<b>\d+))?"
    rf"(?![\d\w])(?!\s*(?:{_UNIT})\b)(?![-.]\d)", re.IGNORECASE)


def _items(s: str, pos: int, *, verb: str | None, single: bool = False) -> tuple[list[int], int]:
    """Item numbers from `pos`: "1 3", "1, 3 and 5", "1-3", "#2"."""
    items: list[int] = []
    while not (single and items):
        at = _skip(r"\s*(?:,|\band\b|&|\+|/)?\s*", s, pos) if items else pos
        if items and _PERIOD.match(s, at):  # "defer 5 1w": the period is not an item
            break
        m = _ITEM_RE.match(s, at)
        if not m:
            break
        a, b = int(m.group("a")), int(m.group("b") or m.group("a"))
        for n in (a, b):
            if not 1 <= n <= MAX_ITEM:
                raise _Unreadable(f"{n} is not an item number (items are 1 to {MAX_ITEM})")
        if b < a:
            raise _Unreadable(f"{a}-{b} is not a range of items")
        items.extend(range(a, b + 1))
        pos = m.end()
    if not items:
        word = re.compile(r"\s*([^\s,;]+)").match(s, pos)
        what = word.group(1) if word else ""
        named = f"after {verb}" if verb else ""
        raise _Unreadable(f"{what} is not an item number" if what
                          else f"no item number {named}".rstrip())
    return items, pos


def _skip(pattern: str, s: str, pos: int) -> int:
    m = re.compile(pattern).match(s, pos)
    return m.end() if m else pos


def _reason(free: str) -> tuple[str, str | None]:
    """A reject's reason (RejectReason value) and comment from the free text after its items."""
    text = free.strip()
    lead = _REASON_LEAD.match(text)
    rest = text[lead.end():] if lead else text
    for reason, pattern in _REASONS:
        m = pattern.match(rest)
        if m and (m.end() == len(rest) or not rest[m.end()].isalnum()):
            comment = rest[m.end():].strip(" \t:=,.;–—-").strip()
            return reason.value, comment or None
    comment = text.strip(" \t:=,;–—-").strip()
    return RejectReason.other.value, comment or None


def _period(s: str, pos: int, *, today: date) -> tuple[date | None, int | None, int]:
    """A defer's date or days from `pos`; a week when none is given."""
    m = _PERIOD.match(s, pos)
    if not m:
        if _UNTIL_ONLY.match(s, pos):
            raise _Unreadable("no date after until (write e.g. 2026-12-24, 24 Dec or 1w)")
        return None, DEFAULT_DEFER_DAYS, pos
    g = m.groupdict()
    days: int | None = None
    until: date | None = None
    if g["n"]:
        days = int(g["n"]) * _UNITS[g["unit"].lower()]
    elif g["one"]:
        days = _UNITS[g["one"].lower()]
    elif g["tomorrow"]:
        days = 1
    elif g["next"]:
        days = _UNITS[g["next"].lower()]
    elif g["wd"]:
        ahead = (_WEEKDAYS[g["wd"].lower()] - today.weekday()) % 7 or 7
        until = today + timedelta(days=ahead)
    else:
        until = _date(g, today=today, text=m.group(0).strip())
    if days is not None and not 1 <= days <= MAX_DEFER_DAYS:
        raise _Unreadable(f"{m.group(0).strip()} is not between a day and a year")
    if until is not None and not today < until <= today + timedelta(days=MAX_DEFER_DAYS):
        raise _Unreadable(f"{m.group(0).strip()} is not a date within the next year")
    return until, days, m.end()


def _date(g: dict[str, str | None], *, today: date, text: str) -> date:
    if g["iy"]:
        y, mo, d = int(g["iy"]), int(g["im"] or 0), int(g["id"] or 0)
        explicit_year = True
    elif g["dd"]:
        y, mo, d = int(g["dy"] or today.year), _MONTHS[(g["dm"] or "").lower()], int(g["dd"])
        explicit_year = bool(g["dy"])
    elif g["mm"]:
        y, mo, d = int(g["my"] or today.year), _MONTHS[(g["mm"] or "").lower()], int(g["md"] or 0)
        explicit_year = bool(g["my"])
    else:
        year = g["ey"]
        y = (2000 + int(year) if len(year) == 2 else int(year)) if year else today.year
        mo, d = int(g["em"] or 0), int(g["ed"] or 0)
        explicit_year = bool(year)
    try:
        until = date(y, mo, d)
        if not explicit_year and until <= today:
            # "24 Dec" written in January means the coming one.
            until = date(y + 1, mo, d)
    except ValueError:
        raise _Unreadable(f"{text} is not a date") from None
    return until


def _answer(text: str) -> str:
    """An edit's new answer: surrounding blank lines and a trailing "Thanks"/"Cheers, Ann" gone."""
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    filled = [n for n, line in enumerate(lines) if line.strip()]
    if filled and _CLOSING.match(lines[filled[-1]].strip()):
        del lines[filled[-1]:]
    elif (len(filled) >= 2 and _CLOSING.match(lines[filled[-2]].strip())
          and len(lines[filled[-1]].split()) <= 3 and not lines[filled[-1]].rstrip().endswith(".")):
        del lines[filled[-2]:]  # "Thanks,\nAnna"
    return "\n".join(lines).strip()


def _first_per_item(commands: list[ReplyCommand], problems: list[str]) -> ReadReply:
    """One command per item (the first); a later different one is reported, not applied."""
    kept: list[ReplyCommand] = []
    by_item: dict[object, ReplyCommand] = {}
    for command in commands:
        key: object = command.item if command.item is not None else ("scope", command.scope)
        first = by_item.get(key)
        if first is None:
            by_item[key] = command
            kept.append(command)
        elif first != command:
            problems.append(f'"{_describe(command)}": item {command.item} already has '
                            f'"{_describe(first)}" earlier in this reply; the first one counts')
    return ReadReply(commands=kept, problems=problems)


def _describe(command: ReplyCommand) -> str:
    target = str(command.item) if command.item is not None else f"all {command.scope}".replace(
        "all all", "all")
    extra = command.reason or (command.until.isoformat() if command.until else None) or (
        f"{command.days}d" if command.days else None)
    return " ".join(part for part in (command.action, target, extra) if part)


def _quote(line: str, limit: int = 80) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
