"""Replay on a small labelled set: the real cycle and policy raise resolution week by week."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.pipeline.signals import FALLBACK_RE
from core.replay import (
    FALLBACK,
    AgentStyle,
    Replay,
    ReplayConfig,
    load_labelled,
    reference_answer,
)
from core.services import Services

TOPICS = {
    "shipping_time": ["How long does shipping take?", "when will my parcel arrive",
                      "how many days for delivery", "What is the delivery time?",
                      "how soon will I get my order", "delivery takes how long?",
                      "When does my package come?", "shipping duration please"],
    "reset_password": ["How do I reset my password?", "I forgot my password",
                       "can't log in, forgot password", "password reset help",
                       "how to change my forgotten password", "lost my password",
                       "I need a new password", "reset my login password"],
    "refund_status": ["Where is my refund?", "refund not received yet",
                      "when do I get my money back", "how long do refunds take",
                      "my refund hasn't arrived", "status of my refund",
                      "still waiting for refund", "refund processing time"],
    "store_hours": ["What are your opening hours?", "when are you open",
                    "store hours today?", "are you open on sunday",
                    "what time do you close", "opening times please",
                    "hours of the shop", "when does the store open"],
}


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "labelled.csv"
    rows = ["text,label"] + [f'"{t}",{label}' for label, texts in TOPICS.items() for t in texts]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_replay_learns_the_uncovered_topics(services: Services, tmp_path: Path) -> None:
    data = load_labelled(_csv(tmp_path))
    config = ReplayConfig(coverage=0.5, conversations_per_week=40, decisions_per_week=10,
                          weeks=3, seed_phrasings=2, seed=1)
    result = Replay(services, data=data, config=config).run()
    first, last = result.weeks[0], result.weeks[-1]
    assert [w.week for w in result.weeks] == [1, 2, 3]
    assert all(w.conversations == 40 for w in result.weeks)
    # the uncovered half of the topics escalates in week 1 and gets learned afterwards
    assert first.escalated >= 10
    assert last.resolution > first.resolution + 0.2
    assert sum(w.approved + w.edited for w in result.weeks) >= 2
    assert "approved as is" in result.table()
    # every decision is in the calibration table, in the bucket of its confidence
    decided = sum(w.approved + w.edited + w.rejected for w in result.weeks)
    assert len(result.verdicts) == decided
    table = result.calibration().splitlines()
    assert sum(int(line.split()[1]) for line in table[1:6]) == decided
    png = result.chart(tmp_path / "replay.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_simulated_bot_falls_back_the_way_signals_detect_it() -> None:
    # otherwise the replay would measure a bot whose hand-overs the cycle never sees
    assert FALLBACK_RE.search(FALLBACK)


def test_bad_labelled_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nhello\n")
    with pytest.raises(ValueError, match="two columns"):
        load_labelled(bad)
    bad.write_text("text,label\nhello,\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        load_labelled(bad)


def test_the_simulated_admin_reads_what_an_answer_says(services: Services, tmp_path: Path
                                                       ) -> None:
    replay = Replay(services, data=load_labelled(_csv(tmp_path)),
                    config=ReplayConfig(agent_style=AgentStyle.distinct))
    answer = reference_answer("refund_status")
    topic, facts = answer.split(": ", 1)
    first, *rest = re.split(r"(?<=\.)\s+", facts)
    reordered = f"{topic}: " + " ".join([*rest, first])
    assert reordered != answer
    assert replay._says(answer) == "refund_status"
    assert replay._says("  " + answer.replace(" ", "  ")) == "refund_status"
    assert replay._says(reordered) == "refund_status"
    assert replay._says(answer + " Call us on Sundays.") is None  # an extra claim needs an edit


def test_replay_with_autonomy_counts_and_judges_what_published_itself(
        services: Services, tmp_path: Path) -> None:
    from sqlmodel import Session, select

    from core.bots import Autonomy
    from core.models import Suggestion

    data = load_labelled(_csv(tmp_path))
    # No reviewer at all: whatever the bot learns, autonomy published.
    config = ReplayConfig(coverage=0.5, conversations_per_week=40, decisions_per_week=0,
                          weeks=3, seed_phrasings=2, seed=1, autonomy=Autonomy.advanced)
    replay = Replay(services, data=data, config=config)
    result = replay.run()
    published = sum(w.auto_published for w in result.weeks)
    assert published >= 1
    assert sum(w.approved + w.edited + w.rejected for w in result.weeks) == 0
    assert result.weeks[-1].resolution > result.weeks[0].resolution
    correct = sum(w.auto_correct for w in result.weeks)
    assert f"auto-published {published}: {correct} correct" in result.table()
    assert replay.bot is not None
    with Session(services.engine) as session:
        rows = session.exec(select(Suggestion).where(
            Suggestion.bot_id == replay.bot.id,
            Suggestion.decided_by == "autotrain")).all()
    # Every one the table counts is in the database, wrong ones undone by the admin.
    assert len(rows) == published
    assert sum(r.status == "undone" for r in rows) == published - correct
