"""The vector index: embedded and server Chroma, outbox recovery, reindex and drift checks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.bots import create_bot
from core.db import session_scope
from core.embeddings import Embedder
from core.index import ChromaIndex, Hit, IndexUnavailable, Phrasing
from core.models import Bot
from core.policy.commands import Actor, Channel, CreateEntry, SetEntryActive
from core.services import Services, build_core_services
from core.settings import load_settings
from tests.helpers import TEST_CHROMA_URL, run_cli

ACTOR = Actor(name="tester", channel=Channel.api)
FAQ = [
    ("How long does shipping take?", "Standard shipping takes 3-5 business days."),
    ("How do I return an item?", "Start a return from Account > Orders within 30 days."),
    ("Which payment methods do you accept?", "We accept cards, PayPal and Apple Pay."),
]


def _bot(svc: Services, slug: str = "shop") -> Bot:
    with session_scope(svc.engine) as session:
        return create_bot(session, slug=slug, name=slug)


def _seed(svc: Services, bot: Bot) -> list[str]:
    return [svc.policy.create_entry(CreateEntry(bot_id=bot.id, question=q, answer=a,
                                                actor=ACTOR))["id"] for q, a in FAQ]


@pytest.fixture
def server_services(tmp_path: Path, embedder: Embedder) -> Iterator[Services]:
    if not TEST_CHROMA_URL:
        pytest.skip("TEST_CHROMA_URL not set (scripts/test.sh starts a Chroma server)")
    settings = load_settings(AUTOTRAIN_DATA_DIR=tmp_path / "data", CHROMA_URL=TEST_CHROMA_URL,
                             DATABASE_URL="", REDIS_URL="")
    svc = build_core_services(settings, embedder=embedder)
    yield svc
    svc.close()


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_answers_come_from_the_index_in_both_modes(mode: str, services: Services,
                                                   request: pytest.FixtureRequest) -> None:
    svc = services if mode == "embedded" else request.getfixturevalue("server_services")
    assert isinstance(svc.index, ChromaIndex)
    bot = _bot(svc, slug=f"shop-{mode}")
    ids = _seed(svc, bot)
    got = svc.answer(bot=svc.review.bot_by_id(bot.id),
                     question="how long does shipping usually take?")
    assert got.entry_id == ids[0] and not got.escalate
    svc.policy.set_entry_active(SetEntryActive(bot_id=bot.id, entry_id=ids[0], active=False,
                                               actor=ACTOR))
    got = svc.answer(bot=svc.review.bot_by_id(bot.id), question="How long does shipping take?")
    assert got.entry_id != ids[0]
    assert svc.index_sync.reconcile(bot_id=bot.id)["in_sync"]


class FlakyIndex:
    """Wraps a real index; while `down`, every write fails like an unreachable server."""

    def __init__(self, inner: ChromaIndex) -> None:
        self.inner = inner
        self.down = False

    def sync_entry(self, *, bot_id: str, entry_id: str, phrasings: list[Phrasing],
                   vectors: np.ndarray) -> None:
        if self.down:
            raise IndexUnavailable("connection refused")
        self.inner.sync_entry(bot_id=bot_id, entry_id=entry_id, phrasings=phrasings,
                              vectors=vectors)

    def remove_entry(self, *, bot_id: str, entry_id: str) -> None:
        if self.down:
            raise IndexUnavailable("connection refused")
        self.inner.remove_entry(bot_id=bot_id, entry_id=entry_id)

    def existing_ids(self, *, bot_id: str, entry_id: str) -> set[str]:
        return self.inner.existing_ids(bot_id=bot_id, entry_id=entry_id)

    def query(self, *, bot_id: str, vector: np.ndarray, k: int) -> list[Hit]:
        return self.inner.query(bot_id=bot_id, vector=vector, k=k)

    def query_many(self, *, bot_id: str, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        return self.inner.query_many(bot_id=bot_id, vectors=vectors, k=k)

    def snapshot(self, *, bot_id: str) -> dict[str, dict[str, object]]:
        return self.inner.snapshot(bot_id=bot_id)

    def reset_bot(self, *, bot_id: str) -> None:
        self.inner.reset_bot(bot_id=bot_id)

    def heartbeat(self) -> None:
        if self.down:
            raise IndexUnavailable("connection refused")
        self.inner.heartbeat()


def test_outbox_relay_catches_up_after_the_index_was_down(tmp_path: Path,
                                                          embedder: Embedder) -> None:
    settings = load_settings(AUTOTRAIN_DATA_DIR=tmp_path / "data", DATABASE_URL="",
                             CHROMA_URL="", REDIS_URL="")
    flaky = FlakyIndex(ChromaIndex(path=settings.chroma_path, model_id=embedder.model_id))
    svc = build_core_services(settings, embedder=embedder, index=flaky)
    bot = _bot(svc)
    flaky.down = True
    # The write succeeds (SQL is the truth) even though the index is unreachable...
    entry = svc.policy.create_entry(CreateEntry(bot_id=bot.id, question=FAQ[0][0],
                                                answer=FAQ[0][1], actor=ACTOR))
    assert svc.index_sync.reconcile(bot_id=bot.id)["missing"] == 1
    assert svc.answer(bot=svc.review.bot_by_id(bot.id), question=FAQ[0][0]).escalate
    # ...and the relay delivers it once the index is back.
    flaky.down = False
    result = svc.index_sync.relay()
    assert result.processed == 1 and result.pending == 0
    assert svc.answer(bot=svc.review.bot_by_id(bot.id), question=FAQ[0][0]).entry_id == entry["id"]
    assert svc.index_sync.reconcile(bot_id=bot.id)["in_sync"]
    svc.close()




def test_reindex_rebuilds_a_deleted_chroma_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    kb = tmp_path / "kb.csv"
    kb.write_text("question,answer,variants,category\n" + "\n".join(
        f'"{q}","{a}","",' for q, a in FAQ) + "\n")
    out = run_cli(data, "import", "kb", str(kb), "--bot", "shop", "--create")
    assert out.returncode == 0, out.stderr
    assert run_cli(data, "reindex", "--check").returncode == 0

    shutil.rmtree(data / "chroma")
    check = run_cli(data, "reindex", "--check")
    assert check.returncode == 1 and '"missing": 3' in check.stdout, check.stdout + check.stderr

    rebuilt = run_cli(data, "reindex")
    assert rebuilt.returncode == 0 and "3 phrasings indexed" in rebuilt.stdout, rebuilt.stderr
    assert run_cli(data, "reindex", "--check").returncode == 0
