import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from core.conversations import ConversationBatch
from core.demo import load_demo_conversations, load_demo_kb
from core.pipeline.signals import detect, transcript_from_row

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
FALLBACK = "Sorry, I'm not sure about that. Let me connect you with a teammate."
CATEGORIES = {"orders", "shipping", "returns", "payments", "account", "products", "warranty"}
CATEGORIES |= {"pricing", None}
# A phrase every agent answer on a repeated, not-yet-covered topic contains (and no other does).
TOPICS = {
    "charger compatibility": "usb-c",
    "international shipping": "canada",
    "student discount": "voltcart.com/students",
    "price matching": "best buy",
    "gift wrapping": "gift wrap",
    "trade-in": "voltcart.com/trade-in",
}


@pytest.fixture(scope="module")
def kb():
    return load_demo_kb()


@pytest.fixture(scope="module")
def conversations():
    return load_demo_conversations(NOW)


def at(timestamp):
    parsed = datetime.fromisoformat(timestamp)
    assert parsed.utcoffset() == timedelta(0), timestamp
    return parsed


def kind(conversation):
    """Classify a conversation by its shape alone."""
    messages = conversation["messages"]
    answered = any(m["entry_id"] for m in messages)
    has_agent = any(m["role"] == "agent" for m in messages)
    ratings = {f["rating"] for f in conversation["feedback"]}
    if not answered:
        return "escalated"
    if "down" in ratings or has_agent:
        return "negative"
    if messages[-1]["role"] == "bot" and not ratings and conversation["csat"] is None:
        return "abandoned"
    return "resolved"


def question(conversation):
    """The customer message the bot could not answer."""
    texts = [m["text"] for m in conversation["messages"]]
    return texts[texts.index(FALLBACK) - 1]


def agent_text(conversation):
    return " ".join(m["text"] for m in conversation["messages"] if m["role"] == "agent").lower()


def test_kb_entries_are_well_formed(kb):
    assert 18 <= len(kb) <= 22
    assert len({entry["question"] for entry in kb}) == len(kb)
    for entry in kb:
        assert set(entry) == {"question", "answer", "variants", "category"}
        assert entry["question"].strip() and entry["answer"].strip()
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", entry["answer"])) <= 3, entry["answer"]
        assert entry["variants"] and all(isinstance(v, str) and v for v in entry["variants"])
        assert entry["category"] in CATEGORIES
    assert len({entry["category"] for entry in kb}) >= 7


def test_conversations_have_the_api_shape(conversations, kb):
    assert 300 <= len(conversations) <= 400
    assert len({c["id"] for c in conversations}) == len(conversations)
    for conversation in conversations:
        assert set(conversation) == {"id", "started_at", "messages", "feedback", "csat", "channel"}
        assert conversation["id"].startswith("demo-")
        assert conversation["channel"] in {"web", "whatsapp", "messenger"}
        assert conversation["csat"] is None or conversation["csat"] in range(1, 6)
        messages = conversation["messages"]
        assert messages and messages[0]["role"] == "customer"
        for message in messages:
            assert set(message) == {"role", "text", "at", "entry_id"}
            assert message["role"] in {"customer", "bot", "agent"}
            assert message["text"].strip()
            assert not re.search(r"\{\w+\}", message["text"]), message["text"]
            if message["entry_id"] is not None:
                assert message["role"] == "bot"
                index = re.fullmatch(r"kb:(\d+)", message["entry_id"])
                assert index and int(index[1]) < len(kb), message["entry_id"]
                assert message["text"] == kb[int(index[1])]["answer"]
        rated = [f["message_index"] for f in conversation["feedback"]]
        assert len(rated) == len(set(rated))
        for feedback in conversation["feedback"]:
            assert set(feedback) == {"message_index", "rating"}
            assert feedback["rating"] in {"up", "down"}
            assert messages[feedback["message_index"]]["role"] == "bot"


def test_timestamps_are_within_the_last_14_days(conversations):
    for conversation in conversations:
        started = at(conversation["started_at"])
        times = [at(m["at"]) for m in conversation["messages"]]
        assert times[0] == started
        assert all(earlier < later for earlier, later in pairwise(times))
        assert NOW - timedelta(days=14) <= started and times[-1] <= NOW
    starts = [at(c["started_at"]) for c in conversations]
    assert starts == sorted(starts)
    recent = sum(start >= NOW - timedelta(days=7) for start in starts)
    assert recent > len(starts) - recent


def test_output_is_deterministic_and_follows_now(conversations):
    assert load_demo_conversations(NOW) == conversations
    assert load_demo_conversations(NOW.replace(tzinfo=None)) == conversations
    later = NOW + timedelta(days=30)
    moved = load_demo_conversations(later)
    assert all(
        later - timedelta(days=14) <= at(m["at"]) <= later for c in moved for m in c["messages"]
    )


def test_scenario_mix(conversations):
    counts = Counter(kind(c) for c in conversations)
    share = {name: count / len(conversations) for name, count in counts.items()}
    assert 0.38 <= share["resolved"] <= 0.52
    assert 0.28 <= share["escalated"] <= 0.42  # new topics + paraphrases the bot missed
    assert 0.07 <= share["negative"] <= 0.13
    assert 0.07 <= share["abandoned"] <= 0.13
    for conversation in conversations:
        if kind(conversation) == "escalated":
            roles = [m["role"] for m in conversation["messages"]]
            assert FALLBACK in [m["text"] for m in conversation["messages"]]
            assert roles.index("agent") > roles.index("bot")
    assert any(f["rating"] == "up" for c in conversations for f in c["feedback"])
    assert {c["csat"] for c in conversations} >= {1, 2, 4, 5, None}


def test_repeated_new_topics_are_answered_by_agents(conversations):
    escalated = [c for c in conversations if kind(c) == "escalated"]
    per_topic = {
        topic: [c for c in escalated if phrase in agent_text(c)] for topic, phrase in TOPICS.items()
    }
    for topic, matching in per_topic.items():
        assert 5 <= len(matching) <= 25, topic
        assert len({question(c) for c in matching}) >= 4, topic  # varied wording
    on_a_topic = {c["id"] for matching in per_topic.values() for c in matching}
    assert len(escalated) - len(on_a_topic) >= 20  # covered questions the bot did not recognise
    recent_charger = [
        c
        for c in per_topic["charger compatibility"]
        if at(c["started_at"]) >= NOW - timedelta(days=7)
    ]
    assert len(recent_charger) >= 5


def test_the_ingestion_schema_accepts_the_conversations(conversations):
    ConversationBatch.model_validate({"conversations": conversations})


def test_the_signal_detector_sees_each_scenario_as_intended(conversations):
    expected = {
        "resolved": "resolved_automatically",
        "escalated": "escalated",
        "negative": "negative_feedback",
        "abandoned": "abandoned",
    }
    for conversation in conversations:
        transcript = transcript_from_row(
            id=conversation["id"],
            started_at=at(conversation["started_at"]),
            messages=conversation["messages"],
            feedback=conversation["feedback"],
            csat=conversation["csat"],
        )
        _, outcome = detect(transcript)
        assert getattr(outcome, expected[kind(conversation)]), conversation["id"]
