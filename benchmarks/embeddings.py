"""Throughput benchmark for the offline MiniLM embedder: python -m benchmarks.embeddings."""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

from core.embeddings import Embedder, OnnxMiniLMEmbedder

DEFAULT_CSV = Path("/work/shared/data/banking77/train.csv")

# Fallback vocabulary: short support-style questions of roughly banking77's
# length (median ~9 words), so the figure stays comparable without the data set.
_OPENERS = ["How do I", "Can I", "Why can't I", "When will I", "Where do I", "Is it possible to"]
_VERBS = ["reset", "change", "cancel", "activate", "top up", "verify", "track", "refund", "order"]
_OBJECTS = [
    "my password",
    "my card",
    "a transfer",
    "my account",
    "the payment",
    "my PIN",
    "an exchange rate",
    "my pending deposit",
    "a virtual card",
    "my address",
]
_TAILS = ["?", " today?", " from abroad?", " in the app?", " without a fee?", " after a week?"]


def load_questions(n: int, csv_path: Path | None = DEFAULT_CSV) -> list[str]:
    """n short questions: the `text` column of csv_path (cycled if too short), else synthetic."""
    texts: list[str] = []
    if csv_path is not None and csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as f:
            texts = [row["text"] for row in csv.DictReader(f) if row.get("text")]
    if texts:
        return [texts[i % len(texts)] for i in range(n)]
    rng = random.Random(0)  # fixed seed: every run measures the same workload
    return [
        f"{rng.choice(_OPENERS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}"
        for _ in range(n)
    ]


def bench_embeddings(
    n: int = 5000,
    csv_path: Path | None = DEFAULT_CSV,
    embedder: Embedder | None = None,
) -> dict[str, float]:
    """Embed n short questions once and time it (model load and warm-up excluded)."""
    texts = load_questions(n, csv_path)
    embedder = embedder if embedder is not None else OnnxMiniLMEmbedder()
    # Warm-up: onnxruntime allocates its arenas and thread pool on the first runs,
    # which is start-up cost rather than throughput.
    embedder.embed(texts[:64])
    start = time.perf_counter()
    embedder.embed(texts)
    seconds = time.perf_counter() - start
    return {"sentences": n, "seconds": round(seconds, 3), "sentences_per_s": round(n / seconds, 1)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000, help="number of sentences")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="CSV with a text column")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    options = {"threads": args.threads}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    result = bench_embeddings(args.n, args.csv, OnnxMiniLMEmbedder(**options))
    print(json.dumps(result))
