"""Micro-batching of the answer path: concurrent questions share one vector-index query (and,
with a remote embedder, one embeddings request)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from core.embeddings import Embedder, EmbeddingModelError, _as_text_list
from core.index import Hit, PhrasingIndex

T = TypeVar("T")
R = TypeVar("R")

# Calls with more texts than this go straight to the model: a bulk sync of thousands of
# phrasings must not hold up the questions queued behind it, and gains nothing from company.
SMALL_CALL = 4
# Items per shared run: the ONNX embedder's own batch size (core/embeddings.py), beyond
# which one run only gets longer without getting cheaper per text.
MAX_BATCH = 32


@dataclass(eq=False)
class _Job(Generic[T, R]):
    items: list[T]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # this caller runs the next batch (its own job first in it)
    results: list[R] | None = None
    error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Runs `work` over the items of concurrent callers in one call ("group commit").

    Nobody waits on a timer: a caller that finds `work` idle runs it at once, alone. Callers
    arriving while it runs queue up; when the run ends, the first of them runs everything
    queued by then (up to `max_batch` items) in one call, and so on. Under load each run
    carries what arrived during the previous one; an idle service answers as before.

    Thread-safe (FastAPI runs sync routes in a thread pool). A batch that fails is retried
    one caller at a time, so one caller's bad input fails only that caller; when `work`
    itself is broken each waiting caller gets the error.
    """

    def __init__(self, work: Callable[[list[T]], list[R]], *, max_batch: int = MAX_BATCH,
                 describe: Callable[[Exception], Exception] | None = None) -> None:
        self.work = work
        self.max_batch = max_batch
        self.describe = describe or (lambda exc: exc)
        self._lock = threading.Lock()
        self._queue: deque[_Job[T, R]] = deque()
        self._busy = False
        # Figures for benchmarks and tests: calls of `work`, and items they carried.
        self.runs = 0
        self.items_run = 0

    @property
    def waiting(self) -> int:
        """Callers queued behind the run in progress."""
        with self._lock:
            return len(self._queue)

    def submit(self, items: list[T]) -> list[R]:
        job: _Job[T, R] = _Job(items)
        with self._lock:
            self._queue.append(job)
            if not self._busy:
                self._busy = True
                job.lead = True
        if not job.lead:
            job.done.wait()
        if job.lead:  # idle, or handed the next batch by the caller before
            self._run_batch()
        if job.error is not None:
            raise job.error
        assert job.results is not None
        return job.results

    def _run_batch(self) -> None:
        with self._lock:
            batch: list[_Job[T, R]] = []
            size = 0
            while self._queue and (not batch
                                   or size + len(self._queue[0].items) <= self.max_batch):
                job = self._queue.popleft()
                batch.append(job)
                size += len(job.items)
        try:
            self._work_on(batch)
        finally:
            with self._lock:
                following = self._queue[0] if self._queue else None
                if following is None:
                    self._busy = False
                else:
                    following.lead = True
            for job in batch:
                job.done.set()
            if following is not None:
                following.done.set()

    def _work_on(self, batch: list[_Job[T, R]]) -> None:
        items = [item for job in batch for item in job.items]
        try:
            results = self.work(items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} items")
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = self.describe(exc)
                return
            # Someone's item may be what failed: each caller on its own, so the others
            # still get their results and only the culprit gets the error.
            for job in batch:
                self._work_on([job])
            return
        self.runs += 1
        self.items_run += len(items)
        at = 0
        for job in batch:
            job.results = list(results[at:at + len(job.items)])
            at += len(job.items)


def _embedding_error(exc: Exception) -> Exception:
    if isinstance(exc, EmbeddingModelError | TypeError | ValueError):
        return exc
    return EmbeddingModelError(f"embedding failed: {type(exc).__name__}: {exc}")


class BatchingEmbedder:
    """An Embedder whose small calls (a question or two) from concurrent threads are embedded
    in one call of the inner embedder. Each text gets the vector it gets alone (the ONNX
    embedder pads each batch and masks the pads out: equal within float rounding,
    tests/core/test_batching.py).

    Worth it where a call costs more than its texts: the OpenAI embeddings API (one round
    trip for many questions), which is where build_embedder uses it. Not for the offline
    MiniLM on a small CPU: measured with 50 threads on the 2-core host, one shared ONNX run
    at a time gave a third of the answers/s of concurrent single runs and more CPU per answer
    (padding to the batch's longest question, and the work waits on one thread's turn)."""

    def __init__(self, inner: Embedder, *, max_batch: int = MAX_BATCH,
                 small_call: int = SMALL_CALL) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.small_call = small_call
        self.group: GroupCommit[str, np.ndarray] = GroupCommit(
            lambda texts: list(inner.embed(texts)), max_batch=max_batch,
            describe=_embedding_error)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _as_text_list(texts)  # a bad argument fails here, in its caller's thread only
        if not items or len(items) > self.small_call:
            return self.inner.embed(items)
        return np.stack(self.group.submit(items))


class BatchingIndex:
    """A PhrasingIndex whose `query` calls from concurrent threads go to the index together:
    one `query_many` per bot (Chroma's per-call cost is most of a 10,000-phrasing query:
    3.6 ms of CPU alone against 0.9 ms a question in batches of 32, measured here). Anything
    else is passed through unchanged."""

    def __init__(self, inner: PhrasingIndex, *, max_batch: int = MAX_BATCH) -> None:
        self.inner = inner
        self.group: GroupCommit[tuple[str, np.ndarray, int], list[Hit]] = GroupCommit(
            self._query_all, max_batch=max_batch)

    def query(self, *, bot_id: str, vector: np.ndarray, k: int) -> list[Hit]:
        return self.group.submit([(bot_id, vector, k)])[0]

    def _query_all(self, asks: list[tuple[str, np.ndarray, int]]) -> list[list[Hit]]:
        out: list[list[Hit] | None] = [None] * len(asks)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, (bot_id, _, k) in enumerate(asks):
            groups.setdefault((bot_id, k), []).append(i)
        for (bot_id, k), rows in groups.items():
            if len(rows) == 1:
                out[rows[0]] = self.inner.query(bot_id=bot_id, vector=asks[rows[0]][1], k=k)
                continue
            found = self.inner.query_many(bot_id=bot_id,
                                          vectors=np.stack([asks[i][1] for i in rows]), k=k)
            for i, hits in zip(rows, found, strict=True):
                # Fewer than k active neighbours among the spare ones fetched: `query`
                # knows how to look further (a small KB, or many deactivated phrasings).
                out[i] = hits if len(hits) >= k else self.inner.query(
                    bot_id=bot_id, vector=asks[i][1], k=k)
        return [hits if hits is not None else [] for hits in out]

    def __getattr__(self, name: str) -> Any:
        # sync_entry, query_many, snapshot...: unchanged, straight to the index.
        return getattr(self.inner, name)
