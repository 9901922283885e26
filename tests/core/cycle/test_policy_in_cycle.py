"""The policy inside the cycle: auto-publishing through the real pipeline, the free plan's
weekly allowance, topics excluded from auto-training, kept corrections, deferred reminders,
and the watch after publish on a scripted drop in satisfaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, select

from core.bots import bot_settings
from core.conversations import ConversationIn, store_conversations
from core.db import session_scope
from core.errors import AlreadyDecided, CycleRunning
from core.models import (
    AuditEvent,
    CycleRun,
    EntryWatch,
    KBEntry,
    Notification,
    Suggestion,
)
from core.pipeline.wording import clean_question
from core.policy.commands import (
    Actor,
    Approve,
    Channel,
    CreateEntry,
    Defer,
    SetCategory,
    UpdateEntry,
    UpdateSettings,
)
from core.review import BotRef
from core.services import Services
from tests.gap_world import GapWorld
from tests.helpers import CHARGER_QUESTIONS, CHARGER_REPLIES

ALICE = Actor(name="alice", channel=Channel.email)
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# Eight unrelated topics the bot cannot answer, each asked twice and answered by an agent.
TOPICS: dict[str, tuple[list[str], str]] = {
    "canada": (["Do you ship to Canada?", "Can you deliver my order to Canada?"],
               "Yes, we ship to Canada in 5-8 business days."),
    "gift": (["Do you offer gift wrapping?", "Can you gift wrap my order?"],
             "Yes, tick 'gift wrap' at checkout and we wrap it for you."),
    "hours": (["What are your store opening hours?", "When is your shop open?"],
              "Our stores are open 9am to 6pm, Monday to Saturday."),
    "password": (["How do I change my password?", "I want to update my login password"],
                 "Go to Account > Security and choose Change password."),
    "warranty": (["How long is the warranty on headphones?",
                  "What warranty do your headphones have?"],
                 "All our headphones come with a two-year warranty."),
    "loyalty": (["How do loyalty points work?", "How do I earn reward points?"],
                "You earn one point per order and can redeem them in your account."),
    "pickup": (["Can I pick up my order in store?", "Is in-store collection possible?"],
               "Yes, choose Click & Collect at checkout and pick it up in two hours."),
    "stock": (["When will the blue hoodie be back in stock?",
               "Is the blue hoodie restocked soon?"],
              "The blue hoodie is restocked every month; sign up for an alert on its page."),
}


def answered(cid: str, question: str, entry: dict[str, Any], at: datetime, *,
             happy: bool) -> dict[str, Any]:
    """The bot answers with `entry`; the customer thanks it, or gives a thumbs-down."""
    messages = [{"role": "customer", "text": question, "at": at.isoformat()},
                {"role": "bot", "text": entry["answer"], "entry_id": entry["id"],
                 "at": (at + timedelta(seconds=2)).isoformat()}]
    if happy:
        messages.append({"role": "customer", "text": "great, thanks!",
                         "at": (at + timedelta(seconds=30)).isoformat()})
    return {"id": cid, "started_at": at.isoformat(), "messages": messages,
            "feedback": [] if happy else [{"message_index": 1, "rating": "down"}]}


def store(world: GapWorld, convs: list[dict[str, Any]]) -> None:
    with session_scope(world.svc.engine) as session:
        store_conversations(session, bot_id=world.bot_id,
                            conversations=[ConversationIn.model_validate(c) for c in convs])


def configure(world: GapWorld, **patch: Any) -> None:
    world.svc.policy.update_settings(UpdateSettings(bot_id=world.bot_id, patch=patch,
                                                    actor=ALICE))


def notifications(world: GapWorld) -> list[Notification]:
    with Session(world.svc.engine) as session:
        return list(session.exec(select(Notification).where(
            Notification.bot_id == world.bot_id).order_by(col(Notification.id))))


def answer_entry(world: GapWorld, question: str) -> str | None:
    return world.svc.answer(bot=_bot(world), question=question).entry_id


def test_the_cycle_auto_publishes_what_clears_the_threshold(services: Services) -> None:
    world = GapWorld(services)
    world.escalate("charger", CHARGER_QUESTIONS, CHARGER_REPLIES, MONDAY)
    world.cycle(MONDAY + timedelta(hours=1))
    (sug,) = world.open_suggestions()
    assert sug.category is None and sug.confidence > 0
    # At its confidence exactly, moderate autonomy still waits for a person ...
    configure(world, autonomy="moderate", moderate_auto_publish_above=sug.confidence)
    assert world.cycle(MONDAY + timedelta(hours=2)).auto_published == 0
    assert world.suggestions("pending")[0].evidence["autonomy"]["published"] is False
    # ... one point lower and the next cycle publishes it, live for the chatbot at once.
    configure(world, moderate_auto_publish_above=sug.confidence - 1)
    assert world.cycle(MONDAY + timedelta(hours=3)).auto_published == 1
    (done,) = world.suggestions("auto_published")
    assert answer_entry(world, "Does your charger work with the iPhone 15?") == done.entry_id
    assert [n.kind for n in notifications(world)][-1] == "auto_published"


def test_the_free_plan_offers_five_suggestions_a_week_most_urgent_first(
        services: Services) -> None:
    world = GapWorld(services)
    configure(world, plan="free")
    # Charger: six customers this week, so critical; the eight other topics two each.
    world.escalate("charger", CHARGER_QUESTIONS, CHARGER_REPLIES, MONDAY)
    for name, (questions, reply) in TOPICS.items():
        world.escalate(name, questions, [reply], MONDAY)
    first = world.cycle(MONDAY + timedelta(hours=2))
    offered = world.open_suggestions()
    assert len(offered) == 5 and first.held_by_plan == first.gaps - 5 >= 3
    assert "critical" in {s.priority for s in offered}
    assert any(s.question in {clean_question(q) for q in CHARGER_QUESTIONS} for s in offered)
    # Later the same week: still five.
    assert world.cycle(MONDAY + timedelta(days=2)).suggestions_created == 0
    # Next week the held-back gaps get their turn, without any new conversation.
    second = world.cycle(MONDAY + timedelta(days=7, hours=1))
    assert second.suggestions_created == min(5, first.held_by_plan)
    # A professional plan is unlimited.
    configure(world, plan="professional")
    world.cycle(MONDAY + timedelta(days=7, hours=2))
    assert len(world.open_suggestions()) == first.gaps


def test_a_topic_excluded_from_auto_training_gets_no_suggestion(services: Services) -> None:
    world = GapWorld(services)
    configure(world, training_excluded_categories=["medical"])
    world.escalate("dose", ["Can I take ibuprofen with your sleep supplement?",
                            "Is it safe to take your melatonin with my medication?",
                            "What dose of melatonin is safe during pregnancy?"],
                   ["Please ask your doctor or pharmacist before combining medication."],
                   MONDAY)
    questions, reply = TOPICS["gift"]
    world.escalate("gift", questions, [reply], MONDAY)
    result = world.cycle(MONDAY + timedelta(hours=1))
    assert result.excluded >= 1
    assert [s.question for s in world.open_suggestions()] in ([q] for q in questions)


def test_a_corrected_category_survives_new_evidence(services: Services) -> None:
    world = GapWorld(services)
    world.escalate("charger", CHARGER_QUESTIONS[:3], CHARGER_REPLIES, MONDAY)
    world.cycle(MONDAY + timedelta(hours=1))
    (sug,) = world.open_suggestions()
    services.policy.set_category(SetCategory(suggestion_id=sug.id, category="legal",
                                             actor=ALICE))
    world.escalate("charger-more", CHARGER_QUESTIONS[3:], CHARGER_REPLIES, MONDAY)
    world.cycle(MONDAY + timedelta(hours=2))
    (again,) = world.open_suggestions()
    assert again.id == sug.id and again.evidence["occurrences_total"] == 6
    assert (again.category, again.category_source) == ("legal", "admin")


def test_a_deferred_suggestion_returns_with_a_reminder(services: Services) -> None:
    world = GapWorld(services)
    world.escalate("charger", CHARGER_QUESTIONS, CHARGER_REPLIES, MONDAY)
    world.cycle(MONDAY + timedelta(hours=1))
    (sug,) = world.open_suggestions()
    services.policy.decide(Defer(suggestion_id=sug.id, actor=ALICE,
                                 until=MONDAY + timedelta(days=3),
                                 at=MONDAY + timedelta(hours=2)))
    world.cycle(MONDAY + timedelta(days=2))
    assert world.suggestions("deferred") and not notifications(world)
    world.cycle(MONDAY + timedelta(days=3, hours=1))
    assert [s.id for s in world.suggestions("pending")] == [sug.id]
    (note,) = notifications(world)
    assert note.kind == "deferred_returned" and note.suggestion_id == sug.id
    assert "deferred by alice on 2026-03-02" in note.text


# -- watch after publish --------------------------------------------------------------------

DELIVERY_Q = "How long does delivery take?"


def delivery_entry(world: GapWorld) -> dict[str, Any]:
    return world.svc.policy.create_entry(CreateEntry(
        bot_id=world.bot_id, question=DELIVERY_Q, variants=["when will my parcel arrive"],
        answer="Delivery takes 3 to 5 working days.", actor=ALICE))


def drop_after_change(world: GapWorld) -> tuple[dict[str, Any], datetime]:
    """An entry 12 customers were happy with, improved (approved) into a worse answer that
    10 of the next 12 customers give a thumbs-down."""
    services = world.svc
    entry = delivery_entry(world)
    change_at = MONDAY + timedelta(days=20)
    store(world, [answered(f"before-{i}", DELIVERY_Q, entry, MONDAY + timedelta(days=i),
                           happy=True) for i in range(12)])
    with session_scope(services.engine) as session:
        sug = Suggestion(bot_id=world.bot_id, kind="improve_answer", priority="medium",
                         confidence=70, question=DELIVERY_Q, entry_id=entry["id"],
                         answer="Delivery takes 10 to 14 working days.", variants=[])
        session.add(sug)
    services.policy.decide(Approve(suggestion_id=sug.id, actor=ALICE, at=change_at))
    changed = {**entry, "answer": "Delivery takes 10 to 14 working days."}
    store(world, [answered(f"after-{i}", DELIVERY_Q, changed,
                           change_at + timedelta(hours=3 * i + 1), happy=i < 2)
                  for i in range(12)])
    return entry, change_at


def test_a_drop_after_an_approved_change_raises_a_critical_rollback(
        services: Services) -> None:
    world = GapWorld(services)
    entry, change_at = drop_after_change(world)
    result = world.cycle(change_at + timedelta(days=3))
    assert result.rollbacks_suggested == 1
    (rollback,) = [s for s in world.open_suggestions() if s.kind == "rollback"]
    assert rollback.priority == "critical" and rollback.entry_id == entry["id"]
    assert rollback.answer == "Delivery takes 3 to 5 working days."  # what a revert restores
    assert "2 of 12 customers (17%) were satisfied since the change, against 100% of 12" \
        in rollback.evidence["reason"]
    assert "negative feedback rose from 0% to 83%" in rollback.evidence["reason"]
    assert [n.kind for n in notifications(world)] == ["rollback_suggested"]
    # The sandbox shows what approving it would serve, publishing nothing.
    tried = services.review.sandbox(_bot(world), question=DELIVERY_Q,
                             suggestion_ids=[rollback.id])
    assert tried.answer == "Delivery takes 3 to 5 working days."
    assert tried.live.answer == "Delivery takes 10 to 14 working days."
    # Approving it restores the version before the change, served at once.
    services.policy.decide(Approve(suggestion_id=rollback.id, actor=ALICE))
    with Session(services.engine) as session:
        live = session.get(KBEntry, entry["id"])
        assert live is not None and live.answer == "Delivery takes 3 to 5 working days."
    # One alert per change: the next cycle does not raise it again.
    assert world.cycle(change_at + timedelta(days=4)).rollbacks_suggested == 0


def test_a_change_that_holds_up_passes_its_watch(services: Services) -> None:
    world = GapWorld(services)
    entry = delivery_entry(world)
    change_at = MONDAY + timedelta(days=1)
    with session_scope(services.engine) as session:
        sug = Suggestion(bot_id=world.bot_id, kind="add_variants", priority="low",
                         confidence=70, question=DELIVERY_Q, entry_id=entry["id"],
                         answer=entry["answer"], variants=["how many days for shipping"])
        session.add(sug)
    services.policy.decide(Approve(suggestion_id=sug.id, actor=ALICE, at=change_at))
    store(world, [answered(f"ok-{i}", DELIVERY_Q, entry, change_at + timedelta(hours=i + 1),
                           happy=True) for i in range(12)])
    assert world.cycle(change_at + timedelta(days=3)).rollbacks_suggested == 0
    settings = bot_settings(_bot(world))
    world.cycle(change_at + timedelta(days=settings.watch_days, hours=1))
    with Session(services.engine) as session:
        (watch,) = session.exec(select(EntryWatch).where(
            EntryWatch.entry_id == entry["id"])).all()
    assert watch.status == "passed" and watch.result is not None
    assert watch.result["after"]["satisfaction_percent"] == 100


def failing_auto_published_entry(world: GapWorld, autonomy: str
                                 ) -> tuple[dict[str, Any], datetime]:
    """Autonomy publishes a new (wrong) answer; the next 10 customers give a thumbs-down."""
    configure(world, autonomy=autonomy)
    publish_at = MONDAY + timedelta(days=1)
    with session_scope(world.svc.engine) as session:
        sug = Suggestion(bot_id=world.bot_id, kind="new_answer", priority="critical",
                         confidence=95, question="Do you ship to Mars?",
                         answer="Yes, we ship to Mars in two days.", variants=[])
        session.add(sug)
    assert world.svc.policy.auto_publish(bot_id=world.bot_id, at=publish_at).published == \
        [sug.id]
    with Session(world.svc.engine) as session:
        published = session.get(Suggestion, sug.id)
        assert published is not None and published.entry_id
        entry = {"id": published.entry_id, "answer": published.answer}
    assert answer_entry(world, "Do you ship to Mars?") == entry["id"]
    store(world, [answered(f"mars-{i}", "Do you ship to Mars?", entry,
                           publish_at + timedelta(hours=i + 1), happy=False)
                  for i in range(10)])
    return entry, publish_at


def test_advanced_autonomy_rolls_back_its_own_failing_change(services: Services) -> None:
    world = GapWorld(services)
    entry, publish_at = failing_auto_published_entry(world, "advanced")
    result = world.cycle(publish_at + timedelta(days=2))
    assert result.rolled_back == 1 and result.rollbacks_suggested == 0
    # Switched off at once (it created the entry), the reviewers told, the change audited.
    assert answer_entry(world, "Do you ship to Mars?") is None
    kinds = [n.kind for n in notifications(world)]
    assert kinds[:2] == ["auto_published", "auto_rolled_back"]
    with Session(services.engine) as session:
        rows = session.exec(select(AuditEvent).where(
            AuditEvent.entry_id == entry["id"]).order_by(col(AuditEvent.id))).all()
    assert [r.action for r in rows][:2] == ["suggestion.auto_published", "entry.rolled_back"]
    assert "0 of 10 customers (0%) were satisfied" in str(rows[1].after)


def _bot(world: GapWorld) -> BotRef:
    return world.svc.review.bot_by_id(world.bot_id)


def test_a_free_form_entry_label_does_not_hide_a_pricing_answer(services: Services) -> None:
    # The KB labels its entries freely ("returns"); that label must not stand in for the
    # policy's categories when the improved answer states a fee.
    world = GapWorld(services)
    answer = "Start a return under Account > Orders within 30 days."
    entry = services.policy.create_entry(CreateEntry(
        bot_id=world.bot_id, question="How do I return an item?", category="returns",
        answer=answer, actor=ALICE))
    questions = ["How do I return an opened item?", "how do i send back an opened box",
                 "Can I return something I already opened?", "returning an opened item?",
                 "I opened it, how do I return it?", "return process for opened products"]
    convs = [answered(f"fee-{i}", q, entry, MONDAY + timedelta(minutes=i), happy=False)
             for i, q in enumerate(questions)]
    for conv in convs:
        conv["messages"].append({"role": "agent",
                                 "at": (MONDAY + timedelta(hours=1)).isoformat(),
                                 "text": f"{answer} Opened items carry a $9.99 restocking "
                                         "fee, taken from the refund."})
    store(world, convs)
    world.cycle(MONDAY + timedelta(hours=2))
    (sug,) = world.open_suggestions()
    assert (sug.kind, sug.entry_id) == ("improve_answer", entry["id"])
    assert sug.category == "pricing"
    assert "fee" in sug.evidence["category_why"]


def test_a_failing_new_entry_gets_a_switch_off_suggestion(services: Services) -> None:
    # Moderate autonomy published it; only advanced rolls back by itself, so a person is
    # asked to switch it off (the change created the entry: nothing to revert to).
    world = GapWorld(services)
    entry, publish_at = failing_auto_published_entry(world, "moderate")
    assert world.cycle(publish_at + timedelta(days=2)).rolled_back == 0
    (rollback,) = [s for s in world.open_suggestions() if s.kind == "rollback"]
    assert rollback.evidence["action"] == "deactivate"
    assert "under the bot's 60% bar" in rollback.evidence["reason"]
    # Still live until a person decides; the sandbox shows the bot would hand over.
    assert answer_entry(world, "Do you ship to Mars?") == entry["id"]
    tried = services.review.sandbox(_bot(world), question="Do you ship to Mars?",
                             suggestion_ids=[rollback.id])
    assert tried.escalate and tried.live.entry_id == entry["id"]
    services.policy.decide(Approve(suggestion_id=rollback.id, actor=ALICE))
    assert answer_entry(world, "Do you ship to Mars?") is None


def test_a_newer_change_withdraws_a_pending_rollback(services: Services) -> None:
    world = GapWorld(services)
    entry, change_at = drop_after_change(world)
    world.cycle(change_at + timedelta(days=3))
    (rollback,) = [s for s in world.open_suggestions() if s.kind == "rollback"]
    # A person fixes the answer by hand: rolling back now would undo their fix as well.
    services.policy.update_entry(UpdateEntry(bot_id=world.bot_id, entry_id=entry["id"],
                                             actor=ALICE, answer="Delivery takes 2 days."))
    with pytest.raises(AlreadyDecided, match=r"withdrawn by autotrain \(the entry changed"):
        services.policy.decide(Approve(suggestion_id=rollback.id, actor=ALICE))
    with Session(services.engine) as session:
        live = session.get(KBEntry, entry["id"])
        assert live is not None and live.answer == "Delivery takes 2 days."


# -- one cycle per bot at a time, across processes --------------------------------------------


def running_elsewhere(world: GapWorld, started: datetime) -> None:
    """Another process's cycle: its unfinished run row is the bot's lease."""
    with session_scope(world.svc.engine) as session:
        session.add(CycleRun(bot_id=world.bot_id, as_of=started, started_at=started))


def test_a_cycle_running_in_another_process_refuses_a_second(services: Services) -> None:
    world = GapWorld(services)
    world.escalate("charger", CHARGER_QUESTIONS, CHARGER_REPLIES, MONDAY)
    running_elsewhere(world, datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(CycleRunning, match="already running"):
        world.cycle(MONDAY + timedelta(hours=1))
    assert not world.open_suggestions()  # nothing half-done


def test_a_stale_lease_of_a_dead_process_is_taken_over(services: Services) -> None:
    world = GapWorld(services)
    world.escalate("charger", CHARGER_QUESTIONS, CHARGER_REPLIES, MONDAY)
    running_elsewhere(world, datetime.now(UTC) - timedelta(hours=7))
    assert world.cycle(MONDAY + timedelta(hours=1)).suggestions_created == 1
    with Session(services.engine) as session:
        runs = session.exec(select(CycleRun).where(CycleRun.bot_id == world.bot_id)).all()
    assert all(r.finished_at is not None for r in runs)
    assert sum(r.stats.get("failed") == "abandoned (stale lease)" for r in runs) == 1


def test_a_failed_cycle_releases_its_lease(services: Services) -> None:
    world = GapWorld(services)
    world.escalate("charger", CHARGER_QUESTIONS, CHARGER_REPLIES, MONDAY)
    real = services.cycle.embedder

    class Broken:
        model_id, dimension = real.model_id, real.dimension

        def embed(self, texts: Any) -> Any:
            raise RuntimeError("embedding server went away")

    services.cycle.embedder = Broken()  # type: ignore[assignment]
    with pytest.raises(RuntimeError):
        world.cycle(MONDAY + timedelta(hours=1))
    services.cycle.embedder = real
    # The next cycle runs at once and does the work the failed one did not.
    assert world.cycle(MONDAY + timedelta(hours=2)).suggestions_created == 1
