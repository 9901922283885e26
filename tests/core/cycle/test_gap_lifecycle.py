"""A published gap is watched: its follow-up failures join it, and it closes once they stop."""

from __future__ import annotations

from datetime import timedelta

from core.cycle import QUIET_DAYS
from core.models import utcnow
from core.services import Services
from tests.gap_world import GapWorld
from tests.helpers import CHARGER_QUESTIONS, CHARGER_REPLIES

FOLLOW_UPS = ["does the 30w charger support iphone 15 pro max fast charging",
              "iphone 15 plus with your usb c charger, ok?"]
CANADA = ["Do you ship to Canada?", "can i order from toronto", "Is delivery to Canada possible?"]
CANADA_REPLY = "Yes, we ship to Canada: 5-8 business days, duties included at checkout."


def _published(services: Services) -> tuple[GapWorld, str, str]:
    """A charger gap whose suggestion was approved a moment ago: (world, gap id, entry id)."""
    world = GapWorld(services)
    now = utcnow()
    world.escalate("c", CHARGER_QUESTIONS[:4], CHARGER_REPLIES, now - timedelta(days=1))
    world.cycle(now)
    [sug] = world.open_suggestions()
    entry_id = world.approve(sug)
    gap = world.gap(sug.gap_id)
    assert gap.status == "published" and gap.published_at is not None
    return world, gap.id, entry_id


def test_follow_up_failures_join_the_published_gap_as_a_suggestion_on_its_entry(
        services: Services) -> None:
    world, gap_id, entry_id = _published(services)
    later = utcnow() + timedelta(days=3)
    world.escalate("f", FOLLOW_UPS, CHARGER_REPLIES[:1], later)
    world.escalate("ca", CANADA, [CANADA_REPLY], later)
    world.cycle(later + timedelta(hours=1))

    assert set(FOLLOW_UPS) <= world.questions_of(gap_id)
    gap = world.gap(gap_id)
    assert gap.status == "published"
    assert gap.last_failure_at is not None and gap.last_failure_at >= later
    # No look-alike gap for the charger; the unrelated topic gets its own.
    [canada] = world.gaps("open")
    assert world.questions_of(canada.id) == set(CANADA)
    follow_up = [s for s in world.open_suggestions() if s.gap_id == gap_id]
    assert len(follow_up) == 1
    assert follow_up[0].entry_id == entry_id
    assert follow_up[0].kind in ("add_variants", "improve_answer")


def test_a_published_gap_closes_after_quiet_days_and_new_failures_start_a_new_gap(
        services: Services) -> None:
    world, gap_id, _ = _published(services)
    now = utcnow()
    # A follow-up at day 10 restarts the quiet period...
    world.escalate("f", FOLLOW_UPS[:1], CHARGER_REPLIES[:1], now + timedelta(days=10))
    world.cycle(now + timedelta(days=10, hours=1))
    [follow_up] = [s for s in world.open_suggestions() if s.gap_id == gap_id]
    world.approve(follow_up)
    world.cycle(now + timedelta(days=10 + QUIET_DAYS - 1))
    assert world.gap(gap_id).status == "published"
    # ...and 14 days without a failure close the gap.
    closing = world.cycle(now + timedelta(days=10 + QUIET_DAYS, hours=2))
    assert world.gap(gap_id).status == "closed" and closing.gaps_closed == 1
    # A closed gap is history: a failure after that is a new gap with its own suggestion.
    late = now + timedelta(days=40)
    world.escalate("late", FOLLOW_UPS[1:], CHARGER_REPLIES[:1], late)
    world.cycle(late + timedelta(hours=1))
    assert FOLLOW_UPS[1] not in world.questions_of(gap_id)
    [fresh] = world.open_suggestions()
    assert fresh.gap_id != gap_id


def test_a_published_gap_with_a_pending_follow_up_stays_watched(services: Services) -> None:
    world, gap_id, _ = _published(services)
    now = utcnow()
    world.escalate("f", FOLLOW_UPS, CHARGER_REPLIES[:1], now + timedelta(days=1))
    world.cycle(now + timedelta(days=1, hours=1))
    world.cycle(now + timedelta(days=1 + QUIET_DAYS + 5))
    assert world.gap(gap_id).status == "published"
    assert [s.gap_id for s in world.open_suggestions()] == [gap_id]
