"""Bulk ingestion stores each transcript exactly as sent, in one INSERT per batch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session, select

from core.bots import create_bot
from core.conversations import ConversationIn, ingest_batch
from core.db import make_engine, migrate, session_scope
from core.models import Conversation, ConversationAnswer
from tests.helpers import TEST_DATABASE_URL, reset_postgres

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        if not TEST_DATABASE_URL:
            pytest.skip("TEST_DATABASE_URL not set (scripts/test.sh starts PostgreSQL)")
        url = TEST_DATABASE_URL
        reset_postgres(url)
    migrate(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


def _mixed(n: int) -> list[dict[str, Any]]:
    """Transcripts whose optional fields vary row to row: some CSAT, some channel, some
    feedback, answered / escalated / abandoned (so resolution times are set or not)."""
    out = []
    for i in range(n):
        at = T0 + timedelta(minutes=i)
        msgs: list[dict[str, Any]] = [{"role": "customer", "text": f"how do I top up card {i}?",
                                       "at": at.isoformat()}]
        conv: dict[str, Any] = {"id": f"c{i}", "started_at": at.isoformat()}
        if i % 3 == 0:
            msgs += [{"role": "bot", "text": "Top up in the app.", "entry_id": "e1",
                      "at": (at + timedelta(seconds=2)).isoformat()},
                     {"role": "customer", "text": "thanks!",
                      "at": (at + timedelta(seconds=30)).isoformat()}]
            conv["feedback"] = [{"message_index": 1, "rating": "up" if i % 2 else "down"}]
        elif i % 3 == 1:
            msgs += [{"role": "bot", "text": "Sorry, I am not sure. Let me get a colleague.",
                      "at": (at + timedelta(seconds=2)).isoformat()},
                     {"role": "agent", "text": "Use Top up in the app.",
                      "at": (at + timedelta(minutes=3)).isoformat()}]
        if i % 4 == 0:
            conv["csat"] = 1 + i % 5
        if i % 5 == 0:
            conv["channel"] = "web"
        conv["messages"] = msgs
        out.append(conv)
    return out


def test_a_mixed_batch_is_stored_as_sent_in_one_insert(engine: Engine) -> None:
    with session_scope(engine) as session:
        bot_id = create_bot(session, slug="bank", name="Bank").id
    sent = [ConversationIn.model_validate(c) for c in _mixed(60)]
    inserts: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CONVERSATION "):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert ingest_batch(engine, bot_id=bot_id, conversations=sent) == (60, 0)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # Rows with and without a CSAT, a channel or a resolution time share one statement.
    assert len(inserts) == 1
    with Session(engine) as session:
        stored = {c.external_id: c for c in session.exec(
            select(Conversation).where(Conversation.bot_id == bot_id))}
        answers = session.exec(select(ConversationAnswer)).all()
    assert set(stored) == {c.id for c in sent}
    for conv in sent:
        row = stored[conv.id]
        assert row.csat == conv.csat and row.channel == conv.channel
        assert [m["text"] for m in row.messages] == [m.text for m in conv.messages]
        assert [m["entry_id"] for m in row.messages] == [m.entry_id for m in conv.messages]
        assert row.feedback == [{"message_index": f.message_index, "rating": f.rating.value}
                                for f in conv.feedback]
        assert row.escalated == any(m.role.value == "agent" for m in conv.messages)
        assert (row.resolution_seconds is None) == (not row.resolved_automatically
                                                    and not row.escalated)
        assert row.analyzed_at is None
    # Answers with entry e1: every third conversation, satisfied by a thumbs-up only.
    assert len(answers) == 20
    assert sum(a.satisfied for a in answers) == sum(
        1 for i in range(0, 60, 3) if i % 2)
