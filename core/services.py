"""The ready adapters the domain works with, built once from settings by each entry point."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from core.answering import AnswerResult, answer_question
from core.batching import BatchingIndex
from core.bots import KeyScope
from core.cycle import Cycle
from core.db import make_engine, migrate
from core.embeddings import Embedder
from core.generation import Generator
from core.index import ChromaIndex, PhrasingIndex
from core.kb import IndexSync
from core.keycache import KeyCache
from core.policy.service import Policy
from core.review import BotRef, Review
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    embedder: Embedder
    index: PhrasingIndex
    index_sync: IndexSync
    policy: Policy
    cycle: Cycle
    # The one entry point of every review channel (core.review).
    review: Review
    # What `answer` queries: the index behind a micro-batching front (core.batching), so
    # concurrent questions share one query; None: `index` itself.
    answer_index: PhrasingIndex | None = None
    # Who holds each presented API key, remembered for a few seconds (core.keycache).
    keys: KeyCache[tuple[str, str, str | None, KeyScope]] | None = None

    def key_holder(self, key: str) -> tuple[str, str, str | None, KeyScope] | None:
        """(key id, key name, bot id or None for the admin, scope) of a presented key, or
        None when it is unknown or revoked."""
        if self.keys is None:
            return self.review.key_holder(key, admin_key=self._admin_key())
        return self.keys.holder(key)

    def forget_keys(self) -> None:
        """A key was revoked: this process stops trusting what it remembered at once."""
        if self.keys is not None:
            self.keys.forget_all()

    def _admin_key(self) -> str | None:
        return self.settings.api_key.get_secret_value() if self.settings.api_key else None

    def answer(self, *, bot: BotRef, question: str) -> AnswerResult:
        return answer_question(engine=self.engine, index=self.answer_index or self.index,
                               embedder=self.embedder,
                               bot_id=bot.id, question=question,
                               threshold=bot.settings.answer_threshold)

    def close(self) -> None:
        self.engine.dispose()


def build_embedder(settings: Settings) -> Embedder:
    from core.batching import BatchingEmbedder
    from core.embeddings import CachedEmbedder

    base = _base_embedder(settings)
    if settings.embedder == "openai":
        # An embeddings request costs a network round trip whatever it carries: concurrent
        # questions share one. The offline model is not batched across requests: its cost is
        # per token, not per call, and one shared run at a time gave a third of the answers/s
        # under load on this project's 2-core host (README, Performance).
        base = BatchingEmbedder(base)
    return CachedEmbedder(base)


def _base_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "openai":
        import openai

        from core.embeddings import OpenAIEmbedder

        client = openai.OpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key
            else "not-set",
            timeout=30.0,
        )
        return OpenAIEmbedder(client, model=settings.embedding_model)
    from core.embeddings import OnnxMiniLMEmbedder

    return OnnxMiniLMEmbedder()


def build_generator(settings: Settings, embedder: Embedder) -> Generator:
    """Offline drafting by default; the LLM when configured, with offline as its fallback."""
    from core.generation.offline import OfflineGenerator

    offline = OfflineGenerator(embedder)
    if not settings.uses_llm:
        return offline
    import openai

    from core.generation.llm import REPLY_SCHEMA, LLMGenerator

    assert settings.llm_model is not None  # Settings refuses an LLM without a model
    client = openai.OpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key
        else "not-set",  # local servers (llama.cpp, Ollama) ignore the key
        timeout=settings.llm_timeout_seconds,
        max_retries=0,  # LLMGenerator retries with backoff itself
    )
    return LLMGenerator(client, settings.llm_model, max_concurrency=settings.llm_concurrency,
                        timeout_s=settings.llm_timeout_seconds, fallback=offline,
                        response_format={"type": "json_object", "schema": REPLY_SCHEMA}
                        if settings.llm_enforce_schema else None)


def build_core_services(settings: Settings, *, run_migrations: bool = True,
                        embedder: Embedder | None = None,
                        index: PhrasingIndex | None = None,
                        generator: Generator | None = None) -> Services:
    """Wire the domain from settings. Tests pass their own embedder or index where useful."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.sqlalchemy_url
    if run_migrations:
        migrate(url)
    engine = make_engine(url)
    embedder = embedder or build_embedder(settings)
    if index is None:
        index = ChromaIndex(url=settings.chroma_url, model_id=embedder.model_id) \
            if settings.chroma_url else \
            ChromaIndex(path=settings.chroma_path, model_id=embedder.model_id)
    index_sync = IndexSync(engine=engine, index=index, embedder=embedder)
    policy = Policy(engine=engine, index_sync=index_sync)
    cycle = Cycle(engine=engine, embedder=embedder, index=index,
                  generator=generator or build_generator(settings, embedder), policy=policy)
    svc = Services(
        settings=settings,
        engine=engine,
        embedder=embedder,
        index=index,
        index_sync=index_sync,
        policy=policy,
        cycle=cycle,
        review=Review(engine=engine, policy=policy, cycle=cycle, index_sync=index_sync,
                      index=index, embedder=embedder),
        answer_index=BatchingIndex(index),
    )
    svc.keys = KeyCache(lambda key: svc.review.key_holder(key, admin_key=svc._admin_key()))
    return svc
