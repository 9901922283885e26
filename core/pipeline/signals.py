"""Stage 1 of the cycle: what went wrong (or right) in each conversation, from its transcript.

Rules (also in docs/signals.md):
- handover: an agent message appears after the customer started talking to the bot;
- fallback: a bot message with no entry_id whose text reads like "I don't know" / "let me
  connect you";
- unanswered: the bot handed over or gave a fallback for a customer question;
- negative feedback: a thumbs-down on a bot answer, CSAT 1-2, or, after a bot answer, the
  customer complaining ("that doesn't answer my question"), asking for a human, or asking
  the same thing again in other words;
- abandoned: the last message is a bot answer, the customer never replied, there was no
  handover and no positive feedback (thumbs-up or CSAT 4-5);
- resolved automatically: the bot answered, with no handover, no negative feedback and no
  abandonment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FALLBACK_RE = re.compile(
    r"\b(not sure|don'?t know|do not know|didn'?t (?:understand|get)|did not understand|"
    r"couldn'?t find|could not find|can'?t help|cannot help|unable to help|rephrase|"
    r"connect you|transfer(?:ring)? you|hand(?:ing)? you over|pass you to|"
    r"a (?:human|teammate|colleague|agent) will|let me get (?:a|someone))\b",
    re.IGNORECASE,
)
HUMAN_REQUEST_RE = re.compile(
    r"\b(human|real person|an agent|a person|representative|someone real|speak to someone|"
    r"talk to someone|live agent|customer service)\b",
    re.IGNORECASE,
)
COMPLAINT_RE = re.compile(
    r"(doesn'?t answer|does not answer|didn'?t answer|not what i asked|not helpful|"
    r"unhelpful|useless|that'?s wrong|that is wrong|not (?:my|the) question|"
    r"you(?:'re| are) not understanding|doesn'?t help|does not help|didn'?t help|"
    r"still (?:don'?t|do not) know|\bno\b[,.!]? that'?s not)",
    re.IGNORECASE,
)
THANKS_RE = re.compile(r"\b(thanks?|thank you|thx|ty|cheers|great|perfect|awesome|got it)\b",
                       re.IGNORECASE)
MIN_QUESTION_WORDS = 3


@dataclass(frozen=True)
class Message:
    role: str
    text: str
    at: datetime
    entry_id: str | None = None


@dataclass(frozen=True)
class Transcript:
    """A conversation as the pipeline sees it: plain data, no database row."""

    id: str
    started_at: datetime
    messages: list[Message]
    feedback: dict[int, str] = field(default_factory=dict)  # message index -> up/down
    csat: int | None = None


@dataclass(frozen=True)
class Signal:
    """One customer question that the bot failed on, with what a human said instead."""

    conversation_id: str
    kind: str  # unanswered | negative_feedback | abandoned
    question: str
    at: datetime
    agent_reply: str | None = None
    bot_entry_id: str | None = None  # the entry the bot answered with, when it did


@dataclass(frozen=True)
class Outcome:
    """Per-conversation flags that the metrics are computed from."""

    bot_answered: bool
    escalated: bool
    negative_feedback: bool
    abandoned: bool
    resolved_automatically: bool
    resolution_seconds: float | None


def transcript_from_row(*, id: str, started_at: datetime, messages: list[dict[str, Any]],
                        feedback: list[dict[str, Any]], csat: int | None) -> Transcript:
    return Transcript(
        id=id,
        started_at=started_at,
        messages=[Message(m["role"], m["text"], datetime.fromisoformat(m["at"]),
                          m.get("entry_id")) for m in messages],
        feedback={int(f["message_index"]): str(f["rating"]) for f in feedback},
        csat=csat,
    )


def is_fallback(msg: Message) -> bool:
    return msg.role == "bot" and msg.entry_id is None and bool(FALLBACK_RE.search(msg.text))


def is_bot_answer(msg: Message) -> bool:
    return msg.role == "bot" and (msg.entry_id is not None or not FALLBACK_RE.search(msg.text))


def is_substantive(text: str) -> bool:
    """A customer message that asks something, not just 'thanks' or 'agent please'."""
    words = text.split()
    if len(words) < MIN_QUESTION_WORDS or COMPLAINT_RE.search(text):
        return False
    return not (len(words) <= 5 and (THANKS_RE.search(text) or HUMAN_REQUEST_RE.search(text)))


def _question_before(messages: list[Message], index: int) -> str | None:
    """The customer's question that the message at `index` responded to."""
    for i in range(index - 1, -1, -1):
        m = messages[i]
        if m.role == "customer" and is_substantive(m.text):
            return m.text.strip()
    return None


def _agent_reply_after(messages: list[Message], index: int) -> str | None:
    replies = [m.text.strip() for m in messages[index + 1:] if m.role == "agent"]
    if not replies:
        return None
    # The longest early reply carries the facts; greetings-only lines are short.
    return max(replies[:3], key=len)


def detect(t: Transcript) -> tuple[list[Signal], Outcome]:
    """Signals and outcome of one transcript (pure; see the module docstring for the rules)."""
    msgs = t.messages
    signals: list[Signal] = []
    first_agent = next((i for i, m in enumerate(msgs) if m.role == "agent"), None)
    escalated = first_agent is not None
    bot_answer_idx = [i for i, m in enumerate(msgs) if m.role == "bot" and m.entry_id]
    positive = any(r == "up" for r in t.feedback.values()) or (t.csat is not None and t.csat >= 4)
    negative = any(r == "down" for r in t.feedback.values()) or (
        t.csat is not None and t.csat <= 2)
    seen_questions: set[str] = set()

    def add(kind: str, at_index: int, bot_entry: str | None) -> None:
        q = _question_before(msgs, at_index)
        if q is None or q.lower() in seen_questions:
            return
        seen_questions.add(q.lower())
        signals.append(Signal(t.id, kind, q, msgs[at_index].at,
                              _agent_reply_after(msgs, at_index), bot_entry))

    # Explicit thumbs-down on a bot answer.
    for idx, rating in sorted(t.feedback.items()):
        if rating == "down" and idx < len(msgs):
            add("negative_feedback", idx, msgs[idx].entry_id)
    # Implicit: complaint, request for a human, or the question asked again after an answer.
    for i in bot_answer_idx:
        nxt = next((j for j in range(i + 1, len(msgs)) if msgs[j].role == "customer"), None)
        if nxt is None:
            continue
        text = msgs[nxt].text
        if COMPLAINT_RE.search(text) or HUMAN_REQUEST_RE.search(text):
            negative = True
            add("negative_feedback", i, msgs[i].entry_id)
    # Fallbacks and handovers.
    for i, m in enumerate(msgs):
        if is_fallback(m):
            add("unanswered", i, None)
    if first_agent is not None:
        last_bot = next((i for i in range(first_agent - 1, -1, -1) if msgs[i].role == "bot"), None)
        anchor = last_bot if last_bot is not None else first_agent
        add("unanswered", anchor, msgs[anchor].entry_id if last_bot is not None else None)
    if t.csat is not None and t.csat <= 2 and not signals and bot_answer_idx:
        add("negative_feedback", bot_answer_idx[-1], msgs[bot_answer_idx[-1]].entry_id)

    last = msgs[-1]
    abandoned = (last.role == "bot" and is_bot_answer(last) and not escalated and not positive
                 and not negative)
    if abandoned:
        add("abandoned", len(msgs) - 1, last.entry_id)
    bot_answered = any(is_bot_answer(m) for m in msgs)
    resolved = bot_answered and not escalated and not negative and not abandoned
    resolution = None
    if resolved or escalated:
        resolution = max(0.0, (msgs[-1].at - msgs[0].at).total_seconds())
    return signals, Outcome(bot_answered, escalated, negative, abandoned, resolved, resolution)
