"""The performance benchmark behind `autotrain bench` and `python -m benchmarks`.

Three figures, each printed next to its target:

1. Embedding throughput of the offline MiniLM embedder (`benchmarks.embeddings`).
2. `/answer` latency over real HTTP: for each KB size a fresh server is started as a
   subprocess (`autotrain serve`, embedded default: SQLite + embedded Chroma in a temporary
   AUTOTRAIN_DATA_DIR), a bot is created and its KB seeded through the API with BANKING77
   questions, then sequential `POST /answer` calls are timed with questions held out of the KB.
   Every timed question is distinct, so the server's query-embedding cache never hits: the
   figure is the cost of a new question (a repeated one skips the ~4-5 ms of ONNX).
3. Ingestion throughput: batches of 3-message conversations posted to the last server.

    python -m benchmarks --phrasings 1000 10000 --requests 500 [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import multiprocessing as mp
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BANKING77_DIR = Path("/work/shared/data/banking77")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A figure FAILs when it is on the wrong side of its target.
TARGET_EMBED_PER_S = 650.0
TARGET_ANSWER_P50_MS = 15.0  # at the 10,000-phrasing KB
TARGET_ANSWER_P99_MS = 40.0  # at the 10,000-phrasing KB
TARGET_LATENCY_AT = 10_000
TARGET_INGEST_PER_S = 500.0

MAX_PHRASINGS_PER_ENTRY = 201  # question + the API's 200 variants
WARMUP_REQUESTS = 20
SERVER_START_TIMEOUT_S = 180.0
SERVER_STOP_GRACE_S = 10.0
# Variables that would point the server away from the embedded default we measure.
_SERVER_ENV_DROP = ("DATABASE_URL", "CHROMA_URL", "REDIS_URL", "AUTOTRAIN_EMBEDDER",
                    "SLACK_BOT_TOKEN", "SMTP_HOST", "OPENAI_BASE_URL", "AUTOTRAIN_LLM_MODEL")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Corpus:
    """Phrasings to seed the KB with (by category) and questions held out of it."""

    source: str
    pool: dict[str, list[str]]          # category -> distinct phrasings usable in the KB
    heldout: list[tuple[str, str]]      # (question, category), never in the KB

    @property
    def pool_size(self) -> int:
        return sum(len(v) for v in self.pool.values())


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _read_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [(row["text"].strip(), row["category"].strip()) for row in csv.DictReader(fh)
                if (row.get("text") or "").strip() and (row.get("category") or "").strip()]


def load_corpus(n_heldout: int, data_dir: Path = BANKING77_DIR, seed: int = 0) -> Corpus:
    """BANKING77: held-out questions come from test.csv, the KB pool from train.csv plus the
    rest of test.csv (train.csv alone has 9,999 distinct texts). Synthetic if it is missing."""
    train, test = data_dir / "train.csv", data_dir / "test.csv"
    if not train.is_file():
        return _synthetic_corpus(n_heldout, seed)
    rows_train = _read_csv(train)
    rows_test = _read_csv(test) if test.is_file() else []
    rng = random.Random(seed)
    candidates = rows_test[:] if len(rows_test) >= n_heldout else rows_train[:]
    rng.shuffle(candidates)
    heldout: list[tuple[str, str]] = []
    held_norm: set[str] = set()
    for text, cat in candidates:
        if len(heldout) == n_heldout:
            break
        if _norm(text) not in held_norm:
            held_norm.add(_norm(text))
            heldout.append((text, cat))
    pool: dict[str, list[str]] = defaultdict(list)
    seen = set(held_norm)
    for text, cat in rows_train + rows_test:
        key = _norm(text)
        if key not in seen:
            seen.add(key)
            pool[cat].append(text)
    for texts in pool.values():
        rng.shuffle(texts)
    return Corpus(source=f"BANKING77 ({data_dir})", pool=dict(pool), heldout=heldout)


_OPENERS = ["How do I", "Can I", "Why can't I", "When will I", "Where do I", "Is it possible to",
            "What's the way to", "Help me", "I need to", "Please tell me how to", "I want to",
            "Could you explain how to"]
_VERBS = ["reset", "change", "cancel", "activate", "top up", "verify", "track", "refund",
          "order", "freeze", "close", "update"]
_OBJECTS = ["my password", "my card", "a transfer", "my account", "the payment", "my PIN",
            "an exchange rate", "my pending deposit", "a virtual card", "my address"]
_TAILS = ["?", " today?", " from abroad?", " in the app?", " without a fee?", " after a week?",
          " right now?", " on the website?", " for my partner?", " again?", " quickly?",
          " before Friday?"]
_MIDDLES = ["", " please", " myself", " online", " if possible"]


def _synthetic_corpus(n_heldout: int, seed: int) -> Corpus:
    """Generated support questions: category = (verb, object), ~720 phrasings each."""
    rng = random.Random(seed)
    pool: dict[str, list[str]] = {}
    heldout: list[tuple[str, str]] = []
    for verb in _VERBS:
        for obj in _OBJECTS:
            cat = f"{verb}_{obj}".replace(" ", "_")
            texts = [f"{o} {verb} {obj}{m}{t}" for o in _OPENERS for m in _MIDDLES
                     for t in _TAILS]
            rng.shuffle(texts)
            pool[cat] = texts
    cats = list(pool)
    for i in range(n_heldout):
        cat = cats[i % len(cats)]
        heldout.append((pool[cat].pop(), cat))
    return Corpus(source="synthetic (BANKING77 not found)", pool=pool, heldout=heldout)


def build_entries(corpus: Corpus, phrasings: int,
                  per_entry: int | None = None) -> list[dict[str, Any]]:
    """KB entries totalling exactly `phrasings` distinct phrasings (question + variants),
    drawn from every category in proportion to its size.

    per_entry None: one entry per intent (split only past the API's 200-variant cap), so
    answers stay meaningful. per_entry N: each intent split into entries of ~N phrasings;
    the answer vote then spreads over near-duplicate entries and most questions escalate.
    """
    if phrasings > corpus.pool_size:
        raise ValueError(f"{phrasings} phrasings asked for, the corpus has {corpus.pool_size}")
    cats = sorted(corpus.pool)
    total = corpus.pool_size
    # Largest-remainder allocation of the phrasings over the categories.
    exact = {c: phrasings * len(corpus.pool[c]) / total for c in cats}
    alloc = {c: int(exact[c]) for c in cats}
    for c in sorted(cats, key=lambda c: exact[c] - alloc[c], reverse=True)[
            :phrasings - sum(alloc.values())]:
        alloc[c] += 1
    entries: list[dict[str, Any]] = []
    for c in cats:
        texts = corpus.pool[c][:alloc[c]]
        if not texts:
            continue
        n_entries = (math.ceil(len(texts) / MAX_PHRASINGS_PER_ENTRY) if per_entry is None
                     else max(1, round(len(texts) / per_entry)))
        for i in range(n_entries):
            chunk = texts[i::n_entries]
            label = c.replace("_", " ")
            entries.append({
                "question": chunk[0],
                "answer": f"Here is how {label} works: open the app, go to Help > {label}, "
                          "and follow the steps. Contact us if anything is unclear.",
                "variants": chunk[1:],
                "category": c[:100],
            })
    return entries


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("autotrain")
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), *args]
    return [sys.executable, "-c", "import cli; cli.main()", *args]


@dataclass
class Server:
    base_url: str
    api_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=SERVER_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=SERVER_STOP_GRACE_S)


@contextlib.contextmanager
def running_server(keep_data: bool = False, *, env: dict[str, str] | None = None,
                   args: Sequence[str] = (), drop_prefixes: tuple[str, ...] = (),
                   log_level: str = "WARNING", label: str = "bench") -> Iterator[Server]:
    """A fresh `autotrain serve` on a free port with its own data dir; always stopped.
    `env` adds to (or overrides) the server's environment, `args` to its command line;
    variables starting with `drop_prefixes` are not passed on from this shell."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"autotrain-{label}-"))
    port = _free_port()
    api_key = "bench-" + secrets.token_urlsafe(24)
    server_env = {k: v for k, v in os.environ.items()
                  if k not in _SERVER_ENV_DROP and not k.startswith(drop_prefixes)}
    server_env.update(AUTOTRAIN_DATA_DIR=str(data_dir), AUTOTRAIN_API_KEY=api_key,
                      ANONYMIZED_TELEMETRY="False", AUTOTRAIN_LOG_LEVEL=log_level,
                      AUTOTRAIN_PUBLIC_URL=f"http://127.0.0.1:{port}",
                      PYTHONPATH=os.pathsep.join(filter(None, [
                          str(PROJECT_ROOT), server_env.get("PYTHONPATH")])))
    server_env.update(env or {})
    log_path = data_dir / "server.log"
    log_fh = log_path.open("wb")
    # cwd is the data dir so that no stray `.env` reconfigures the server under test.
    proc = subprocess.Popen([*_serve_command(port), *args], cwd=data_dir, env=server_env,
                            stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", api_key, data_dir, proc, log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        _stop(proc)
        log_fh.close()
        if keep_data:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


class ChildProcess:
    """A helper server (a fake Slack, an SMTP recorder) in its own process, so it shares no
    event loop or GIL with the load generator: `target(conn)` sends one ready value (its
    URL or port), then answers what the parent sends through `ask` until it gets None."""

    def __init__(self, target: Callable[[Connection], None], *, name: str) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=target, args=(child,), daemon=True, name=name)
        self._proc.start()
        child.close()
        if not self._conn.poll(60):
            raise RuntimeError(f"{name} did not start within 60 s")
        self.ready: Any = self._conn.recv()

    def ask(self, *question: Any) -> Any:
        self._conn.send(question)
        return self._conn.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(None)
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._conn.close()


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited with {server.process.returncode} before "
                                   f"becoming healthy:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/healthz").status_code == 200:
                    return
            time.sleep(0.2)
    raise RuntimeError(f"server not healthy after {SERVER_START_TIMEOUT_S:.0f}s:\n"
                       f"{server.log_tail()}")


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=120.0,
                        headers={"Authorization": f"Bearer {server.api_key}"})


def _check(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 400:
        raise RuntimeError(f"{what}: HTTP {resp.status_code}: {resp.text[:500]}")
    return resp.json()


# --------------------------------------------------------------------------- measurements


def _percentiles(ms: list[float]) -> dict[str, float]:
    arr = np.asarray(ms, dtype=float)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "mean_ms": round(float(arr.mean()), 2),
        "max_ms": round(float(arr.max()), 2),
    }


def seed_kb(client: httpx.Client, slug: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    _check(client.post("/api/v1/bots", json={"slug": slug, "name": f"Benchmark {slug}"}),
           "create bot")
    entry_category: dict[str, str] = {}
    per_call: list[float] = []
    start = time.perf_counter()
    for e in entries:
        t0 = time.perf_counter()
        out = _check(client.post(f"/api/v1/bots/{slug}/kb/entries", json=e), "create entry")
        per_call.append((time.perf_counter() - t0) * 1000)
        entry_category[out["id"]] = e["category"]
    seconds = time.perf_counter() - start
    phrasings = sum(1 + len(e["variants"]) for e in entries)
    return {
        "entries": len(entries),
        "phrasings": phrasings,
        "seconds": round(seconds, 2),
        "phrasings_per_s": round(phrasings / seconds, 1),
        "entry_call_ms": _percentiles(per_call),
        "_entry_category": entry_category,
    }


def measure_answers(client: httpx.Client, slug: str, questions: list[tuple[str, str]],
                    requests: int, entry_category: dict[str, str]) -> dict[str, Any]:
    """Sequential /answer calls; WARMUP_REQUESTS untimed first, then `requests` timed."""
    url = f"/api/v1/bots/{slug}/answer"
    warm, timed = questions[:WARMUP_REQUESTS], questions[WARMUP_REQUESTS:]
    if not timed:
        raise ValueError("no held-out questions left after the warm-up")
    distinct = min(len(timed), requests)
    while len(timed) < requests:  # only if the held-out set is short: repeats hit the cache
        timed += timed[:requests - len(timed)]
    for text, _ in warm:
        _check(client.post(url, json={"question": text}), "answer (warm-up)")
    latencies: list[float] = []
    answered = correct = 0
    for text, cat in timed[:requests]:
        t0 = time.perf_counter()
        resp = client.post(url, json={"question": text})
        latencies.append((time.perf_counter() - t0) * 1000)
        out = _check(resp, "answer")
        if not out["escalate"]:
            answered += 1
            correct += entry_category.get(out["entry_id"] or "") == cat
    return {
        "requests": requests,
        "distinct_questions": distinct,
        **_percentiles(latencies),
        "answered_rate": round(answered / requests, 3),
        # Answered with an entry of the question's own BANKING77 intent (a sanity check).
        "correct_rate": round(correct / requests, 3),
    }


_OPENING = ["Hi, {q}", "{q}", "Hello! {q}", "Quick question: {q}"]
_BOT = ["You can do that in the app under Settings > Cards. It usually takes a minute.",
        "Transfers normally arrive within one business day; check the Activity tab.",
        "I can help with that. Go to Help > Account and follow the steps shown.",
        "Sorry, I am not sure about that. Let me connect you with a colleague."]
_FOLLOW = ["Thanks, that worked!", "That doesn't answer my question.", "ok thanks",
           "Still not working for me", "Great, got it."]


def build_conversation_batches(total: int, batch: int, questions: list[str],
                               seed: int = 0) -> list[bytes]:
    """`total` 3-message conversations (customer, bot, customer), pre-encoded JSON bodies."""
    rng = random.Random(seed)
    run = secrets.token_hex(4)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=7)
    bodies: list[bytes] = []
    for start in range(0, total, batch):
        convs = []
        for i in range(start, min(total, start + batch)):
            t0 = base + timedelta(seconds=rng.randrange(7 * 24 * 3600))
            q = rng.choice(questions)
            convs.append({
                "id": f"bench-{run}-{i}",
                "started_at": t0.isoformat(),
                "channel": "web",
                "messages": [
                    {"role": "customer", "text": rng.choice(_OPENING).format(q=q),
                     "at": t0.isoformat()},
                    {"role": "bot", "text": rng.choice(_BOT),
                     "at": (t0 + timedelta(seconds=rng.randint(1, 4))).isoformat()},
                    {"role": "customer", "text": rng.choice(_FOLLOW),
                     "at": (t0 + timedelta(seconds=rng.randint(20, 90))).isoformat()},
                ],
            })
        bodies.append(json.dumps({"conversations": convs}).encode())
    return bodies


def measure_ingestion(client: httpx.Client, slug: str, total: int, batch: int,
                      questions: list[str]) -> dict[str, Any]:
    bodies = build_conversation_batches(total, batch, questions)
    url = f"/api/v1/bots/{slug}/conversations"
    headers = {"Content-Type": "application/json"}
    per_batch: list[float] = []
    accepted = 0
    start = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        out = _check(client.post(url, content=body, headers=headers), "conversations")
        per_batch.append((time.perf_counter() - t0) * 1000)
        accepted += out["accepted"]
    seconds = time.perf_counter() - start
    if accepted != total:
        raise RuntimeError(f"conversations: {accepted} accepted of {total} sent")
    return {
        "conversations": total,
        "batch": batch,
        "seconds": round(seconds, 2),
        "conversations_per_s": round(total / seconds, 1),
        "batch_ms": _percentiles(per_batch),
    }


def measure_embeddings(n: int) -> dict[str, Any]:
    from benchmarks.embeddings import bench_embeddings

    return dict(bench_embeddings(n))


# --------------------------------------------------------------------------- reporting


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    emb = results.get("embeddings", {})
    if "error" in emb:
        rows.append(("embedding throughput", "ERROR", f">= {TARGET_EMBED_PER_S:.0f}/s", "FAIL"))
    elif emb:
        rows.append((f"embedding throughput ({emb['sentences']} sentences)",
                     f"{emb['sentences_per_s']:.0f} sentences/s",
                     f">= {TARGET_EMBED_PER_S:.0f}/s",
                     _verdict(emb["sentences_per_s"] >= TARGET_EMBED_PER_S)))
    for run in results.get("answer", []):
        size = run["phrasings"]
        if "error" in run:
            rows.append((f"/answer @ {size:,} phrasings", "ERROR", "", "FAIL"))
            continue
        seed, lat = run["seed"], run["latency"]
        rows.append((f"seed KB {size:,} phrasings ({seed['entries']} entries)",
                     f"{seed['seconds']:.1f} s ({seed['phrasings_per_s']:.0f} phrasings/s)",
                     "", "-"))
        gated = size == TARGET_LATENCY_AT
        rows.append((f"/answer p50 @ {size:,}", f"{lat['p50_ms']:.2f} ms",
                     f"<= {TARGET_ANSWER_P50_MS:.0f} ms" if gated else "",
                     _verdict(lat["p50_ms"] <= TARGET_ANSWER_P50_MS if gated else None)))
        rows.append((f"/answer p95 @ {size:,}", f"{lat['p95_ms']:.2f} ms", "", "-"))
        rows.append((f"/answer p99 @ {size:,}", f"{lat['p99_ms']:.2f} ms",
                     f"<= {TARGET_ANSWER_P99_MS:.0f} ms" if gated else "",
                     _verdict(lat["p99_ms"] <= TARGET_ANSWER_P99_MS if gated else None)))
        rows.append((f"/answer mean (max) @ {size:,}",
                     f"{lat['mean_ms']:.2f} ms ({lat['max_ms']:.1f})", "", "-"))
        rows.append((f"/answer answered / right intent @ {size:,}",
                     f"{lat['answered_rate']:.0%} / {lat['correct_rate']:.0%}", "", "-"))
    ing = results.get("ingestion", {})
    if "error" in ing:
        rows.append(("ingestion throughput", "ERROR", f">= {TARGET_INGEST_PER_S:.0f}/s", "FAIL"))
    elif ing:
        rows.append((f"ingestion ({ing['conversations']:,} convs, batches of {ing['batch']})",
                     f"{ing['conversations_per_s']:.0f} conversations/s "
                     f"({ing['seconds']:.1f} s)",
                     f">= {TARGET_INGEST_PER_S:.0f}/s",
                     _verdict(ing["conversations_per_s"] >= TARGET_INGEST_PER_S)))
    return rows


def format_table(results: dict[str, Any]) -> str:
    rows = [("figure", "measured", "target", "result"), *_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    env = results["environment"]
    lines.append("")
    lines.append(f"data: {env['corpus']}; KB: {env['kb_shape']}")
    lines.append(f"machine: {env['cpus']} CPUs, load average {env['loadavg_start']} at start, "
                 f"{env['loadavg_end']} at end; server: embedded default (SQLite + Chroma)")
    for section in ("embeddings", "ingestion"):
        if "error" in results.get(section, {}):
            lines.append(f"{section} error: {results[section]['error']}")
    for run in results.get("answer", []):
        if "error" in run:
            lines.append(f"/answer @ {run['phrasings']} error: {run['error']}")
    return "\n".join(lines)


def _passed(results: dict[str, Any]) -> bool:
    return all(r[3] != "FAIL" for r in _rows(results))


# --------------------------------------------------------------------------- entry points


def main(phrasings: list[int], requests: int, *, conversations: int = 10_000,
         batch: int = 500, embed_sentences: int = 5_000, skip_embeddings: bool = False,
         per_entry: int | None = None, quiet: bool = False,
         keep_data: bool = False) -> dict[str, Any]:
    """Run every benchmark, print a table (unless quiet) and return the figures."""
    phrasings = sorted(phrasings)
    results: dict[str, Any] = {
        "environment": {
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0],
        },
        "targets": {
            "embedding_sentences_per_s": TARGET_EMBED_PER_S,
            f"answer_p50_ms_at_{TARGET_LATENCY_AT}": TARGET_ANSWER_P50_MS,
            f"answer_p99_ms_at_{TARGET_LATENCY_AT}": TARGET_ANSWER_P99_MS,
            "ingestion_conversations_per_s": TARGET_INGEST_PER_S,
        },
    }

    def log(msg: str) -> None:  # progress: stdout, or stderr when stdout carries JSON
        print(msg, file=sys.stderr if quiet else sys.stdout)

    if not skip_embeddings:
        log(f"[bench] embedding {embed_sentences} sentences ...")
        try:
            results["embeddings"] = measure_embeddings(embed_sentences)
        except Exception as exc:
            results["embeddings"] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()

    corpus = load_corpus(WARMUP_REQUESTS + requests)
    results["environment"]["corpus"] = (f"{corpus.source}, {corpus.pool_size} KB phrasings, "
                                        f"{len(corpus.heldout)} held-out questions")
    results["environment"]["kb_shape"] = ("one entry per intent" if per_entry is None
                                          else f"~{per_entry} phrasings per entry")
    results["answer"] = []
    questions = [q for q, _ in corpus.heldout]
    for i, size in enumerate(phrasings):
        last = i == len(phrasings) - 1
        run: dict[str, Any] = {"phrasings": size}
        results["answer"].append(run)
        try:
            entries = build_entries(corpus, size, per_entry)
            log(f"[bench] {size} phrasings: starting server ...")
            with running_server(keep_data=keep_data) as server, _client(server) as client:
                slug = "bench"
                log(f"[bench] seeding {len(entries)} entries via {server.base_url} ...")
                seed = seed_kb(client, slug, entries)
                entry_category = seed.pop("_entry_category")
                run["seed"] = seed
                log(f"[bench]   seeded in {seed['seconds']:.1f} s; timing {requests} "
                    "/answer calls ...")
                run["latency"] = measure_answers(client, slug, corpus.heldout, requests,
                                                 entry_category)
                if last and conversations > 0:
                    log(f"[bench] ingesting {conversations} conversations ...")
                    try:
                        results["ingestion"] = measure_ingestion(client, slug, conversations,
                                                                 batch, questions)
                    except Exception as exc:
                        results["ingestion"] = {"error": f"{type(exc).__name__}: {exc}"}
                        traceback.print_exc()
        except Exception as exc:
            run["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            if last and conversations > 0 and "ingestion" not in results:
                results["ingestion"] = {"error": "server run failed before ingestion"}

    results["environment"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["passed"] = _passed(results)
    if not quiet:
        print()
        print(format_table(results))
    return results


def cli(argv: list[str] | None = None) -> int:
    """Exit status: 0 every target met, 1 a target missed, 2 a benchmark errored."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phrasings", type=int, nargs="+", default=[1_000, 10_000],
                        help="KB sizes (question + variants) for /answer (default 1000 10000)")
    parser.add_argument("--requests", type=int, default=500,
                        help="timed /answer calls per KB size (default 500)")
    parser.add_argument("--conversations", type=int, default=10_000,
                        help="conversations to ingest (0 skips; default 10000)")
    parser.add_argument("--batch", type=int, default=500, help="conversations per request")
    parser.add_argument("--embed-sentences", type=int, default=5_000,
                        help="sentences for the embedding benchmark (default 5000)")
    parser.add_argument("--per-entry", type=int, default=None,
                        help="split each intent into entries of ~N phrasings (default: one "
                             "entry per intent)")
    parser.add_argument("--skip-embeddings", action="store_true")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep each server's temporary data dir (and server.log)")
    parser.add_argument("--json", action="store_true",
                        help="print the figures as JSON on stdout (progress goes to stderr)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.batch < 1 or min(args.phrasings) < 1:
        parser.error("--requests, --batch and --phrasings must be at least 1")
    results = main(args.phrasings, args.requests, conversations=args.conversations,
                   batch=args.batch, embed_sentences=args.embed_sentences,
                   skip_embeddings=args.skip_embeddings, per_entry=args.per_entry,
                   quiet=args.json,
                   keep_data=args.keep_data)
    if args.json:
        print(json.dumps(results, indent=2))
        print(format_table(results), file=sys.stderr)
    errored = any("error" in (results.get(k) or {}) for k in ("embeddings", "ingestion")) or \
        any("error" in r for r in results.get("answer", []))
    return 2 if errored else (0 if results["passed"] else 1)


if __name__ == "__main__":
    sys.exit(cli())
