"""`Cycle.reanalyze` / `autotrain cycle --full`: every stored failure re-assigned from scratch,
decided history kept, one open suggestion per gap."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

from core.models import utcnow
from core.services import Services
from tests.gap_world import GapWorld
from tests.helpers import (
    CHARGER_QUESTIONS,
    CHARGER_REPLIES,
    CountingEmbedder,
    escalated_conversation,
    run_cli,
)

CANADA = ["Do you ship to Canada?", "can i order from toronto", "Is delivery to Canada possible?"]
CANADA_REPLY = "Yes, we ship to Canada: 5-8 business days, duties included at checkout."
GIFT = ["Do you offer gift wrapping?", "can you wrap my order as a present",
        "is gift wrap available?"]
GIFT_REPLY = "Yes: tick 'gift wrap' at checkout, it costs $4 and hides the price."


def _one_open_suggestion_per_gap(world: GapWorld) -> None:
    per_gap = Counter(s.gap_id for s in world.open_suggestions())
    assert per_gap and max(per_gap.values()) == 1
    assert all(world.gap(g).status in ("open", "published", "rejected") for g in per_gap)


def test_full_reanalysis_rebuilds_open_gaps_and_keeps_decided_history(
        services: Services) -> None:
    world = GapWorld(services)
    now = utcnow()
    # A strict threshold first: the charger questions end up in several small gaps. Each
    # question is asked by two customers, so no small gap is a one-off (those are not
    # proposed) and every one of them gets a suggestion.
    world.settings(gap_similarity=0.93)
    world.escalate("charger", CHARGER_QUESTIONS * 2, CHARGER_REPLIES, now - timedelta(days=3))
    world.escalate("canada", CANADA * 2, [CANADA_REPLY], now - timedelta(days=3))
    world.escalate("gift", GIFT * 2, [GIFT_REPLY], now - timedelta(days=3))
    world.cycle(now - timedelta(days=2))
    by_topic = {t: [s for s in world.open_suggestions()
                    if world.questions_of(s.gap_id) <= set(qs)]
                for t, qs in (("charger", CHARGER_QUESTIONS), ("canada", CANADA),
                              ("gift", GIFT))}
    assert len(by_topic["charger"]) >= 2, "the strict threshold should have split the topic"
    world.approve(by_topic["canada"][0])
    published_id = by_topic["canada"][0].gap_id
    rejected_gap = by_topic["gift"][0].gap_id
    world.reject(by_topic["gift"][0])
    for extra in by_topic["canada"][1:] + by_topic["gift"][1:]:
        world.reject(extra)
    old_charger = {s.id for s in by_topic["charger"]}
    published_questions = world.questions_of(published_id)
    rejected_questions = world.questions_of(rejected_gap)
    counts = {g: world.evidence_count(g) for g in (published_id, rejected_gap)}

    # The admin loosens the threshold and asks for a full re-analysis.
    world.settings(gap_similarity=0.65)
    result = world.cycle(now, full=True)

    assert result.conversations_analyzed == 2 * (len(CHARGER_QUESTIONS) + len(CANADA) + len(GIFT))
    # Open gaps were rebuilt: the charger topic is one gap now, with one of its old
    # suggestions carried over (refreshed with all the evidence) and the others withdrawn.
    [charger] = [s for s in world.open_suggestions()
                 if world.questions_of(s.gap_id) & set(CHARGER_QUESTIONS)]
    assert charger.id in old_charger
    assert world.questions_of(charger.gap_id) == set(CHARGER_QUESTIONS)
    assert charger.evidence["occurrences_total"] == 2 * len(CHARGER_QUESTIONS)
    withdrawn = {s.id for s in world.suggestions("withdrawn")}
    assert withdrawn == old_charger - {charger.id}
    assert result.suggestions_created == 0
    # Decided history stays: the published and the rejected gap keep their evidence and
    # status, their suggestions keep their decisions, and nothing comes back for them.
    assert world.gap(published_id).status == "published"
    assert world.questions_of(published_id) == published_questions
    assert world.gap(rejected_gap).status == "rejected"
    assert world.questions_of(rejected_gap) == rejected_questions
    assert {s.status for s in world.suggestions() if s.gap_id == rejected_gap} == {"rejected"}
    # ...and their failures are not counted a second time.
    assert {g: world.evidence_count(g) for g in counts} == counts
    assert world.gap(rejected_gap).size == counts[rejected_gap]
    _one_open_suggestion_per_gap(world)
    [open_gap] = world.gaps("open")
    assert open_gap.id == charger.gap_id

    # Running it again changes nothing a reviewer sees.
    again = world.cycle(now + timedelta(minutes=5), full=True)
    assert again.suggestions_created == 0
    assert [s.id for s in world.open_suggestions()] == [charger.id]
    assert world.questions_of(world.open_suggestions()[0].gap_id) == set(CHARGER_QUESTIONS)


def test_failures_not_analysed_yet_are_included_and_rejected_gaps_still_suppress(
        services: Services) -> None:
    world = GapWorld(services)
    now = utcnow()
    world.escalate("gift", GIFT[:2], [GIFT_REPLY], now - timedelta(days=3))
    world.cycle(now - timedelta(days=2))
    [gift] = world.open_suggestions()
    world.reject(gift)
    # One more gift question and a new topic arrive; nobody ran a normal cycle since.
    world.escalate("gift2", GIFT[2:], [GIFT_REPLY], now - timedelta(hours=3))
    world.escalate("canada", CANADA, [CANADA_REPLY], now - timedelta(hours=3))
    result = world.cycle(now, full=True)
    assert result.conversations_analyzed == 6
    assert GIFT[2] in world.questions_of(gift.gap_id)
    [canada] = world.open_suggestions()
    assert world.questions_of(canada.gap_id) == set(CANADA)


def test_cli_cycle_full(tmp_path: Path) -> None:
    data = tmp_path / "data"
    at = utcnow() - timedelta(days=1)
    lines = [json.dumps(escalated_conversation(f"c{i}", q, CHARGER_REPLIES[i % 3], at))
             for i, q in enumerate(CHARGER_QUESTIONS)]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    out = run_cli(data, "import", "conversations", str(tmp_path / "c.jsonl"), "--bot", "shop",
                  "--create")
    assert out.returncode == 0, out.stderr
    first = run_cli(data, "cycle", "--bot", "shop")
    assert first.returncode == 0, first.stderr
    full = run_cli(data, "cycle", "--full", "--bot", "shop")
    assert full.returncode == 0, full.stderr
    report = json.loads(full.stdout.split(": ", 1)[1])
    assert report["conversations_analyzed"] == len(CHARGER_QUESTIONS)
    assert report["suggestions_created"] == 0 and report["gaps"] == 1




def test_reanalysis_reuses_stored_vectors_unless_asked_to_reembed(services: Services) -> None:
    world = GapWorld(services)
    now = utcnow()
    world.escalate("charger", CHARGER_QUESTIONS, CHARGER_REPLIES, now - timedelta(days=1))
    world.cycle(now - timedelta(hours=1))
    counting = CountingEmbedder(services.cycle.embedder)
    services.cycle.embedder = counting
    world.cycle(now, full=True)
    # Questions are not embedded again. A reply is embedded by its distinctive part under the
    # template learned now (the stored vector is of the part under the template of its day),
    # each distinct text once.
    assert not set(counting.texts) & set(CHARGER_QUESTIONS)
    assert all(counting.texts.count(r) <= 1 for r in CHARGER_REPLIES)
    world.svc.cycle.reanalyze(bot_id=world.bot_id, as_of=now, reembed=True)
    assert set(CHARGER_QUESTIONS) <= set(counting.texts)
    [sug] = world.open_suggestions()
    assert world.questions_of(sug.gap_id) == set(CHARGER_QUESTIONS)
