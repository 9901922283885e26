"""Demo data for Voltcart, a fictional online electronics store: KB entries and chat history."""

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

_DATA = Path(__file__).parent / "data"
_SEED = 20261120
_DAYS = 14
_KB_FIELDS = ("question", "answer", "variants", "category")
# Seconds between a message and the one before it, by the role of the sender.
_DELAYS = {"customer": (8, 100), "bot": (1, 3), "agent": (90, 840)}
_ET = timezone(timedelta(hours=-5), "ET")  # the store's time zone (daylight saving ignored)


def _read(name: str) -> Any:
    return json.loads((_DATA / name).read_text(encoding="utf-8"))


def load_demo_kb() -> list[dict]:
    """Return the Voltcart KB: about 20 entries of {question, answer, variants, category}.

    The order is fixed: conversations refer to entries by their index in this list.
    """
    return [{field: entry[field] for field in _KB_FIELDS} for entry in _read("kb.json")]


def load_demo_conversations(now: datetime) -> list[dict]:
    """Return ~350 Voltcart conversations from the 14 days before `now`, in the HTTP API format.

    Bot messages answered from the KB carry `"entry_id": "kb:<index>"`, where `<index>` is the
    entry's 0-based position in `load_demo_kb()`: real entry ids only exist once the entries have
    been created in the service, so the loader must replace each placeholder with the real id.
    Other messages (customer, agent, bot greetings and fallbacks) have `"entry_id": None`.

    The output is deterministic (fixed seed): the same `now` gives the same conversations.
    A naive `now` is taken as UTC. Conversations are sorted by start time, ids "demo-0001"...
    """
    return [conversation for _, conversation in _generate(now)]


def _in_support_hours(at: datetime) -> bool:
    """Human chat support is open 8am–8pm ET on weekdays and 10am–6pm ET at weekends (as in the
    KB); a chat must start 20 minutes before closing for an agent to answer it in time."""
    local = at.astimezone(_ET)
    opens, closes = (10, 18) if local.weekday() >= 5 else (8, 20)
    return opens <= local.hour + local.minute / 60 < closes - 1 / 3


class _Chat:
    """One conversation being written, message by message, with a clock that moves forward."""

    def __init__(self, rng: random.Random, start: datetime, name: str, order: str) -> None:
        self.rng, self.start, self.clock = rng, start, start
        self.name, self.order = name, order  # customer's first name and an order number
        self.messages: list[dict] = []
        self.feedback: list[dict] = []
        self.csat: int | None = None

    def add(self, role: str, text: str, entry_id: str | None = None) -> int:
        if self.messages:
            seconds = self.rng.randint(*_DELAYS[role])
            if role == "customer":  # time to read what was just said
                seconds += len(self.messages[-1]["text"]) // 20
            self.clock += timedelta(seconds=seconds)
        text = text.replace("{order}", self.order)
        message = {"role": role, "text": text, "at": self.clock.isoformat(), "entry_id": entry_id}
        self.messages.append(message)
        return len(self.messages) - 1

    def rate(self, message_index: int, rating: str) -> None:
        self.feedback.append({"message_index": message_index, "rating": rating})


class _Builder:
    """Turns the hand-written templates in scenarios.json into conversations."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.rng = random.Random(_SEED)
        self.s = _read("scenarios.json")
        self.kb = _read("kb.json")
        self.kb_index = {entry["key"]: i for i, entry in enumerate(self.kb)}
        self.out: list[tuple[str, _Chat, str]] = []  # (scenario label, chat, channel)

    # -- small helpers ---------------------------------------------------------------------
    def pick(self, items: list) -> Any:
        return self.rng.choice(items)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def weighted(self, items: list, weights: list[float]) -> Any:
        return self.rng.choices(items, weights=weights)[0]

    def pick_case(self, cases: list[dict]) -> dict:
        """A scenario case, the ones with more hand-written questions being more frequent."""
        return self.weighted(cases, [len(case["questions"]) for case in cases])

    def new_chat(self, label: str, window_days: float = _DAYS, staffed: bool = False) -> _Chat:
        """Start a conversation at least an hour before `now`; 62% fall in the last 7 days.

        Few chats start at night; `staffed` ones (a human agent joins) start in support hours.
        """
        while True:
            if window_days < _DAYS:
                seconds = self.rng.randint(3600, int(window_days * 86400))
            elif self.chance(0.62):
                seconds = self.rng.randint(3600, 7 * 86400)
            else:
                seconds = self.rng.randint(7 * 86400, _DAYS * 86400 - 60)
            start = self.now - timedelta(seconds=seconds)
            if staffed and not _in_support_hours(start):
                continue
            if not (1 <= start.astimezone(_ET).hour < 7 and self.chance(0.75)):  # quiet nights
                break
        order = f"VC-{self.rng.randint(2184000, 2189999)}"
        chat = _Chat(self.rng, start, self.pick(self.s["customer_names"]), order)
        channels = self.s["channels"]
        self.out.append((label, chat, self.weighted(list(channels), list(channels.values()))))
        return chat

    # -- message steps ---------------------------------------------------------------------
    def opener(self, chat: _Chat) -> None:
        if self.chance(0.15):
            chat.add("customer", self.pick(self.s["openers"]))
            chat.add("bot", self.s["bot"]["greeting"])

    def ask(self, chat: _Chat, question: str) -> None:
        if self.chance(0.2):
            question = question.lower()
        if question.endswith("?") and self.chance(0.15):
            question = question[:-1]
        chat.add("customer", question)

    def answer(self, chat: _Chat, key: str) -> int:
        index = self.kb_index[key]
        return chat.add("bot", self.kb[index]["answer"], f"kb:{index}")

    def agent(self, chat: _Chat, replies: list[str]) -> str:
        agent = self.pick(self.s["agents"])
        name = f" {chat.name}" if self.chance(0.5) else ""
        greeting = self.pick(agent["greetings"]).replace("{name}", name)
        parts = [greeting, self.pick(replies), self.pick(agent["signoffs"])]
        chat.add("agent", " ".join(part for part in parts if part))
        return agent["name"]

    def thank_agent(self, chat: _Chat, agent: str, follow_ups: list[str]) -> None:
        if follow_ups and self.chance(0.4):
            chat.add("customer", self.pick(follow_ups))
        else:
            chat.add("customer", self.pick(self.s["thanks_agent"]).replace("{agent}", agent))

    def covered_question(self) -> tuple[str, str]:
        """A covered KB key and a customer question for it (the KB wording or a paraphrase)."""
        pool = self.s["resolved"]["questions"]
        key = self.weighted(list(pool), [topic["weight"] for topic in pool.values()])
        entry = self.kb[self.kb_index[key]]
        return key, self.pick([entry["question"], *entry["variants"], *pool[key]["questions"]])

    # -- scenarios -------------------------------------------------------------------------
    def resolved(self) -> None:
        chat = self.new_chat("resolved")
        key, question = self.covered_question()
        self.opener(chat)
        self.ask(chat, question)
        answer = self.answer(chat, key)
        thanked = self.chance(0.6)
        if thanked:
            chat.add("customer", self.pick(self.s["thanks_bot"]))
        if self.chance(0.35) or (not thanked and self.chance(0.6)):
            chat.rate(answer, "up")
        if self.chance(0.3) or not (thanked or chat.feedback):
            chat.csat = self.pick([4, 5, 5, 5])

    def escalated(self, label: str, case: dict, window_days: float = _DAYS) -> None:
        """Customer asks, the bot falls back, a human agent answers."""
        chat = self.new_chat(label, window_days, staffed=True)
        self.opener(chat)
        self.ask(chat, self.pick(case["questions"]))
        chat.add("bot", self.s["bot"]["fallback"])
        if self.chance(0.1):
            chat.add("customer", self.pick(self.s["waiting"]))
        agent = self.agent(chat, case["agent_replies"])
        if self.chance(0.8):
            self.thank_agent(chat, agent, case.get("follow_ups", []))
        if self.chance(0.35):
            chat.csat = self.pick([3, 4, 4, 5, 5, 5])

    def negative(self, case: dict) -> None:
        """The bot answers with an entry that doesn't cover the question; the customer objects."""
        chat = self.new_chat("negative", staffed=True)
        self.opener(chat)
        self.ask(chat, self.pick(case["questions"]))
        answer = self.answer(chat, case["kb"])
        thumbs_down = self.chance(0.75)
        if thumbs_down:
            chat.rate(answer, "down")
            if self.chance(0.6):  # often with a word on what the answer missed
                chat.add("customer", self.pick(case["complaints"] + self.s["complaints"]))
        else:  # no thumb: the customer says so in words
            chat.add("customer", self.pick(self.s["complaints"]))
        if self.chance(0.4):
            chat.add("customer", self.pick(self.s["ask_human"]))
            chat.add("bot", self.s["bot"]["handoff"])
        if not (thumbs_down and self.chance(0.1)):  # a few leave before anyone replies
            agent = self.agent(chat, case["agent_replies"])
            if self.chance(0.5):
                self.thank_agent(chat, agent, [])
        if self.chance(0.4):
            chat.csat = self.pick([1, 1, 2, 2, 3])

    def abandoned(self) -> None:
        """The bot answers (sometimes with the wrong entry) and the customer just leaves."""
        spec = self.s["abandoned"]
        wrong = self.chance(spec["wrong_share"])
        chat = self.new_chat("abandoned/wrong" if wrong else "abandoned/right")
        if wrong:
            case = self.pick(spec["wrong"])
            key, question = case["kb"], self.pick(case["questions"])
        else:
            key, question = self.covered_question()
        self.opener(chat)
        self.ask(chat, question)
        self.answer(chat, key)

    def build(self) -> list[tuple[str, dict]]:
        s = self.s
        for _ in range(s["resolved"]["count"]):
            self.resolved()
        for topic in s["unanswered"]:
            label, window = f"unanswered/{topic['topic']}", topic.get("window_days", _DAYS)
            for _ in range(topic["count"]):
                self.escalated(label, self.pick_case(topic["cases"]), window)
        for _ in range(s["missed"]["count"]):
            self.escalated("missed", self.pick_case(s["missed"]["cases"]))
        for _ in range(s["negative"]["count"]):
            self.negative(self.pick_case(s["negative"]["cases"]))
        for _ in range(s["abandoned"]["count"]):
            self.abandoned()

        self.out.sort(key=lambda item: item[1].start)
        result = []
        for number, (label, chat, channel) in enumerate(self.out, start=1):
            conversation = {
                "id": f"demo-{number:04d}",
                "started_at": chat.start.isoformat(),
                "messages": chat.messages,
                "feedback": chat.feedback,
                "csat": chat.csat,
                "channel": channel,
            }
            result.append((label, conversation))
        return result


def _generate(now: datetime) -> list[tuple[str, dict]]:
    """Conversations labelled with their scenario ("resolved", "unanswered/<topic>", ...)."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return _Builder(now.replace(microsecond=0)).build()
