"""The review door: the tenant check for every command whatever the channel, one queue order
for the API, the digest and every caller, cards that carry what a reviewer needs, and
announcements delivered once per channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app import create_app
from bot.mail.render import Digest, DigestItem, render_digest
from core.db import session_scope
from core.errors import AlreadyDecided, NotFound
from core.models import (
    AuditEvent,
    Conversation,
    Gap,
    GapEvidence,
    IndexOutbox,
    KBEntry,
    Suggestion,
)
from core.policy.commands import (
    Actor,
    Approve,
    Channel,
    CreateEntry,
    Defer,
    EditAndApprove,
    Reject,
    RevertEntry,
    RollbackEntry,
    SetCategory,
    SetEntryActive,
    SetPaused,
    UndoSuggestion,
    UpdateEntry,
    UpdateSettings,
)
from core.policy.notify import NotificationKind, announce
from core.review import BotRef, Period
from core.services import Services
from core.status import SuggestionStatus
from tests.helpers import ADMIN_KEY

SLACK = Actor(name="U0ALICE", channel=Channel.slack)
MAIL = Actor(name="manager@shop.example", channel=Channel.email)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def add_suggestion(svc: Services, bot: BotRef, *, priority: str = "medium", score: float = 5.0,
                   confidence: int = 80, created_at: datetime = NOW,
                   question: str = "Do you ship to Canada?", gap_id: str | None = None,
                   **fields: Any) -> str:
    sug = Suggestion(bot_id=bot.id, kind=fields.pop("kind", "new_answer"), priority=priority,
                     score=score, confidence=confidence, question=question,
                     answer=fields.pop("answer", "Yes, we ship to Canada in 5 to 8 days."),
                     variants=fields.pop("variants", ["ship to canada?"]), gap_id=gap_id,
                     created_at=created_at, **fields)
    with session_scope(svc.engine) as session:
        session.add(sug)
    return sug.id


def snapshot(svc: Services, bot: BotRef) -> tuple[Any, ...]:
    """Everything a command could change for a bot."""
    with Session(svc.engine) as session:
        return (
            sorted((s.id, s.status, s.category) for s in session.exec(
                select(Suggestion).where(Suggestion.bot_id == bot.id))),
            sorted((e.id, e.version, e.active, e.answer) for e in session.exec(
                select(KBEntry).where(KBEntry.bot_id == bot.id))),
            len(session.exec(select(AuditEvent.id).where(AuditEvent.bot_id == bot.id)).all()),
            svc.review.bot_by_id(bot.id).settings,
        )


@pytest.fixture
def shops(services: Services) -> tuple[BotRef, BotRef]:
    return (services.review.create_bot(slug="shop-a", name="Shop A"),
            services.review.create_bot(slug="shop-b", name="Shop B"))


def test_every_command_on_another_bots_things_is_not_found_and_changes_nothing(
        services: Services, shops: tuple[BotRef, BotRef]) -> None:
    a, b = shops
    review = services.review
    entry = review.execute(CreateEntry(bot_id=b.id, question="Where is my order?",
                                       answer="Track it from the link in your email.",
                                       actor=SLACK), bot=b).entry
    assert entry is not None
    review.execute(UpdateEntry(bot_id=b.id, entry_id=entry.id, actor=SLACK,
                               answer="Track it from the link in your confirmation email."),
                   bot=b)
    pending = add_suggestion(services, b)
    published = add_suggestion(services, b, question="Do you ship to Mexico?")
    review.execute(Approve(suggestion_id=published, actor=SLACK), bot=b)
    before = snapshot(services, b)

    commands: list[Any] = [
        Approve(suggestion_id=pending, actor=SLACK),
        EditAndApprove(suggestion_id=pending, actor=MAIL, answer="Sure."),
        Reject(suggestion_id=pending, actor=MAIL),
        Defer(suggestion_id=pending, actor=SLACK),
        UndoSuggestion(suggestion_id=published, actor=SLACK),
        SetCategory(suggestion_id=pending, category="pricing", actor=SLACK),
    ]
    # Entry and bot commands: naming the other bot, or naming mine with the other's entry.
    for bot_id in (a.id, b.id):
        commands += [
            UpdateEntry(bot_id=bot_id, entry_id=entry.id, actor=SLACK, answer="Hacked."),
            RevertEntry(bot_id=bot_id, entry_id=entry.id, version=1, actor=SLACK),
            RollbackEntry(bot_id=bot_id, entry_id=entry.id, actor=SLACK),
            SetEntryActive(bot_id=bot_id, entry_id=entry.id, active=False, actor=SLACK),
        ]
    commands += [
        CreateEntry(bot_id=b.id, question="Sneaky?", answer="Yes.", actor=SLACK),
        SetPaused(bot_id=b.id, paused=True, actor=SLACK),
        UpdateSettings(bot_id=b.id, patch={"autonomy": "advanced"}, actor=MAIL),
    ]
    for command in commands:
        with pytest.raises(NotFound):
            review.execute(command, bot=a)
    with pytest.raises(NotFound):
        review.card(pending, bot=a)
    with pytest.raises(NotFound):
        review.history(entry.id, bot=a)
    assert snapshot(services, b) == before
    assert review.queue(a) == []
    # The same commands for the right bot work.
    assert review.execute(Reject(suggestion_id=pending, actor=MAIL), bot=b).status == \
        SuggestionStatus.rejected


def test_one_order_for_the_door_the_digest_and_the_api(services: Services,
                                                      shops: tuple[BotRef, BotRef]) -> None:
    a, _ = shops
    older, newer = NOW - timedelta(days=2), NOW
    made = {
        "low": add_suggestion(services, a, priority="low", score=50.0, question="Gift wrap?"),
        "critical": add_suggestion(services, a, priority="critical", score=6.0,
                                   question="Charger for iPhone 15?"),
        # Same level and score: the surer one first, then the one waiting longer.
        "medium-sure": add_suggestion(services, a, score=9.0, confidence=95,
                                      created_at=newer, question="Student discount?"),
        "medium-old": add_suggestion(services, a, score=9.0, confidence=70,
                                     created_at=older, question="Price match?"),
        "medium-new": add_suggestion(services, a, score=9.0, confidence=70,
                                     created_at=newer, question="Bulk orders?"),
        "medium-top": add_suggestion(services, a, score=20.0, confidence=40,
                                     question="Warranty claims?"),
    }
    expected = [made[k] for k in ("critical", "medium-top", "medium-sure", "medium-old",
                                  "medium-new", "low")]
    door = [v.id for v in services.review.queue(a)]
    assert door == expected

    queue = services.review.queue(a)
    digest = render_digest(Digest(
        digest_id="d1", bot_name=a.name, bot_slug=a.slug, timezone="UTC", generated_at=NOW,
        stats=services.review.stats(a), more=0, chart_png=None, reply_enabled=True,
        announcements=[], items=[DigestItem(number=n, view=v, approve_url=None,
                                            reject_url=None) for n, v in enumerate(queue, 1)]))
    positions = [digest.text.index(v.question) for v in queue]
    assert positions == sorted(positions)

    with TestClient(create_app(services, background_jobs=False)) as client:
        got = client.get(f"/api/v1/bots/{a.slug}/suggestions?status=pending",
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert [s["id"] for s in got.json()["items"]] == expected
    assert services.review.queue(a, limit=2) == services.review.queue(a)[:2]


def test_a_card_says_why_with_redacted_samples_replay_and_autonomy(
        services: Services, shops: tuple[BotRef, BotRef]) -> None:
    a, _ = shops
    with session_scope(services.engine) as session:
        gap = Gap(bot_id=a.id, kind="new_answer", centroid=b"\0")
        session.add(gap)
        session.flush()
        asked = ["Do you ship to Canada? mail me at jo@example.com",
                 "do you ship to canada?", "Do you ship to Canada?",
                 "Shipping to Toronto possible?", "can I order from Vancouver"]
        for i, q in enumerate(asked):
            session.add(GapEvidence(gap_id=gap.id, conversation_id=f"c{i}", question=q,
                                    signal="unanswered", at=NOW - timedelta(hours=i),
                                    embedding=b"\0"))
        gap_id = gap.id
    sid = add_suggestion(services, a, gap_id=gap_id, confidence=55, evidence={
        "reason": "Asked 5 times this week; the bot could not answer.",
        "evidence_replay_summary": "With this live the bot would answer 4 of 5 of these "
                                   "customers' questions (now 0).",
        "autonomy": {"published": False, "reason": "confidence 55 is not above 90"}})
    card = services.review.card(sid, bot=a)
    assert card.reason == "Asked 5 times this week; the bot could not answer."
    assert card.samples == ["Do you ship to Canada? mail me at [email]",
                            "do you ship to canada?", "Shipping to Toronto possible?"]
    assert card.replay is not None and "4 of 5" in card.replay
    assert card.autonomy == "Not published automatically: confidence 55 is not above 90"
    assert card.low_confidence and card.is_open and card.status_words == "waiting for review"
    assert card.kind_label == "New answer"

    done = services.review.execute(Approve(suggestion_id=sid, actor=SLACK), bot=a)
    assert done.status == SuggestionStatus.approved and done.entry is not None
    assert done.entry.question == "Do you ship to Canada?" and done.entry_action == \
        "entry.created"
    assert done.suggestion is not None and done.suggestion.decided is not None
    assert (done.suggestion.decided.by, done.suggestion.decided.channel) == ("U0ALICE", "slack")
    with pytest.raises(AlreadyDecided, match="already approved by U0ALICE"):
        services.review.execute(Reject(suggestion_id=sid, actor=MAIL), bot=a)


def test_each_channel_delivers_each_announcement_once(services: Services,
                                                      shops: tuple[BotRef, BotRef]) -> None:
    a, b = shops
    with session_scope(services.engine) as session:
        for text in ("Published automatically: shipping to Canada.", "Auto-training paused."):
            announce(session, bot_id=a.id, kind=NotificationKind.auto_published, text=text)
        announce(session, bot_id=b.id, kind=NotificationKind.paused, text="B paused.")
    review = services.review
    slack = review.pending_announcements(a, Channel.slack)
    assert [n.text for n in slack] == ["Published automatically: shipping to Canada.",
                                       "Auto-training paused."]
    review.mark_delivered(a, Channel.slack, [n.id for n in slack])
    assert review.pending_announcements(a, Channel.slack) == []
    # Slack showing them does not keep them out of the next digest.
    email = review.pending_announcements(a, Channel.email)
    assert [n.id for n in email] == [n.id for n in slack]
    # Delivering twice (a job run again) is harmless; another bot's ids are not mine to mark.
    other = review.pending_announcements(b, Channel.email)
    review.mark_delivered(a, Channel.email, [n.id for n in email + other])
    review.mark_delivered(a, Channel.email, [n.id for n in email])
    assert review.pending_announcements(a, Channel.email) == []
    assert [n.text for n in review.pending_announcements(b, Channel.email)] == ["B paused."]
    first = review.announcements(a)[0]
    assert set(first.delivered) == {"slack", "email"}

    with TestClient(create_app(services, background_jobs=False)) as client:
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        left = client.get(f"/api/v1/bots/{b.slug}/notifications?undelivered=true&channel=slack",
                          headers=auth).json()["items"]
        done = client.get(f"/api/v1/bots/{a.slug}/notifications", headers=auth).json()["items"]
    assert [n["text"] for n in left] == ["B paused."]
    assert all(set(n["delivered_to"]) == {"slack", "email"} for n in done)


def test_stats_compare_this_period_with_the_one_before(services: Services,
                                                      shops: tuple[BotRef, BotRef]) -> None:
    a, _ = shops
    now = datetime.now(UTC)

    def conversation(i: int, at: datetime, *, resolved: bool, csat: int | None) -> Conversation:
        return Conversation(bot_id=a.id, external_id=f"c{i}", started_at=at, ended_at=at,
                            messages=[], resolved_automatically=resolved,
                            escalated=not resolved, csat=csat)

    with session_scope(services.engine) as session:
        for i in range(4):  # this week: 3 of 4 resolved
            session.add(conversation(i, now - timedelta(days=1, hours=i), resolved=i < 3,
                                     csat=5 if i < 3 else 2))
        for i in range(4, 6):  # the week before: none resolved
            session.add(conversation(i, now - timedelta(days=9), resolved=False, csat=None))
    sid = add_suggestion(services, a, priority="critical")
    add_suggestion(services, a, question="Gift wrap?")
    services.review.execute(Reject(suggestion_id=sid, actor=MAIL), bot=a)

    stats = services.review.stats(a, Period.week)
    assert (stats.current.conversations, stats.current.resolution_rate,
            stats.current.escalations, stats.current.csat) == (4, 0.75, 1, 4.25)
    assert (stats.previous.conversations, stats.previous.resolution_rate,
            stats.previous.csat) == (2, 0.0, None)
    assert (stats.current.suggestions_decided, stats.previous.suggestions_decided) == (1, 0)
    assert (stats.pending, stats.critical_pending) == (1, 0)
    with TestClient(create_app(services, background_jobs=False)) as client:
        got = client.get(f"/api/v1/bots/{a.slug}/stats?period=week",
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        bad = client.get(f"/api/v1/bots/{a.slug}/stats?period=year",
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert (got["period"], got["current"]["resolution_rate"], got["previous"]["conversations"]) \
        == ("week", 0.75, 2)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "period"]


def test_a_decision_relays_only_its_own_bots_index_changes(
        services: Services, shops: tuple[BotRef, BotRef]) -> None:
    a, b = shops
    # Another bot's change still waiting for the background relay...
    with session_scope(services.engine) as session:
        session.add(IndexOutbox(bot_id=b.id, entry_id="not-relayed-yet"))
    sid = add_suggestion(services, a)
    done = services.review.execute(Approve(suggestion_id=sid, actor=SLACK), bot=a)
    assert done.entry is not None
    # ...is left to it, while this bot's new entry is answerable at once.
    with Session(services.engine) as session:
        waiting = session.exec(select(IndexOutbox.bot_id).where(
            col(IndexOutbox.processed_at).is_(None))).all()
    assert waiting == [b.id]
    assert services.answer(bot=a, question="Do you ship to Canada?").entry_id == done.entry.id
