"""Micro-batching of the answer path: same vectors and answers as one at a time, and errors
that reach only the caller they belong to."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from core.answering import rank_entries
from core.batching import BatchingEmbedder, BatchingIndex, GroupCommit
from core.embeddings import Embedder, EmbeddingModelError
from core.index import ChromaIndex, entry_phrasings

BANKING77 = Path("/work/shared/data/banking77")
QUESTIONS = [
    "How long does shipping take?",
    "my card still has not arrived, it has been two weeks and I am getting worried about it",
    "refund?",
    "Can I top up with Apple Pay or only with a bank transfer from another account?",
    "Why was I charged a fee when I withdrew cash abroad?",
    "pin blocked",
    "I think someone else is using my card, what should I do right now?",
    "exchange rate",
]


class Gate:
    """An embedder stand-in whose first call waits until `release` is set, so that the calls
    made meanwhile pile up behind it, as concurrent requests do behind a running batch."""

    model_id = "gate"
    dimension = 3

    def __init__(self, fail_on: str | None = None, broken: bool = False) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.broken = broken

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if self.broken:
            raise RuntimeError("the model crashed")
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"cannot embed {self.fail_on!r}")
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)


def _pile_up(front: BatchingEmbedder, gate: Gate, texts: list[str]
             ) -> list[np.ndarray | BaseException]:
    """Embed "first" (which blocks inside the model), then each of `texts` from its own
    thread while it is blocked, then let the model go: what each caller got."""
    results: dict[str, np.ndarray | BaseException] = {}

    def call(text: str) -> None:
        try:
            results[text] = front.embed([text])
        except BaseException as exc:  # what each caller got is what the test checks
            results[text] = exc

    with ThreadPoolExecutor(len(texts) + 1) as pool:
        first = pool.submit(call, "first")
        assert gate.entered.wait(10)
        futures = [pool.submit(call, t) for t in texts]
        deadline = time.monotonic() + 10
        while front.group.waiting < len(texts):
            assert time.monotonic() < deadline, "the callers never queued"
            time.sleep(0.005)
        gate.release.set()
        for f in [first, *futures]:
            f.result(10)
    return [results[t] for t in ["first", *texts]]


def test_concurrent_questions_share_one_model_run() -> None:
    gate = Gate()
    front = BatchingEmbedder(gate)
    texts = [f"question {i} " * (i + 1) for i in range(6)]
    got = _pile_up(front, gate, texts)
    # The first ran alone, at once; the six that arrived meanwhile went in one run.
    assert gate.calls[0] == ["first"]
    assert len(gate.calls) == 2 and sorted(gate.calls[1]) == sorted(texts)
    for text, vectors in zip(["first", *texts], got, strict=True):
        assert isinstance(vectors, np.ndarray)
        assert vectors.shape == (1, 3) and vectors[0, 0] == len(text)


def test_a_lone_question_runs_in_its_own_thread_without_waiting() -> None:
    seen: list[int] = []

    class Recorder(Gate):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            seen.append(threading.get_ident())
            return np.ones((len(texts), 3), dtype=np.float32)

    front = BatchingEmbedder(Recorder())
    front.embed(["hello"])
    front.embed(["again"])
    assert seen == [threading.get_ident()] * 2
    assert front.group.runs == 2 and front.group.waiting == 0


def test_one_bad_text_fails_only_its_own_request() -> None:
    gate = Gate(fail_on="bad")
    front = BatchingEmbedder(gate)
    first, good_one, bad, good_two = _pile_up(front, gate, ["good one", "bad", "good two"])
    assert isinstance(bad, ValueError) and "cannot embed 'bad'" in str(bad)
    for ok, text in ((first, "first"), (good_one, "good one"), (good_two, "good two")):
        assert isinstance(ok, np.ndarray) and ok[0, 0] == len(text)


def test_a_broken_model_gives_every_waiting_request_a_clear_error() -> None:
    gate = Gate(broken=True)
    front = BatchingEmbedder(gate)
    for outcome in _pile_up(front, gate, ["a", "b", "c"]):
        assert isinstance(outcome, EmbeddingModelError)
        assert "embedding failed: RuntimeError: the model crashed" in str(outcome)
    # Nobody is left holding the batch: the front works again once the model does.
    gate.broken = False
    assert front.embed(["back"])[0, 0] == 4 and front.group.waiting == 0


def test_a_wrong_argument_fails_in_the_callers_thread_and_bulk_calls_pass_through() -> None:
    gate = Gate()
    gate.release.set()
    front = BatchingEmbedder(gate)
    with pytest.raises(TypeError):
        front.embed("a bare string")
    many = [f"text {i}" for i in range(50)]
    assert front.embed(many).shape == (50, 3)
    assert gate.calls[-1] == many and front.group.runs == 0


def test_group_commit_hands_each_caller_its_own_results_in_order() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda xs: [x * 10 for x in xs], max_batch=4)
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda i: group.submit([i, i + 1]), range(200)))
    assert got == [[i * 10, (i + 1) * 10] for i in range(200)]
    assert group.items_run == 400


def test_batched_vectors_equal_single_ones(embedder: Embedder) -> None:
    alone = np.stack([embedder.embed([q])[0] for q in QUESTIONS])
    front = BatchingEmbedder(embedder)
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = np.stack(list(pool.map(lambda q: front.embed([q])[0], QUESTIONS * 4)))
    np.testing.assert_allclose(together, np.concatenate([alone] * 4), atol=2e-5)
    # And one batch of mixed lengths, as a busy server makes them.
    np.testing.assert_allclose(embedder.embed(QUESTIONS), alone, atol=2e-5)


def _banking77(name: str, limit: int) -> list[tuple[str, str]]:
    path = BANKING77 / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["text"], r["category"]) for r in csv.DictReader(fh)][:limit]


def test_answers_are_identical_batched_or_not(embedder: Embedder, tmp_path: Path) -> None:
    """600 BANKING77 phrasings as entries (one per intent); 120 held-out questions ranked one
    at a time, then by 12 threads at once through the batching embedder and index."""
    index = ChromaIndex(path=tmp_path / "chroma", model_id=embedder.model_id)
    by_intent: dict[str, list[str]] = {}
    for text, label in _banking77("train.csv", 600):
        by_intent.setdefault(label, []).append(text)
    for label, texts in by_intent.items():
        phrasings = entry_phrasings(bot_id="b", entry_id=label, question=texts[0],
                                    variants=texts[1:], active=True)
        index.sync_entry(bot_id="b", entry_id=label, phrasings=phrasings,
                         vectors=embedder.embed([p.text for p in phrasings]))
    questions = [q for q, _ in _banking77("test.csv", 120)]

    def ranked(emb: Embedder, idx: object, question: str) -> list[tuple[str, float]]:
        vector = emb.embed([question])[0]
        return [(m.entry_id, m.share)
                for m in rank_entries(index=idx, bot_id="b", vector=vector)]  # type: ignore[arg-type]

    alone = [ranked(embedder, index, q) for q in questions]
    front, batched_index = BatchingEmbedder(embedder), BatchingIndex(index)
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda q: ranked(front, batched_index, q), questions))
    for one, other in zip(alone, together, strict=True):
        assert [e for e, _ in one] == [e for e, _ in other]
        np.testing.assert_allclose([s for _, s in one], [s for _, s in other], atol=1e-3)
    # The threads really shared runs (otherwise this test would prove nothing).
    assert front.group.items_run == len(questions)
    assert front.group.runs < len(questions) and batched_index.group.runs < len(questions)
