"""The command line: imports validate the whole file first; cycle and migrate work end to end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from core.db import make_engine
from core.models import Bot, Suggestion
from core.settings import load_settings
from tests.helpers import (
    CHARGER_QUESTIONS,
    CHARGER_REPLIES,
    ROOT,
    TEST_REDIS_URL,
    escalated_conversation,
    run_cli,
)


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_import_conversations_then_cycle_finds_the_gap(tmp_path: Path) -> None:
    now = datetime.now(UTC) - timedelta(hours=1)
    convs = [escalated_conversation(f"c{i}", q, CHARGER_REPLIES[i % 3], now - timedelta(hours=i))
             for i, q in enumerate(CHARGER_QUESTIONS)]
    data = tmp_path / "data"
    out = run_cli(data, "import", "conversations",
               str(_write_jsonl(tmp_path / "c.jsonl", convs)), "--bot", "shop", "--create")
    assert out.returncode == 0, out.stderr
    assert "6 new, 0 updated" in out.stdout
    again = run_cli(data, "import", "conversations", str(tmp_path / "c.jsonl"), "--bot", "shop")
    assert "0 new, 6 updated" in again.stdout
    cycle = run_cli(data, "cycle", "--bot", "shop")
    assert cycle.returncode == 0, cycle.stderr
    stats = json.loads(cycle.stdout.split(": ", 1)[1])
    assert stats["conversations_analyzed"] == 6 and stats["suggestions_created"] == 1


def test_a_bad_line_stops_the_import_and_writes_nothing(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    good = escalated_conversation("ok", CHARGER_QUESTIONS[0], CHARGER_REPLIES[0], now)
    bad = escalated_conversation("bad", CHARGER_QUESTIONS[1], CHARGER_REPLIES[1], now)
    bad["messages"][1]["role"] = "robot"
    data = tmp_path / "data"
    path = _write_jsonl(tmp_path / "c.jsonl", [good, bad])
    out = run_cli(data, "import", "conversations", str(path), "--bot", "shop", "--create")
    assert out.returncode == 1
    assert "nothing imported" in out.stderr and "c.jsonl:2" in out.stderr
    assert "messages.1.role" in out.stderr
    # nothing was written: not even the bot (validation happens before any write)
    good_only = _write_jsonl(tmp_path / "g.jsonl", [good])
    assert "1 new" in run_cli(data, "import", "conversations", str(good_only), "--bot", "shop",
                           "--create").stdout


def test_kb_csv_import_reports_the_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_text("question,answer,variants,category\n"
                    '"How long is shipping?","3-5 days","shipping time|delivery time",shipping\n'
                    '"Do you price match?","",,\n')
    out = run_cli(tmp_path / "data", "import", "kb", str(path), "--bot", "shop", "--create")
    assert out.returncode == 1 and "kb.csv:3" in out.stderr and "answer" in out.stderr
    path.write_text("question,text\nx,y\n")
    out = run_cli(tmp_path / "data", "import", "kb", str(path), "--bot", "shop", "--create")
    assert out.returncode == 1 and "answer" in out.stderr


def test_migrate_reports_the_revision(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    from core.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    out = run_cli(tmp_path / "data", "migrate")
    assert out.returncode == 0 and f"schema at revision {head}" in out.stdout


def test_kb_import_is_all_or_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, [
        {"question": "How long is shipping?", "answer": "3-5 business days."},
        {"question": "Do you price match?", "answer": "   "},  # blank once trimmed
    ])
    out = run_cli(data, "import", "kb", str(path), "--bot", "shop", "--create")
    assert out.returncode == 1 and "nothing imported" in out.stderr and "answer" in out.stderr
    check = run_cli(data, "reindex", "--check")
    assert '"expected": 0' in check.stdout, check.stdout
    _write_jsonl(path, [{"question": "How long is shipping?", "answer": "3-5 business days."}])
    assert "imported 1 KB entries" in run_cli(data, "import", "kb", str(path), "--bot",
                                                "shop").stdout


def test_the_worker_without_redis_says_what_to_do(tmp_path: Path) -> None:
    out = run_cli(tmp_path / "data", "worker", "--burst")
    assert out.returncode == 2
    assert "needs REDIS_URL" in out.stderr and "autotrain serve" in out.stderr


def test_the_worker_runs_a_cycle_queued_on_redis(tmp_path: Path) -> None:
    if not TEST_REDIS_URL:
        pytest.skip("TEST_REDIS_URL not set (scripts/test.sh starts Redis)")
    from arq import create_pool
    from arq.connections import RedisSettings

    now = datetime.now(UTC) - timedelta(hours=1)
    convs = [escalated_conversation(f"c{i}", q, CHARGER_REPLIES[i % 3], now - timedelta(hours=i))
             for i, q in enumerate(CHARGER_QUESTIONS)]
    data = tmp_path / "data"
    assert run_cli(data, "import", "conversations", str(_write_jsonl(tmp_path / "c.jsonl", convs)),
                   "--bot", "shop", "--create").returncode == 0
    settings = load_settings(AUTOTRAIN_DATA_DIR=data, DATABASE_URL="", CHROMA_URL="",
                             REDIS_URL="")
    engine = make_engine(settings.sqlalchemy_url)
    with Session(engine) as session:
        bot = session.exec(select(Bot).where(Bot.slug == "shop")).one()

    async def enqueue() -> None:
        pool = await create_pool(RedisSettings.from_dsn(TEST_REDIS_URL))
        try:
            await pool.flushdb()
            assert await pool.enqueue_job("run_cycle", bot.id, _job_id=f"cycle:{bot.id}")
        finally:
            await pool.aclose()

    asyncio.run(enqueue())
    env = {**os.environ, "AUTOTRAIN_DATA_DIR": str(data), "REDIS_URL": TEST_REDIS_URL,
           "ANONYMIZED_TELEMETRY": "False"}
    for name in ("DATABASE_URL", "CHROMA_URL", "AUTOTRAIN_API_KEY"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-m", "cli", "worker", "--burst"], env=env,
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "worker started on REDIS_URL (burst)" in out.stdout
    assert TEST_REDIS_URL not in out.stdout + out.stderr
    with Session(engine) as session:
        pending = session.exec(select(Suggestion).where(Suggestion.bot_id == bot.id)).all()
    assert len(pending) == 1 and pending[0].status == "pending"
    engine.dispose()
