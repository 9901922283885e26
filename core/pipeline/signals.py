"""Stage 1 of the cycle: what went wrong (or right) in each conversation, from its transcript.

Rules (also in docs/signals.md):
- handover: an agent message appears after the customer started talking to the bot;
- fallback: a bot message with no entry_id whose text reads like "I don't know" / "let me
  connect you";
- unanswered: the bot handed over or gave a fallback for a customer question;
- bot answer: a bot message with an entry_id, or (for chatbots that send no entry_id) a bot
  message that is not a fallback and replies to a substantive customer question; a greeting
  is not an answer;
- negative feedback: a thumbs-down on a bot answer, CSAT 1-2, or, in the customer's next
  message after a bot answer that was not thumbed up, a complaint ("that doesn't answer my
  question"), a request for a human, or a rephrase: the same question asked again in other
  words (see `is_rephrase`);
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

from core.pipeline.wording import is_chitchat

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
# "And what about...", "also, ..." start a new question that builds on the answer; a rephrase
# never opens like that.
FOLLOW_UP_RE = re.compile(
    r"^\W*(?:(?:ok(?:ay)?|great|cool|thanks?|thank you|perfect|alright|nice)\W+)?"
    r"(?:and|also|what about|how about|another (?:question|thing)|one more|btw|by the way|"
    r"plus|one last)\b",
    re.IGNORECASE,
)
# Words that carry no topic: question words, auxiliaries, pronouns, articles, prepositions,
# politeness and talk about the question itself ("I asked", "I mean", "again").
STOP_WORDS = frozenset("""
a about after again all also am an and any anyone anything are as ask asked asking at be
because been before being but by can could did do does doing done for from get gets getting
got had has have having hello hey hi how i i'm if im in into is it it's its just know let
like me mean meant my no not now of ok okay on or our please question really said say should
so some still than that that's the their them then there these they this those to too u
up us very want wanted was we were what what's when where which who why will with would you
your yours
""".split())
TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# A rephrase shares at least this many content words with the question the bot answered,
# and their Dice overlap 2·shared / (|question| + |rephrase|) reaches REPHRASE_OVERLAP.
REPHRASE_MIN_SHARED = 2
REPHRASE_OVERLAP = 0.5


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
    """A customer message that asks something, not just 'thanks', 'agent please' or a greeting
    ("hey there 👋", "bonjour", "are you a bot?": no topic the KB could answer, so never a
    gap nor an unanswered question)."""
    words = text.split()
    if len(words) < MIN_QUESTION_WORDS or COMPLAINT_RE.search(text) or is_chitchat(text):
        return False
    return not (len(words) <= 5 and (THANKS_RE.search(text) or HUMAN_REQUEST_RE.search(text)))


def _stem(word: str) -> str:
    """Light normalisation so "returning"/"returned"/"returns" meet "return"."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"  # deliveries -> delivery
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiousl":
        word = word[:-1]  # shipp(ing) -> ship
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]  # arrive / arriv(es) -> arriv
    return word


def content_words(text: str) -> frozenset[str]:
    """The topic words of a message: lower-cased, stop words removed, lightly stemmed."""
    return frozenset(_stem(w) for w in TOKEN_RE.findall(text.lower()) if w not in STOP_WORDS)


def is_rephrase(question: str, text: str) -> bool:
    """True when `text` (the customer's next message after a bot answer) asks `question`
    again in other words: it is substantive, not a thank-you, not an "and what about ..."
    follow-up, and shares at least REPHRASE_MIN_SHARED content words with the question with a
    Dice overlap of at least REPHRASE_OVERLAP (or repeats it word for word)."""
    if not is_substantive(text) or FOLLOW_UP_RE.search(text):
        return False
    if THANKS_RE.search(text) and "?" not in text:
        return False  # "thanks, that answers how returns work" is a thank-you
    a, b = content_words(question), content_words(text)
    if a and a == b:
        return True
    shared = len(a & b)
    return shared >= REPHRASE_MIN_SHARED and 2 * shared / (len(a) + len(b)) >= REPHRASE_OVERLAP


def _answered_question(messages: list[Message], index: int) -> str | None:
    """The substantive customer question that the bot message at `index` replies to: a
    customer message after the previous bot or agent message."""
    for i in range(index - 1, -1, -1):
        m = messages[i]
        if m.role != "customer":
            return None
        if is_substantive(m.text):
            return m.text.strip()
    return None


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
    # Explicit entry_id marks an answer; without one, a non-fallback reply to a question does.
    bot_answer_idx = [i for i, m in enumerate(msgs) if m.role == "bot" and (
        m.entry_id or (not is_fallback(m) and _answered_question(msgs, i) is not None))]
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
    # Implicit, from the customer's next message (before any agent speaks): a complaint, a
    # request for a human, or the question asked again. A thumbs-up on the answer wins.
    for i in bot_answer_idx:
        if t.feedback.get(i) == "up":
            continue
        nxt = next((j for j in range(i + 1, len(msgs)) if msgs[j].role != "bot"), None)
        if nxt is None or msgs[nxt].role != "customer":
            continue
        text = msgs[nxt].text
        asked = _question_before(msgs, i)
        if COMPLAINT_RE.search(text) or HUMAN_REQUEST_RE.search(text) or (
                asked is not None and is_rephrase(asked, text)):
            negative = True
            # The signal keeps the original wording: it is the one the bot failed to match.
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
    last_customer = max((i for i, m in enumerate(msgs) if m.role == "customer"), default=-1)
    answered_last = [i for i in bot_answer_idx if i > last_customer]
    # The customer's last question got a bot answer and nothing more was said (a closing
    # "anything else?" from the bot does not count as the customer replying).
    abandoned = (last.role == "bot" and not is_fallback(last) and bool(answered_last)
                 and not escalated and not positive and not negative)
    if abandoned:
        add("abandoned", answered_last[-1], msgs[answered_last[-1]].entry_id)
    bot_answered = bool(bot_answer_idx)
    resolved = bot_answered and not escalated and not negative and not abandoned
    resolution = None
    if resolved or escalated:
        resolution = max(0.0, (msgs[-1].at - msgs[0].at).total_seconds())
    return signals, Outcome(bot_answered, escalated, negative, abandoned, resolved, resolution)
