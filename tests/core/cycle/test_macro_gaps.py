"""Agents answering from macros: gaps never mix topics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from core.services import Services
from tests.gap_world import GapWorld
from tests.macro_topics import TOPICS, signature_macro, slot_macro

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _escalate_all(world: GapWorld, macro: Callable[[str, int], str], at: datetime,
                  skip: tuple[str, ...] = ()) -> None:
    for n, (topic, (questions, _)) in enumerate(TOPICS.items()):
        if topic in skip:
            continue
        world.escalate(topic, questions, [macro(topic, n), macro(topic, n + 1)], at)


def _topic_of(question: str) -> str:
    return next(t for t, (qs, _) in TOPICS.items() if question in qs)


@pytest.mark.parametrize("macro", [
    lambda topic, agent: slot_macro(topic),
    signature_macro,
], ids=["slot", "signature"])
def test_topics_answered_with_one_macro_never_share_a_gap(
        services: Services, macro: Callable[[str, int], str]) -> None:
    world = GapWorld(services)
    # A loose setting would let neighbouring topics join one gap on their shared macro.
    world.settings(gap_similarity=0.55)
    _escalate_all(world, macro, MONDAY)
    world.cycle(MONDAY + timedelta(hours=1))
    # A second week of the same topics joins the gaps the first one made.
    _escalate_all(world, macro, MONDAY + timedelta(days=7))
    world.cycle(MONDAY + timedelta(days=7, hours=1))
    gaps = world.gaps("open")
    for gap in gaps:
        assert len({_topic_of(q) for q in world.questions_of(gap.id)}) == 1
    assert {_topic_of(q) for g in gaps for q in world.questions_of(g.id)} == set(TOPICS)
