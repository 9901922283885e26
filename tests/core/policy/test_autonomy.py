"""Autonomy: which suggestions publish themselves, the daily limit in the bot's calendar,
excluded categories, pause, announcements, undo and the audit row of every command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, select

from core.bots import create_bot
from core.db import session_scope
from core.errors import AlreadyDecided, Conflict, InvalidInput
from core.models import AuditEvent, Gap, KBEntry, Notification, Suggestion
from core.policy.commands import (
    Actor,
    Approve,
    Channel,
    CreateEntry,
    Defer,
    EditAndApprove,
    Reject,
    RejectReason,
    RevertEntry,
    SetCategory,
    SetEntryActive,
    SetPaused,
    UndoSuggestion,
    UpdateEntry,
    UpdateSettings,
)
from core.services import Services

ALICE = Actor(name="alice", channel=Channel.slack)
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday


class Bench:
    """A bot with hand-made pending suggestions, so each rule is tested at its exact edge."""

    def __init__(self, svc: Services, **settings: Any) -> None:
        self.svc = svc
        with session_scope(svc.engine) as session:
            bot = create_bot(session, slug="shop", name="Shop")
            self.bot_id = bot.id
        if settings:
            self.configure(**settings)
        self.n = 0

    def configure(self, **patch: Any) -> None:
        self.svc.policy.update_settings(UpdateSettings(bot_id=self.bot_id, patch=patch,
                                                       actor=ALICE))

    def suggest(self, confidence: int, *, category: str | None = None,
                kind: str = "new_answer", entry_id: str | None = None,
                evidence: dict[str, Any] | None = None, question: str | None = None,
                answer: str | None = None, priority: str = "medium",
                gap_id: str | None = None) -> str:
        self.n += 1
        question = question or f"How do I enable feature number {self.n} in the app?"
        sug = Suggestion(bot_id=self.bot_id, gap_id=gap_id, kind=kind, priority=priority,
                         score=float(confidence), confidence=confidence, question=question,
                         answer=answer or f"Open Settings, then Features, and switch on "
                                          f"feature number {self.n}.",
                         variants=[], entry_id=entry_id, category=category,
                         evidence=evidence or {}, created_at=NOON - timedelta(hours=1))
        with session_scope(self.svc.engine) as session:
            session.add(sug)
        return sug.id

    def publish(self, at: datetime = NOON) -> list[str]:
        return self.svc.policy.auto_publish(bot_id=self.bot_id, at=at).published

    def suggestion(self, sid: str) -> Suggestion:
        with Session(self.svc.engine) as session:
            sug = session.get(Suggestion, sid)
            assert sug is not None
            return sug

    def audit(self) -> list[AuditEvent]:
        with Session(self.svc.engine) as session:
            return list(session.exec(select(AuditEvent).where(
                AuditEvent.bot_id == self.bot_id).order_by(col(AuditEvent.id))))

    def notifications(self) -> list[Notification]:
        with Session(self.svc.engine) as session:
            return list(session.exec(select(Notification).where(
                Notification.bot_id == self.bot_id).order_by(col(Notification.id))))

    def answer(self, question: str) -> str | None:
        return self.svc.answer(bot=self.svc.review.bot_by_id(self.bot_id),
                               question=question).entry_id


@pytest.mark.parametrize(("autonomy", "published", "held"), [
    ("moderate", [91], [89, 90]),
    ("advanced", [81], [79, 80]),
])
def test_autonomy_publishes_strictly_above_its_threshold(services: Services, autonomy: str,
                                                         published: list[int],
                                                         held: list[int]) -> None:
    bench = Bench(services, autonomy=autonomy)
    ids = {c: bench.suggest(c) for c in sorted(published + held)}
    done = bench.publish()
    assert sorted(bench.suggestion(s).confidence for s in done) == published
    for confidence in held:
        sug = bench.suggestion(ids[confidence])
        assert sug.status == "pending"
        threshold = 90 if autonomy == "moderate" else 80
        assert sug.evidence["autonomy"] == {
            "published": False,
            "reason": f"confidence {confidence} is not above the {autonomy} threshold of "
                      f"{threshold}"}


def test_thresholds_are_configurable(services: Services) -> None:
    bench = Bench(services, autonomy="moderate", moderate_auto_publish_above=70)
    low, high = bench.suggest(70), bench.suggest(71)
    assert bench.publish() == [high]
    assert bench.suggestion(low).status == "pending"


def test_conservative_never_publishes_even_at_full_confidence(services: Services) -> None:
    bench = Bench(services)  # conservative is the default
    sid = bench.suggest(100)
    assert bench.publish() == []
    assert bench.suggestion(sid).status == "pending"


def test_an_auto_published_answer_is_live_announced_audited_and_undoable(
        services: Services) -> None:
    bench = Bench(services, autonomy="moderate")
    sid = bench.suggest(95, question="How do I export my invoices as a spreadsheet?",
                        answer="Go to Billing > Invoices and press Export to get a CSV file.")
    assert bench.publish() == [sid]
    sug = bench.suggestion(sid)
    assert (sug.status, sug.decided_by, sug.decided_channel) == \
        ("auto_published", "autotrain", "auto")
    # Live at once: the chatbot's next question gets it.
    assert bench.answer("How do I export my invoices as a spreadsheet?") == sug.entry_id
    (note,) = bench.notifications()
    assert note.kind == "auto_published" and note.suggestion_id == sid
    assert "confidence 95 is above the moderate threshold of 90" in note.text
    (row,) = [a for a in bench.audit() if a.suggestion_id == sid]
    assert (row.action, row.actor, row.channel) == ("suggestion.auto_published", "autotrain",
                                                    "auto")
    assert row.after is not None and row.after["entry_action"] == "entry.created"
    # One click takes it back: the entry is switched off and no longer served.
    services.policy.undo(UndoSuggestion(suggestion_id=sid, actor=ALICE))
    assert bench.answer("How do I export my invoices as a spreadsheet?") is None
    assert bench.suggestion(sid).status == "undone"
    with pytest.raises(Conflict, match="undone"):
        services.policy.undo(UndoSuggestion(suggestion_id=sid, actor=ALICE))


def test_daily_limit_counts_in_the_bots_timezone(services: Services) -> None:
    # 14:00 UTC is 23:00 in Tokyo; 15:30 UTC is already the next day there.
    bench = Bench(services, autonomy="moderate", daily_auto_publish_limit=2,
                  timezone="Asia/Tokyo")
    ids = [bench.suggest(95) for _ in range(5)]
    first = bench.publish(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    assert len(first) == 2
    held = [bench.suggestion(s) for s in ids if s not in first]
    assert {s.evidence["autonomy"]["reason"] for s in held} == {
        "today's limit of 2 auto-published changes is reached"}
    # Same local day (still 23:45 in Tokyo): nothing more.
    assert bench.publish(datetime(2026, 3, 2, 14, 45, tzinfo=UTC)) == []
    # Same UTC day, but a new day in Tokyo: two more.
    assert len(bench.publish(datetime(2026, 3, 2, 15, 30, tzinfo=UTC))) == 2


def test_a_zero_daily_limit_publishes_nothing(services: Services) -> None:
    bench = Bench(services, autonomy="advanced", daily_auto_publish_limit=0)
    bench.suggest(99)
    assert bench.publish() == []


def test_excluded_categories_are_never_auto_published(services: Services) -> None:
    # A custom category can be excluded like the built-in ones.
    bench = Bench(services, autonomy="advanced", custom_categories=[
        {"name": "shipping", "description": "Delivery times and carriers",
         "keywords": ["delivery", "courier"]}],
        excluded_categories=["pricing", "legal", "medical", "shipping"])
    held = {name: bench.suggest(100, category=name)
            for name in ("pricing", "legal", "medical", "shipping")}
    general = bench.suggest(100)
    assert bench.publish() == [general]
    for name, sid in held.items():
        assert bench.suggestion(sid).evidence["autonomy"]["reason"] == \
            f'the "{name}" category is excluded from auto-publishing'
    # Lifting an exclusion is the admin's call; the others stay held.
    bench.configure(excluded_categories=["legal", "medical", "shipping"])
    assert bench.publish() == [held["pricing"]]
    assert all(bench.suggestion(held[n]).status == "pending"
               for n in ("legal", "medical", "shipping"))


@pytest.mark.parametrize("evidence", [{"needs_answer": True}, {"duplicate_of": "e1"},
                                      {"contradicts": ["e2"]}])
def test_suspect_suggestions_wait_for_a_person(services: Services,
                                               evidence: dict[str, Any]) -> None:
    bench = Bench(services, autonomy="advanced")
    sid = bench.suggest(99, evidence=evidence)
    assert bench.publish() == []
    assert bench.suggestion(sid).status == "pending"


def test_a_gap_a_reviewer_rejected_before_is_not_auto_published(services: Services) -> None:
    bench = Bench(services, autonomy="advanced")
    with session_scope(services.engine) as session:
        gap = Gap(bot_id=bench.bot_id, kind="new_answer", centroid=b"\0" * 4)
        session.add(gap)
    first = bench.suggest(70, gap_id=gap.id)
    services.policy.decide(Reject(suggestion_id=first, actor=ALICE,
                                  reason=RejectReason.wrong_information))
    second = bench.suggest(99, gap_id=gap.id)
    assert bench.publish() == []
    assert bench.suggestion(second).evidence["autonomy"]["reason"] == \
        "a reviewer rejected or undid an earlier proposal for these questions"


def test_pause_stops_auto_publishing_until_resumed(services: Services) -> None:
    bench = Bench(services, autonomy="moderate")
    sid = bench.suggest(99)
    services.policy.set_paused(SetPaused(bot_id=bench.bot_id, paused=True, actor=ALICE))
    assert bench.publish() == []
    with pytest.raises(Conflict, match="already paused"):
        services.policy.set_paused(SetPaused(bot_id=bench.bot_id, paused=True, actor=ALICE))
    services.policy.set_paused(SetPaused(bot_id=bench.bot_id, paused=False, actor=ALICE))
    assert bench.publish() == [sid]
    kinds = [n.kind for n in bench.notifications()]
    assert kinds == ["paused", "resumed", "auto_published"]


def test_a_person_and_autonomy_deciding_at_once_record_one_decision(
        services: Services) -> None:
    import threading

    bench = Bench(services, autonomy="moderate")
    sids = [bench.suggest(95) for _ in range(20)]
    outcomes: list[str] = []

    def person() -> None:
        for sid in sids:
            try:
                services.policy.decide(Reject(suggestion_id=sid, actor=ALICE))
                outcomes.append("person")
            except AlreadyDecided:
                outcomes.append("lost")

    thread = threading.Thread(target=person)
    thread.start()
    published = bench.publish()
    thread.join(timeout=60)
    assert outcomes.count("person") + len(published) == 20
    decided = [bench.suggestion(s) for s in sids]
    assert all(s.status in ("rejected", "auto_published") for s in decided)
    audit = [a for a in bench.audit() if a.suggestion_id in set(sids)]
    assert len(audit) == 20  # one row per suggestion, whoever won


def test_deferring_needs_a_later_date(services: Services) -> None:
    bench = Bench(services)
    sid = bench.suggest(50)
    with pytest.raises(InvalidInput) as err:
        services.policy.decide(Defer(suggestion_id=sid, actor=ALICE,
                                     until=datetime(2020, 1, 1, tzinfo=UTC)))
    assert err.value.field == "until"
    assert bench.suggestion(sid).status == "pending"


def test_category_correction_is_checked_and_withdraws_untrained_topics(
        services: Services) -> None:
    bench = Bench(services, training_excluded_categories=["medical"])
    sid = bench.suggest(60)
    with pytest.raises(InvalidInput) as err:
        services.policy.set_category(SetCategory(suggestion_id=sid, category="astrology",
                                                 actor=ALICE))
    assert err.value.field == "category"
    services.policy.set_category(SetCategory(suggestion_id=sid, category="pricing",
                                             actor=ALICE))
    sug = bench.suggestion(sid)
    assert (sug.category, sug.category_source, sug.status) == ("pricing", "admin", "pending")
    services.policy.set_category(SetCategory(suggestion_id=sid, category="Medical",
                                             actor=ALICE))
    assert bench.suggestion(sid).status == "withdrawn"
    with pytest.raises(AlreadyDecided, match="already withdrawn by alice at 20"):
        services.policy.decide(Approve(suggestion_id=sid, actor=ALICE))
    # Another untrained category keeps it out; a category that is trained brings it back.
    bench.configure(training_excluded_categories=["medical", "legal"])
    services.policy.set_category(SetCategory(suggestion_id=sid, category="legal",
                                             actor=ALICE))
    assert bench.suggestion(sid).status == "withdrawn"
    # A mistaken correction is put right by correcting again: it returns to the queue.
    services.policy.set_category(SetCategory(suggestion_id=sid, category=None, actor=ALICE))
    assert bench.suggestion(sid).status == "pending"


def test_pausing_through_the_settings_is_announced_too(services: Services) -> None:
    bench = Bench(services)
    bench.configure(enabled=False)
    bench.configure(enabled=True)
    assert [n.kind for n in bench.notifications()] == ["paused", "resumed"]


def test_every_command_writes_exactly_one_audit_row(services: Services) -> None:
    bench = Bench(services, autonomy="moderate")
    policy = services.policy
    rows = len(bench.audit())

    def one_more(action: str) -> None:
        nonlocal rows
        audit = bench.audit()
        assert len(audit) == rows + 1, [a.action for a in audit[rows:]]
        assert audit[-1].action == action
        rows += 1

    entry = policy.create_entry(CreateEntry(bot_id=bench.bot_id, question="Where is my order?",
                                            answer="Track it under Account > Orders.",
                                            actor=ALICE))
    one_more("entry.created")
    policy.update_entry(UpdateEntry(bot_id=bench.bot_id, entry_id=entry["id"], actor=ALICE,
                                    answer="Track it under Account > Orders > Track."))
    one_more("entry.updated")
    policy.revert_entry(RevertEntry(bot_id=bench.bot_id, entry_id=entry["id"], version=1,
                                    actor=ALICE))
    one_more("entry.reverted")
    policy.set_entry_active(SetEntryActive(bot_id=bench.bot_id, entry_id=entry["id"],
                                           active=False, actor=ALICE))
    one_more("entry.deactivated")
    policy.set_entry_active(SetEntryActive(bot_id=bench.bot_id, entry_id=entry["id"],
                                           active=True, actor=ALICE))
    one_more("entry.reactivated")
    policy.update_settings(UpdateSettings(bot_id=bench.bot_id, patch={"max_triggers": 5},
                                          actor=ALICE))
    one_more("settings.updated")
    policy.decide(Approve(suggestion_id=bench.suggest(50), actor=ALICE))
    one_more("suggestion.approved")
    edited = bench.suggest(50)
    policy.decide(EditAndApprove(suggestion_id=edited, actor=ALICE, answer="Edited answer."))
    one_more("suggestion.edited_and_approved")
    policy.decide(Reject(suggestion_id=bench.suggest(50), actor=ALICE))
    one_more("suggestion.rejected")
    policy.decide(Defer(suggestion_id=bench.suggest(50), actor=ALICE))
    one_more("suggestion.deferred")
    policy.set_category(SetCategory(suggestion_id=bench.suggest(50), category="legal",
                                    actor=ALICE))
    one_more("suggestion.category_set")
    policy.undo(UndoSuggestion(suggestion_id=edited, actor=ALICE))
    one_more("suggestion.undone")
    policy.set_paused(SetPaused(bot_id=bench.bot_id, paused=True, actor=ALICE))
    one_more("autotraining.paused")
    policy.set_paused(SetPaused(bot_id=bench.bot_id, paused=False, actor=ALICE))
    one_more("autotraining.resumed")
    bench.suggest(99)
    assert len(bench.publish()) == 1
    one_more("suggestion.auto_published")
    # Who, when, through which channel, and what changed.
    for row in bench.audit():
        assert row.actor and row.channel and row.at is not None
        if row.action.startswith(("entry.", "suggestion.approved", "suggestion.auto")):
            assert row.after is not None and row.entry_id


def test_deactivate_and_revert_reach_the_vector_index_at_once(services: Services) -> None:
    bench = Bench(services)
    entry = services.policy.create_entry(CreateEntry(
        bot_id=bench.bot_id, question="Can I pay with PayPal?", answer="Yes, at checkout.",
        variants=["do you take paypal"], actor=ALICE))
    services.policy.set_entry_active(SetEntryActive(bot_id=bench.bot_id, entry_id=entry["id"],
                                                    active=False, actor=ALICE))
    stored = services.index.snapshot(bot_id=bench.bot_id)
    assert stored and all(p["active"] is False for p in stored.values())
    assert bench.answer("Can I pay with PayPal?") is None
    services.policy.revert_entry(RevertEntry(bot_id=bench.bot_id, entry_id=entry["id"],
                                             version=1, actor=ALICE))
    stored = services.index.snapshot(bot_id=bench.bot_id)
    assert all(p["active"] is True for p in stored.values())
    assert bench.answer("Can I pay with PayPal?") == entry["id"]
    with Session(services.engine) as session:
        row = session.get(KBEntry, entry["id"])
        assert row is not None and row.version == 3


def test_the_daily_limit_goes_to_new_phrasings_first(services: Services) -> None:
    """New phrasings change no answer: autonomy publishes them before a new answer, even a
    more urgent one, and a changed answer last."""
    bench = Bench(services, autonomy="moderate", daily_auto_publish_limit=2)
    entry = services.policy.create_entry(CreateEntry(
        bot_id=bench.bot_id, question="Where is my order?",
        answer="Track it under Account > Orders.", actor=ALICE))
    urgent_new = bench.suggest(96, priority="critical")
    improve = bench.suggest(97, kind="improve_answer", entry_id=entry["id"],
                            answer="Track it under Account > Orders > Track.")
    variants = bench.suggest(95, kind="add_variants", entry_id=entry["id"], priority="low",
                             answer="Track it under Account > Orders.")
    assert bench.publish() == [variants, urgent_new]
    assert bench.suggestion(improve).evidence["autonomy"]["reason"] == \
        "today's limit of 2 auto-published changes is reached"
