"""A cycle over 100,000 conversations run by the worker: the arq job on Redis, time and peak RSS.

    python -m benchmarks.worker_cycle [--conversations 100000] [--weeks 20]
        [--database-url URL] [--redis-url URL] [--chroma-url URL] [--json]

Seeds one bot the way benchmarks.cycle does (a KB covering 40% of the BANKING77 intents and
`--conversations` transcripts of its realistic mix, written straight to storage), on
PostgreSQL (`--database-url`, else $TEST_DATABASE_URL, else a throwaway server) and a Chroma
server (`--chroma-url`, else $TEST_CHROMA_URL, else the embedded index). Then:

- with Redis (`--redis-url`, else $TEST_REDIS_URL): enqueues `run_cycle` for the bot and runs
  `autotrain worker --burst` in a fresh process, as production does. Prints the job's own
  time (arq's start to finish), the worker process's wall time (start-up included) and its
  peak RSS (the child's high-water mark, from getrusage);
- without Redis: runs the same job function in this process (`worker.run_cycle`), and
  prints its time and this process's peak RSS (seeding included: an upper bound).

Like `autotrain replay`, this is a long run (minutes); `--conversations 5000` for a quick one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.cycle import COVERAGE, Generator, load_questions
from benchmarks.ingest import _load, _reset, throwaway_postgres

ROOT = Path(__file__).resolve().parents[1]


def seed(settings: Any, conversations: int, weeks: int, seed_: int = 0
         ) -> tuple[str, datetime, float]:
    """One bot with its KB and `conversations` transcripts; (bot id, the last day, seconds)."""
    from core.bots import create_bot
    from core.conversations import ConversationIn, store_conversations
    from core.db import session_scope
    from core.policy.commands import Actor, Channel, CreateEntry
    from core.replay import reference_answer
    from core.services import build_core_services

    t0 = time.perf_counter()
    data = load_questions()
    svc = build_core_services(settings)
    try:
        labels = sorted(data)
        random.Random(seed_).shuffle(labels)
        covered = labels[:round(COVERAGE * len(labels))]
        with session_scope(svc.engine) as session:
            bot_id = create_bot(session, slug="bench", name="Worker cycle benchmark").id
        actor = Actor(name="bench", channel=Channel.cli)
        created = svc.policy.create_entries([
            CreateEntry(bot_id=bot_id, question=data[lb][0], answer=reference_answer(lb),
                        variants=data[lb][1:4], actor=actor) for lb in covered])
        entries = {lb: c["id"] for lb, c in zip(covered, created, strict=True)}
        gen = Generator(data, entries, seed=seed_)
        start = datetime(2026, 1, 5, tzinfo=UTC)
        end = start + timedelta(weeks=weeks)
        for batch in gen.batches("hist", conversations, start, end):
            with session_scope(svc.engine) as session:
                store_conversations(session, bot_id=bot_id, conversations=[
                    ConversationIn.model_validate(c) for c in batch])
    finally:
        svc.close()
    return bot_id, end, time.perf_counter() - t0


async def _enqueue(redis_url: str, bot_id: str, as_of: datetime) -> str:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        await pool.flushdb()
        job = await pool.enqueue_job("run_cycle", bot_id, as_of.isoformat())
        assert job is not None
        return job.job_id
    finally:
        await pool.aclose()


async def _job_result(redis_url: str, job_id: str) -> dict[str, Any]:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.jobs import Job

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        info = await Job(job_id, pool).result_info()
        if info is None:
            raise RuntimeError("the worker left no result for the cycle job")
        return {"success": info.success, "result": info.result,
                "job_seconds": round((info.finish_time - info.start_time).total_seconds(), 1)}
    finally:
        await pool.aclose()


def on_worker(env: dict[str, str], redis_url: str, bot_id: str, as_of: datetime
              ) -> dict[str, Any]:
    job_id = asyncio.run(_enqueue(redis_url, bot_id, as_of))
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "worker", "--burst"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=3 * 3600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"worker exited {done.returncode}: {done.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    out = asyncio.run(_job_result(redis_url, job_id))
    if not out["success"]:
        raise RuntimeError(f"the cycle job failed: {out['result']!r}")
    out.update(where="arq worker process (autotrain worker --burst)",
               worker_wall_seconds=round(wall, 1),
               # The high-water mark of any waited child; the worker is by far the largest.
               peak_rss_mb=round(peak / 1024) if peak > before else None)
    return out


def in_process(settings: Any, bot_id: str, as_of: datetime) -> dict[str, Any]:
    import worker
    from core.services import build_core_services

    svc = build_core_services(settings)
    try:
        t0 = time.perf_counter()
        result = asyncio.run(worker.run_cycle({"services": svc}, bot_id, as_of.isoformat()))
        seconds = time.perf_counter() - t0
    finally:
        svc.close()
    return {"where": "job function in this process (no Redis)", "success": True,
            "result": result, "job_seconds": round(seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run(*, conversations: int, weeks: int, database_url: str, redis_url: str | None,
        chroma_url: str | None) -> dict[str, Any]:
    from core.settings import load_settings

    _reset(database_url)
    data_dir = Path(tempfile.mkdtemp(prefix="autotrain-worker-cycle-"))
    env = {**os.environ, "DATABASE_URL": database_url, "CHROMA_URL": chroma_url or "",
           "REDIS_URL": redis_url or "", "AUTOTRAIN_DATA_DIR": str(data_dir),
           "ANONYMIZED_TELEMETRY": "False", "AUTOTRAIN_LOG_FORMAT": "json",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    settings = load_settings(AUTOTRAIN_DATA_DIR=data_dir, DATABASE_URL=database_url,
                             CHROMA_URL=chroma_url or "", REDIS_URL=redis_url or "")
    if chroma_url:
        # Collections of earlier runs on the same server would only slow it down.
        from urllib.parse import urlsplit

        import chromadb

        parts = urlsplit(chroma_url)
        client = chromadb.HttpClient(host=parts.hostname or "127.0.0.1", port=parts.port or 8000)
        for c in client.list_collections():
            client.delete_collection(c.name)
    bot_id, as_of, seeded = seed(settings, conversations, weeks)
    load_before = _load()
    out = on_worker(env, redis_url, bot_id, as_of) if redis_url else \
        in_process(settings, bot_id, as_of)
    out.update(conversations=conversations, seed_seconds=round(seeded, 1),
               database="postgresql", index="chroma server" if chroma_url else "embedded",
               load_before=load_before, load_after=_load())
    return out


def report(r: dict[str, Any]) -> str:
    res = r.get("result") or {}
    lines = [f"cycle over {r['conversations']:,} conversations ({r['database']}, "
             f"{r['index']} index), run by the {r['where']}",
             f"  job: {r['job_seconds']} s"
             + (f"; worker process {r['worker_wall_seconds']} s with start-up"
                if "worker_wall_seconds" in r else "")
             + f"; peak RSS {r['peak_rss_mb']} MB",
             f"  found: {json.dumps(res)[:300]}",
             f"  seeding took {r['seed_seconds']} s (not measured above)",
             f"  load average before {r['load_before']}, after {r['load_after']}"]
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker_cycle",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--weeks", type=int, default=20)
    p.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"),
                   help="PostgreSQL to use (its public schema is emptied first)")
    p.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL"),
                   help="Redis for the arq worker (flushed); without it, the job in-process")
    p.add_argument("--chroma-url", default=os.environ.get("TEST_CHROMA_URL"),
                   help="a Chroma server (its collections are deleted first)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.conversations < 1 or a.weeks < 1:
        p.error("--conversations and --weeks must be >= 1")
    with contextlib.ExitStack() as stack:
        url = a.database_url or stack.enter_context(throwaway_postgres())
        result = run(conversations=a.conversations, weeks=a.weeks, database_url=url,
                     redis_url=a.redis_url, chroma_url=a.chroma_url)
    print(json.dumps(result, indent=2, default=str) if a.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
