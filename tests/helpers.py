"""Builders for realistic test data shared by several test modules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, text

from core.embeddings import Embedder
from core.replay import FALLBACK  # the simulated bot's hand-over line
from core.review import Review

ROOT = Path(__file__).resolve().parents[1]

ADMIN_KEY = "test-admin-key-0123456789"
# Real mail from many clients and servers, copied with each project's licence from
# ../shared/data/email-fixtures (its README.md names the sources): kept in the repository so
# the email tests run wherever the suite does.
EMAIL_FIXTURES = ROOT / "tests" / "fixtures" / "email"
# Set by scripts/test.sh, which starts these servers on loopback; tests needing them skip
# when they are absent.
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_CHROMA_URL = os.environ.get("TEST_CHROMA_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")

def reset_postgres(url: str) -> None:
    """Empty the test PostgreSQL database: every table, type and alembic's version go."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def escalated_conversation(cid: str, question: str, agent_reply: str | None, at: datetime,
                           ) -> dict[str, Any]:
    """Customer asks, the bot falls back, a human agent answers (if given), customer thanks."""
    messages = [
        {"role": "customer", "text": question, "at": at.isoformat()},
        {"role": "bot", "text": FALLBACK, "at": (at + timedelta(seconds=2)).isoformat()},
    ]
    if agent_reply is not None:
        messages += [
            {"role": "agent", "text": agent_reply,
             "at": (at + timedelta(minutes=3)).isoformat()},
            {"role": "customer", "text": "great, thanks!",
             "at": (at + timedelta(minutes=4)).isoformat()},
        ]
    return {"id": cid, "started_at": at.isoformat(), "messages": messages}


CHARGER_QUESTIONS = [
    "Does the charger work with iPhone 15?",
    "is your usb-c charger compatible with iphone 15 pro",
    "will the 30W charger charge my iPhone 15",
    "charger for iphone 15 compatible?",
    "Can I use your charger with my iPhone 15 Plus?",
    "Will your USB-C wall charger work for an iPhone 15 Pro Max?",
]
CHARGER_REPLIES = [
    "Hi! Yes, our 30W USB-C charger works with every iPhone 15 model using a USB-C cable.",
    "Hello there, the 30W USB-C charger is compatible with all iPhone 15 models, just use a "
    "USB-C cable.",
    "Yes it is! Every iPhone 15 model charges with our 30W USB-C charger and a USB-C cable.",
]


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `autotrain ARGS` in a fresh process on `data_dir`, embedded mode, like a user would."""
    env = {**os.environ, "AUTOTRAIN_DATA_DIR": str(data_dir), "ANONYMIZED_TELEMETRY": "False"}
    for name in ("DATABASE_URL", "CHROMA_URL", "REDIS_URL", "AUTOTRAIN_API_KEY"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          env=env, timeout=180, cwd=ROOT)


def _plain(text: str) -> str:
    return re.sub(r"[^a-z0-9$]+", "", text.lower())


def drafted_from(answer: str, replies: list[str]) -> bool:
    """The offline generator drafts from the agents' replies, stripping greetings and matching
    the bot's punctuation and capitals: what is left is part of one reply, word for word."""
    return len(_plain(answer)) > 20 and any(_plain(answer) in _plain(r) for r in replies)


class CountingEmbedder:
    """The real embedder, recording every call (its size) and every text embedded."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.calls: list[int] = []
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        self.texts += list(texts)
        return self.inner.embed(texts)


def charger_bot(svc: Any, *, slug: str, now: datetime) -> str:
    """A bot whose customers asked the charger question six times in the hour before `now`,
    each handed to an agent: one clear gap for the next cycle. Returns the bot id."""
    from core.bots import create_bot
    from core.conversations import ConversationIn, store_conversations
    from core.db import session_scope

    with session_scope(svc.engine) as session:
        bot = create_bot(session, slug=slug, name=slug.title())
        store_conversations(session, bot_id=bot.id, conversations=[
            ConversationIn.model_validate(escalated_conversation(
                f"{slug}-{i}", q, CHARGER_REPLIES[i % 3], now - timedelta(minutes=5 * i + 1)))
            for i, q in enumerate(CHARGER_QUESTIONS)])
        return bot.id


def database_review(engine: Engine) -> Review:
    """The review door over a database alone: enough for reads and keys (migration tests)."""
    return Review(engine=engine, policy=None, cycle=None,  # type: ignore[arg-type]
                  index_sync=None, index=None, embedder=None)  # type: ignore[arg-type]
