"""What a cycle proposes reads like a KB: no customer's order number, greeting or sign-off in a
question or trigger, no gap made of greetings, one open add-variants card per entry."""

from __future__ import annotations

import re
from datetime import timedelta

from core.models import utcnow
from core.policy.commands import CreateEntry
from core.services import Services
from tests.gap_world import REVIEWER, GapWorld

GIFT_WRAP = [
    "hi can u gift wrap my order VC-2184266? just placed it",
    "Hello team, can you gift wrap order #48213? thanks!",
    "can you gift wrap my order ABC123456",
    "hey there, is gift wrapping available for my order VC-2190031?",
    "hi, do you offer gift wrapping on order 558812? cheers",
]
GIFT_REPLY = ("Yes! Gift wrapping is free: reply with your order number within an hour of "
              "ordering and we wrap it before it ships.")
IDENTIFIER = re.compile(r"\d{4,}|#|\[|VC-|ABC", re.IGNORECASE)
GREETINGS = ["hey there 👋", "hi", "hello?", "thanks!", "ok", "hola", "bonjour", "merci",
             "are you a bot?", "good morning team"]

TRACKING = "Where is my parcel?"
TRACKING_ANSWER = ("You can follow your parcel with the tracking link in your shipping e-mail; "
                   "it updates within 24 hours of dispatch.")
FIRST = ["has my package been sent out yet", "how can i follow my delivery",
         "my parcel hasn't arrived where is it"]
SECOND = ["is there a tracking link for my shipment", "i want to see where the courier is",
          "can i track the delivery online"]


def test_a_gap_of_order_numbers_and_greetings_gets_a_clean_question_and_triggers(
        services: Services) -> None:
    world = GapWorld(services)
    now = utcnow()
    world.escalate("gift", GIFT_WRAP, [GIFT_REPLY], now - timedelta(hours=1))
    world.cycle(now)

    [sug] = world.open_suggestions()
    assert not IDENTIFIER.search(sug.question), sug.question
    assert not re.match(r"(?i)(hi|hello|hey)\b", sug.question)
    assert "just placed" not in sug.question and "thanks" not in sug.question.lower()
    assert "gift wrap" in sug.question.lower() and sug.question.endswith("?")
    assert sug.question[0].isupper()
    for trigger in sug.variants:
        assert not IDENTIFIER.search(trigger), trigger


def test_greetings_alone_make_no_gap_and_are_no_unanswered_question(
        services: Services) -> None:
    world = GapWorld(services)
    now = utcnow()
    world.escalate("hi", GREETINGS, ["Hi! How can I help you today?"], now - timedelta(hours=1))
    result = world.cycle(now)

    assert world.gaps() == [] and world.open_suggestions() == []
    assert result.signals["unanswered"] == 0


def test_new_phrasings_for_one_entry_join_its_open_add_variants_suggestion(
        services: Services) -> None:
    world = GapWorld(services)
    # Tight gaps, so each wave's questions (worded apart) seed gaps of their own, as on the
    # demo where three gaps each asked to add phrasings to one entry.
    world.settings(gap_similarity=0.85)
    world.svc.policy.create_entry(CreateEntry(bot_id=world.bot_id, question=TRACKING,
                                              answer=TRACKING_ANSWER, actor=REVIEWER))
    now = utcnow()
    world.escalate("a", FIRST, [TRACKING_ANSWER], now - timedelta(hours=2))
    world.cycle(now - timedelta(hours=1))
    world.escalate("b", SECOND, [TRACKING_ANSWER], now - timedelta(minutes=30))
    world.cycle(now)

    assert len(world.gaps()) >= 2, "the two waves should form two gaps"
    adds = [s for s in world.open_suggestions() if s.kind == "add_variants"]
    assert len(adds) == 1
    [card] = adds
    assert set(card.variants) & set(FIRST) and set(card.variants) & set(SECOND)
    assert card.evidence["occurrences_total"] == len(FIRST) + len(SECOND)
    # A third cycle re-plans both gaps: nothing is counted twice.
    world.cycle(now + timedelta(minutes=5))
    [again] = [s for s in world.open_suggestions() if s.kind == "add_variants"]
    assert again.id == card.id
    assert again.evidence["occurrences_total"] == len(FIRST) + len(SECOND)
