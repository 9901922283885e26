"""Opt-in tier: a whole cycle drafted by a real local model (SmolLM2 behind llama.cpp's
server), wired from settings exactly as `autotrain serve` wires it. Skipped unless the local
model is installed (README, "Running against a local LLM"); run with `pytest -m local_llm`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from core.bots import create_bot
from core.conversations import ConversationIn, store_conversations
from core.db import session_scope
from core.embeddings import Embedder
from core.models import CycleRun, Suggestion, utcnow
from core.services import build_core_services
from core.settings import load_settings
from tests.helpers import CHARGER_QUESTIONS, CHARGER_REPLIES, escalated_conversation
from tests.integration.test_local_llm import MODEL_ALIAS, llama_server, pytestmark

__all__ = ["llama_server", "pytestmark"]  # the server fixture and the opt-in skips


@pytest.mark.timeout(900)
def test_a_cycle_drafts_its_suggestions_with_the_local_model(
        llama_server: str, tmp_path: Path, embedder: Embedder) -> None:
    settings = load_settings(
        AUTOTRAIN_DATA_DIR=tmp_path / "data", DATABASE_URL="", CHROMA_URL="", REDIS_URL="",
        OPENAI_BASE_URL=llama_server, OPENAI_API_KEY="local", AUTOTRAIN_LLM_MODEL=MODEL_ALIAS,
        AUTOTRAIN_GENERATOR="llm", AUTOTRAIN_LLM_CONCURRENCY=1,
        AUTOTRAIN_LLM_TIMEOUT_SECONDS=300, AUTOTRAIN_LLM_ENFORCE_SCHEMA=True)
    svc = build_core_services(settings, embedder=embedder)
    try:
        assert svc.cycle.generator is not None and svc.cycle.generator.name == "llm"
        now = utcnow()
        with session_scope(svc.engine) as session:
            bot = create_bot(session, slug="shop", name="Shop")
            store_conversations(session, bot_id=bot.id, conversations=[
                ConversationIn.model_validate(escalated_conversation(
                    f"c{i}", q, CHARGER_REPLIES[i % len(CHARGER_REPLIES)],
                    now - timedelta(hours=6 - i)))
                for i, q in enumerate(CHARGER_QUESTIONS)])
        result = svc.cycle.run(bot_id=bot.id, as_of=now)
        assert result.suggestions_created == 1
        # the model was asked, and what it cost is on the cycle's record
        assert result.tokens.prompt_tokens > 100 and result.tokens.completion_tokens > 0
        with Session(svc.engine) as session:
            [sug] = session.exec(select(Suggestion).where(Suggestion.bot_id == bot.id)).all()
            run = session.exec(select(CycleRun).where(CycleRun.bot_id == bot.id)
                               .order_by(col(CycleRun.started_at).desc())).first()
        assert run is not None and run.stats["generator"] == "llm"
        assert run.stats["tokens"]["prompt"] == result.tokens.prompt_tokens
        # with the schema enforced, the model's own draft is the suggestion
        assert sug.evidence.get("generator") == "llm", sug.warning
        assert sug.answer.strip() and "offline" not in (sug.warning or "")
        print(f"\n{sug.evidence.get('generator')} draft ({result.tokens}, "
              f"{result.generation_seconds:.1f} s): {sug.answer!r} warning={sug.warning!r}")
    finally:
        svc.close()
