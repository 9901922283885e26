"""Agents answering from macros: gaps never mix topics, and a wrong match is called one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.conversations import ConversationIn, store_conversations
from core.db import session_scope
from core.policy.commands import Actor, Channel, CreateEntry
from core.services import Services
from tests.gap_world import GapWorld
from tests.macro_topics import TOPICS, signature_macro, slot_macro

ALICE = Actor(name="alice", channel=Channel.api)
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROAMING = "Roaming in the EU is included in every plan; elsewhere it costs 5 pounds a day."
# Customers who want to keep their number, which the bot takes for a question about roaming.
PORTING = TOPICS["port"][0] + ["can I keep my phone number when I join",
                               "switching to you, what happens to my number?"]
TRAVELLERS = TOPICS["roaming"][0] + ["how much is roaming outside europe",
                                     "I'm going to Canada, will my phone work?"]


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


def _answered_then_agent(cid: str, question: str, entry: dict[str, Any], reply: str,
                         at: datetime) -> dict[str, Any]:
    """The bot answers with `entry`, the customer gives a thumbs-down, an agent replies."""
    return {"id": cid, "started_at": at.isoformat(), "feedback": [
        {"message_index": 1, "rating": "down"}], "messages": [
        {"role": "customer", "text": question, "at": at.isoformat()},
        {"role": "bot", "text": entry["answer"], "entry_id": entry["id"],
         "at": (at + timedelta(seconds=2)).isoformat()},
        {"role": "agent", "text": reply, "at": (at + timedelta(minutes=2)).isoformat()}]}


def _store(world: GapWorld, convs: list[dict[str, Any]]) -> None:
    with session_scope(world.svc.engine) as session:
        store_conversations(session, bot_id=world.bot_id,
                            conversations=[ConversationIn.model_validate(c) for c in convs])


def _entry(world: GapWorld, question: str, answer: str) -> dict[str, Any]:
    return world.svc.policy.create_entry(CreateEntry(
        bot_id=world.bot_id, question=question, answer=answer, actor=ALICE))


def _wrongly_answered_porting(world: GapWorld) -> dict[str, Any]:
    """The bot answers porting customers with its roaming entry; agents answer porting."""
    roaming = _entry(world, "Can I use my phone abroad?", ROAMING)
    _escalate_all(world, signature_macro, MONDAY, skip=("port", "roaming"))
    _store(world, [_answered_then_agent(f"port-{i}", q, roaming, signature_macro("port", i),
                                        MONDAY + timedelta(minutes=i))
                   for i, q in enumerate(PORTING)])
    world.cycle(MONDAY + timedelta(hours=1))
    return roaming


def test_a_wrong_match_proposes_the_agents_topic_not_the_entry_that_answered(
        services: Services) -> None:
    world = GapWorld(services)
    roaming = _wrongly_answered_porting(world)
    [sug] = [s for s in world.open_suggestions()
             if world.questions_of(s.gap_id) & set(PORTING)]
    # Every porting customer was unhappy with the roaming answer, yet it is not "improved"
    # with the porting macro: porting is a question of its own.
    assert sug.kind == "new_answer" and sug.entry_id is None
    assert TOPICS["port"][1] in sug.answer
    assert sug.evidence["wrong_match"] == {"entry_id": roaming["id"],
                                           "question": "Can I use my phone abroad?",
                                           "conversations": len(PORTING)}
    assert "Answered with “Can I use my phone abroad?”; agents said otherwise" in sug.warning


def test_a_wrong_match_teaches_the_entry_the_agents_answered_with(services: Services) -> None:
    world = GapWorld(services)
    porting = _entry(world, "How do I switch my number to Telco?", TOPICS["port"][1])
    roaming = _wrongly_answered_porting(world)
    [sug] = [s for s in world.open_suggestions()
             if world.questions_of(s.gap_id) & set(PORTING)]
    assert (sug.kind, sug.entry_id) == ("add_variants", porting["id"])
    assert sug.evidence["wrong_match"]["entry_id"] == roaming["id"]


def test_agents_completing_the_answer_given_still_improve_it(services: Services) -> None:
    world = GapWorld(services)
    roaming = _entry(world, "Can I use my phone abroad?", ROAMING)
    _escalate_all(world, signature_macro, MONDAY, skip=("roaming",))
    extra = (f"{ROAMING} Outside the EU you can instead buy a World Pass: 7 days of calls "
             "and 2 GB of data for 10 pounds, bought in the Telco app before you travel.")
    _store(world, [_answered_then_agent(
        f"roam-{i}", q, roaming,
        signature_macro("roaming", i).replace(ROAMING, extra), MONDAY + timedelta(minutes=i))
        for i, q in enumerate(TRAVELLERS)])
    world.cycle(MONDAY + timedelta(hours=1))
    [sug] = [s for s in world.open_suggestions()
             if world.questions_of(s.gap_id) & set(TRAVELLERS)]
    assert (sug.kind, sug.entry_id) == ("improve_answer", roaming["id"])
    assert sug.evidence["wrong_match"] is None
    assert "said otherwise" not in (sug.warning or "")
