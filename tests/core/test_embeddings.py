"""Tests for core.embeddings: the offline MiniLM embedder and the OpenAI embedder."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import openai
import pytest

import core.embeddings as embeddings
from core.embeddings import (
    MINILM_DYNQ8_SHA256,
    MINILM_MODEL_ID,
    CachedEmbedder,
    EmbeddingModelError,
    OnnxMiniLMEmbedder,
    OpenAIEmbedder,
    derive_dynq8_model,
)

ROOT = Path(__file__).resolve().parents[2]

PASSWORD_1 = "How do I reset my password?"
PASSWORD_2 = "I forgot my password, how can I change it?"
STORE = "What time does the store open?"
LONG = (
    "I ordered a replacement card three weeks ago because my old one was damaged, and since "
    "then I have been charged twice for the delivery, the tracking page says it was returned "
    "to the sender, and nobody in the chat has been able to tell me whether the new card is "
    "active, whether the old PIN still works, or when the duplicate fee will be refunded."
)


@pytest.fixture(scope="module")
def minilm() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- OnnxMiniLMEmbedder ------------------------------------------------------


def test_vectors_are_unit_rows_of_dimension_384(minilm):
    vectors = minilm.embed([PASSWORD_1, STORE, "", "ok"])

    assert minilm.dimension == 384
    assert minilm.model_id == "all-MiniLM-L6-v2-onnx-int8-dynq8"
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input_gives_no_rows(minilm):
    vectors = minilm.embed([])

    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_a_bare_string_is_refused_rather_than_embedded_per_character(minilm):
    with pytest.raises(TypeError, match="sequence of strings"):
        minilm.embed(PASSWORD_1)


def test_paraphrases_are_much_closer_than_unrelated_sentences(minilm):
    p1, p2, store = minilm.embed([PASSWORD_1, PASSWORD_2, STORE])

    paraphrase = cosine(p1, p2)
    unrelated = max(cosine(p1, store), cosine(p2, store))
    assert paraphrase > 0.7
    assert unrelated < 0.4
    assert paraphrase - unrelated > 0.4


@pytest.mark.parametrize("dynamic_int8", [True, False])
def test_padding_next_to_longer_sentences_does_not_change_a_vector(dynamic_int8):
    # The dynamic model quantises each token's activations on their own, so even it
    # gives a text the same vector whatever else is in the batch.
    embedder = OnnxMiniLMEmbedder(dynamic_int8=dynamic_int8)

    alone = embedder.embed([PASSWORD_1])[0]
    batched = embedder.embed([LONG, PASSWORD_1, LONG + " " + LONG, STORE])[1]

    assert cosine(alone, batched) > 0.9999


@pytest.mark.parametrize("dynamic_int8", [True, False])
def test_vectors_come_back_in_input_order_across_batches(dynamic_int8):
    small_batches = OnnxMiniLMEmbedder(batch_size=2, dynamic_int8=dynamic_int8)
    texts = [LONG, PASSWORD_1, STORE, "hi", PASSWORD_2, LONG[:80], "card?"]

    together = small_batches.embed(texts)
    one_by_one = np.vstack([small_batches.embed([t]) for t in texts])

    for row, (a, b) in enumerate(zip(together, one_by_one, strict=True)):
        assert cosine(a, b) > 0.9999, texts[row]


def test_texts_longer_than_256_tokens_are_truncated_not_rejected(minilm):
    very_long = " ".join([LONG] * 10)  # ~700 tokens

    vectors = minilm.embed([very_long, very_long + " and one more clause at the very end"])

    # Both are cut at the same 256th token, so the tail makes no difference.
    assert cosine(vectors[0], vectors[1]) > 0.9999


def test_concurrent_calls_from_threads_give_the_same_vectors(minilm):
    texts = [PASSWORD_1, PASSWORD_2, STORE, LONG]
    expected = minilm.embed(texts)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: minilm.embed(texts), range(8)))

    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_constructing_again_reuses_the_loaded_model(minilm):
    again = OnnxMiniLMEmbedder()

    assert again._model is minilm._model


def test_a_wrong_model_file_is_refused_with_its_sha256(tmp_path):
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not an onnx model" * 100)
    actual = hashlib.sha256(garbage.read_bytes()).hexdigest()

    with pytest.raises(EmbeddingModelError, match="sha256") as excinfo:
        OnnxMiniLMEmbedder(model_path=garbage)

    message = str(excinfo.value)
    assert str(garbage) in message
    assert "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6" in message
    assert actual in message


def test_a_missing_model_file_is_refused_clearly(tmp_path):
    missing = tmp_path / "nowhere" / "model.onnx"

    with pytest.raises(EmbeddingModelError, match="sha256") as excinfo:
        OnnxMiniLMEmbedder(model_path=missing)

    assert str(missing) in str(excinfo.value)


def test_the_dynamic_model_has_its_own_id_and_nearly_the_same_vectors(minilm):
    weights_only = OnnxMiniLMEmbedder(dynamic_int8=False)
    texts = [PASSWORD_1, PASSWORD_2, STORE, LONG, "", "card?"]

    new, old = minilm.embed(texts), weights_only.embed(texts)

    # Another id puts stored vectors in another collection, so they are embedded
    # again instead of being compared with vectors of the other model.
    assert weights_only.model_id == MINILM_MODEL_ID
    assert minilm.model_id != weights_only.model_id
    assert old.shape == new.shape == (len(texts), 384)
    cosines = np.sum(new * old, axis=1)
    # The empty text is the farthest (0.980); matching, not cosine, is the measure that
    # counts (python -m benchmarks.embeddings: the same right answers at <= 3% wrong).
    assert cosines.min() > 0.97, cosines
    assert cosines.mean() > 0.99, cosines


def test_the_derived_model_is_the_pinned_file_every_time():
    source = (Path(embeddings._default_minilm_path())).read_bytes()

    first, second = derive_dynq8_model(source), derive_dynq8_model(source)

    assert first == second
    assert hashlib.sha256(first).hexdigest() == MINILM_DYNQ8_SHA256


def _fresh_sessions(monkeypatch) -> None:
    # Sessions are shared per process; a test of how the file is found needs its own.
    monkeypatch.setattr(embeddings, "_MODELS", {})


def test_the_derived_model_is_cached_and_a_damaged_copy_is_derived_again(
    minilm, tmp_path, monkeypatch, caplog
):
    _fresh_sessions(monkeypatch)
    first = OnnxMiniLMEmbedder(cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.onnx")
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == MINILM_DYNQ8_SHA256
    expected = first.embed([PASSWORD_1, STORE])

    damaged = bytearray(cached.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte in the weights
    cached.write_bytes(bytes(damaged))
    _fresh_sessions(monkeypatch)
    with caplog.at_level("WARNING", logger="core.embeddings"):
        again = OnnxMiniLMEmbedder(cache_dir=tmp_path)

    assert "damaged" in caplog.text
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == MINILM_DYNQ8_SHA256
    np.testing.assert_array_equal(again.embed([PASSWORD_1, STORE]), expected)
    np.testing.assert_array_equal(minilm.embed([PASSWORD_1, STORE]), expected)
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temporary files left


def test_an_unwritable_cache_only_costs_deriving_again(tmp_path, monkeypatch, caplog):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("in the way")
    _fresh_sessions(monkeypatch)

    with caplog.at_level("WARNING", logger="core.embeddings"):
        embedder = OnnxMiniLMEmbedder(cache_dir=not_a_dir / "cache")

    assert embedder.embed([PASSWORD_1]).shape == (1, 384)
    assert "could not keep the derived embedding model" in caplog.text


def test_a_derivation_that_no_longer_gives_the_pinned_file_is_refused(tmp_path, monkeypatch):
    _fresh_sessions(monkeypatch)
    monkeypatch.setattr(embeddings, "MINILM_DYNQ8_SHA256", "0" * 64)

    with pytest.raises(EmbeddingModelError, match="would not be comparable") as excinfo:
        OnnxMiniLMEmbedder(cache_dir=tmp_path)

    assert MINILM_DYNQ8_SHA256 in str(excinfo.value)  # the sha256 it did produce
    assert list(tmp_path.iterdir()) == []  # nothing cached under the pinned name


def test_loads_and_embeds_with_networking_unavailable(tmp_path):
    code = textwrap.dedent(
        """
        import socket

        attempts = []

        def blocked(*args, **kwargs):
            attempts.append(args)
            raise OSError("networking is disabled in this test")

        socket.socket.connect = blocked
        socket.socket.connect_ex = blocked
        socket.create_connection = blocked
        socket.getaddrinfo = blocked

        from core.embeddings import OnnxMiniLMEmbedder

        vectors = OnnxMiniLMEmbedder().embed(["Where is my card?"])
        assert vectors.shape == (1, 384), vectors.shape
        print(f"embedded; network attempts: {len(attempts)}")
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        # An empty cache: the dynamic model is derived in this process, offline.
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "embedded; network attempts: 0" in result.stdout
    assert len(list((tmp_path / "autotrain").glob("*-dynq8-*.onnx"))) == 1


# -- OpenAIEmbedder against a local fake of the embeddings endpoint -----------

API_KEY = "sk-test-4f9c2e1b7a6d5c3e8f0a"


def fake_vector(text: str, dimension: int) -> list[float]:
    """Deterministic, deliberately not unit-length, so normalisation is visible."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    return (rng.normal(size=dimension) * 3.0 + 0.5).astype(np.float32).tolist()


class FakeEmbeddingsServer:
    """Answers POST /v1/embeddings like the OpenAI API, with data in reversed order."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_with: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                if self.path != "/v1/embeddings":
                    self._reply(404, {"error": {"message": "no such route"}})
                elif server.fail_with is not None:
                    # Like some proxies, echo the credential back in the error.
                    auth = self.headers.get("Authorization", "")
                    message = f"upstream rejected the request made with {auth}"
                    self._reply(server.fail_with, {"error": {"message": message}})
                else:
                    self._reply(200, server.answer(body))

            def _reply(self, status: int, payload: dict) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body: dict) -> dict:
        dimension = body.get("dimensions", 1536)  # text-embedding-3-small's own
        data = []
        for index, text in enumerate(body["input"]):
            vector = fake_vector(text, dimension)
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        data.reverse()  # the API promises `index`, not order
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }


@pytest.fixture
def fake_api() -> Iterator[FakeEmbeddingsServer]:
    server = FakeEmbeddingsServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)


@pytest.fixture
def client(fake_api) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=API_KEY, base_url=fake_api.base_url, max_retries=0) as c:
        yield c


def test_openai_vectors_are_unit_length_and_in_input_order(fake_api, client):
    texts = [f"question number {i}" for i in range(7)]
    embedder = OpenAIEmbedder(client, model="text-embedding-3-small", dimension=8, batch_size=3)

    vectors = embedder.embed(texts)

    assert vectors.shape == (7, 8)
    assert vectors.dtype == np.float32
    expected = np.array([fake_vector(t, 8) for t in texts], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_openai_requests_are_split_into_batches_with_the_key(fake_api, client):
    texts = [f"question number {i}" for i in range(7)]
    embedder = OpenAIEmbedder(client, dimension=8, batch_size=3)

    embedder.embed(texts)

    assert [len(r["body"]["input"]) for r in fake_api.requests] == [3, 3, 1]
    assert [t for r in fake_api.requests for t in r["body"]["input"]] == texts
    for request in fake_api.requests:
        assert request["path"] == "/v1/embeddings"
        assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
        assert request["body"]["model"] == "text-embedding-3-small"
        assert request["body"]["dimensions"] == 8


def test_openai_default_dimension_is_the_models_own(fake_api, client):
    embedder = OpenAIEmbedder(client)

    vectors = embedder.embed([PASSWORD_1])

    assert embedder.dimension == 1536
    assert vectors.shape == (1, 1536)
    assert "dimensions" not in fake_api.requests[0]["body"]


def test_openai_empty_input_makes_no_request(fake_api, client):
    vectors = OpenAIEmbedder(client, dimension=8).embed([])

    assert vectors.shape == (0, 8)
    assert fake_api.requests == []


@pytest.mark.parametrize("status", [401, 500])
def test_openai_errors_are_reported_without_the_key(fake_api, client, status):
    fake_api.fail_with = status
    embedder = OpenAIEmbedder(client, dimension=8)

    with pytest.raises(EmbeddingModelError) as excinfo:
        embedder.embed([PASSWORD_1])

    message = str(excinfo.value)
    assert f"HTTP {status}" in message
    assert API_KEY not in message
    assert API_KEY not in repr(excinfo.value)
    assert excinfo.value.__cause__ is None
    assert len(fake_api.requests) == 1  # max_retries=0: one attempt


def test_openai_unreachable_server_is_an_embedding_error():
    with openai.OpenAI(api_key=API_KEY, base_url="http://127.0.0.1:9/v1", max_retries=0) as c:
        with pytest.raises(EmbeddingModelError, match="connection failed") as excinfo:
            OpenAIEmbedder(c, dimension=8).embed([PASSWORD_1])

    assert API_KEY not in str(excinfo.value)


def test_openai_unknown_model_needs_an_explicit_dimension(client):
    with pytest.raises(ValueError, match="dimension"):
        OpenAIEmbedder(client, model="some-other-embedding-model")

    assert OpenAIEmbedder(client, model="some-other-embedding-model", dimension=64).dimension == 64


class _CountingEmbedder:
    model_id = "counting"
    dimension = 3

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_cached_embedder_embeds_each_text_once_and_keeps_order() -> None:
    inner = _CountingEmbedder()
    cached = CachedEmbedder(inner, max_items=2)
    first = cached.embed(["aa", "b", "aa"])
    assert inner.seen == ["aa", "b"]
    assert first[:, 0].tolist() == [2.0, 1.0, 2.0]
    again = cached.embed(["b", "ccc"])
    assert inner.seen == ["aa", "b", "ccc"] and again[:, 0].tolist() == [1.0, 3.0]
    cached.embed(["aa"])  # evicted (max_items=2): embedded again
    assert inner.seen[-1] == "aa"
    assert cached.embed([]).shape == (0, 3)
