"""Which micro-batching pays on this host: answers/s and CPU per answer with 50 threads.

In one process, on the embedded default with a KB of `--phrasings` BANKING77 phrasings, 50
threads call `Services.answer` (what the /answer route runs) with distinct never-seen
questions (test.csv, with greetings added so no text repeats), under four set-ups taken in
turn, `--rounds` times, so that a shared machine's load falls on all of them alike:

  plain   concurrent single-question ONNX runs and Chroma queries
  E       questions embedded together (core.batching.BatchingEmbedder)
  I       Chroma queried together (core.batching.BatchingIndex; what `serve` uses)
  EI      both

    python -m benchmarks.answer_batching [--phrasings 2000] [--questions 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.answer_load import WRAPPERS
from benchmarks.run import BANKING77_DIR
from core.batching import BatchingEmbedder, BatchingIndex
from core.embeddings import CachedEmbedder, OnnxMiniLMEmbedder
from core.policy.commands import Actor, Channel, CreateEntry
from core.services import build_core_services
from core.settings import load_settings


def main(*, phrasings: int, questions: int, rounds: int, threads: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="answer-batching-"))
    settings = load_settings(AUTOTRAIN_DATA_DIR=data, DATABASE_URL="", CHROMA_URL="",
                             REDIS_URL="")
    onnx = OnnxMiniLMEmbedder()
    svc = build_core_services(settings, embedder=CachedEmbedder(onnx))
    bot = svc.review.create_bot(slug="batching", name="Batching")
    with (BANKING77_DIR / "train.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:phrasings]
    by_intent: dict[str, list[str]] = {}
    for row in rows:
        by_intent.setdefault(row["category"], []).append(row["text"])
    for label, texts in by_intent.items():
        for at in range(0, len(texts), 200):
            chunk = texts[at:at + 200]
            svc.review.execute(CreateEntry(bot_id=bot.id, question=chunk[0],
                                           answer=f"About {label}.", variants=chunk[1:],
                                           category=None, actor=Actor("bench", Channel.cli)),
                               bot=bot)
    bot = svc.review.bot("batching")
    with (BANKING77_DIR / "test.csv").open(newline="", encoding="utf-8") as fh:
        held = [row["text"] for row in csv.DictReader(fh)]
    pool = [w.format(q=q) for w in WRAPPERS for q in held]
    random.Random(0).shuffle(pool)
    plain_index, batched_index = svc.index, BatchingIndex(svc.index)
    print(f"{len(rows)} phrasings, {threads} threads, {questions} distinct questions per run")
    at = 0
    for _ in range(rounds):
        for mode in ("plain", "E", "I", "EI"):
            svc.embedder = CachedEmbedder(BatchingEmbedder(onnx) if "E" in mode else onnx)
            svc.answer_index = batched_index if "I" in mode else plain_index
            asked, at = pool[at:at + questions], at + questions
            cpu, wall = time.process_time(), time.perf_counter()
            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(lambda q: svc.answer(bot=bot, question=q), asked))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"  {mode:6} {len(asked) / wall:6.1f} answers/s  "
                  f"CPU {1000 * cpu / len(asked):5.1f} ms/answer  "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    svc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_batching",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--phrasings", type=int, default=2_000)
    parser.add_argument("--questions", type=int, default=200, help="per set-up and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=50)
    a = parser.parse_args()
    main(phrasings=a.phrasings, questions=a.questions, rounds=a.rounds, threads=a.threads)
