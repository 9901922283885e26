"""What the cycle may do to the queue (core.policy.queue): a withdrawn suggestion says why, a
late reviewer is told, and a deferred one comes back with a reminder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from core.db import session_scope
from core.errors import AlreadyDecided
from core.models import Suggestion
from core.policy import queue
from core.policy.commands import Actor, Approve, Channel, Defer
from core.review import BotRef
from core.services import Services
from core.status import SuggestionStatus

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BOB = Actor(name="manager@shop.example", channel=Channel.email)


def pending(svc: Services, bot: BotRef, status: SuggestionStatus = SuggestionStatus.pending
            ) -> str:
    sug = Suggestion(bot_id=bot.id, kind="new_answer", priority="medium", score=3.0,
                     confidence=80, question="Do you ship to Canada?",
                     answer="Yes, in 5 to 8 days.", status=status)
    with session_scope(svc.engine) as session:
        session.add(sug)
    return sug.id


def test_a_withdrawn_suggestion_tells_the_late_reviewer_why(services: Services) -> None:
    bot = services.review.create_bot(slug="shop", name="Shop")
    sid = pending(services, bot)
    with session_scope(services.engine) as session:
        sug = session.get(Suggestion, sid)
        assert sug is not None
        queue.withdraw(session, sug, because=queue.MERGED, at=NOW)
    card = services.review.card(sid, bot=bot)
    assert (card.status, card.withdrawn_because) == (SuggestionStatus.withdrawn, queue.MERGED)
    assert services.review.queue(bot) == []
    with pytest.raises(AlreadyDecided, match="withdrawn by autotrain \\(its gap was merged"):
        services.review.execute(Approve(suggestion_id=sid, actor=BOB), bot=bot)


def test_only_open_suggestions_can_be_withdrawn(services: Services) -> None:
    bot = services.review.create_bot(slug="shop", name="Shop")
    sid = pending(services, bot)
    services.review.execute(Approve(suggestion_id=sid, actor=BOB), bot=bot)
    with session_scope(services.engine) as session:
        sug = session.get(Suggestion, sid)
        assert sug is not None
        queue.withdraw(session, sug, because=queue.NOTHING_LEFT, at=NOW)
    assert services.review.card(sid, bot=bot).status == SuggestionStatus.approved


def test_a_deferred_suggestion_returns_when_its_day_comes(services: Services) -> None:
    bot = services.review.create_bot(slug="shop", name="Shop")
    sid = pending(services, bot)
    services.review.execute(Defer(suggestion_id=sid, actor=BOB, until=NOW + timedelta(days=1),
                                  at=NOW), bot=bot)
    with Session(services.engine) as session:
        assert queue.return_deferred(session, bot_id=bot.id, as_of=NOW) == 0
    with session_scope(services.engine) as session:
        assert queue.return_deferred(session, bot_id=bot.id, as_of=NOW + timedelta(days=2)) == 1
    assert [v.id for v in services.review.queue(bot)] == [sid]
    [note] = services.review.pending_announcements(bot, Channel.slack)
    assert note.kind == "deferred_returned" and "deferred by manager@shop.example" in note.text
