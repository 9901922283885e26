"""Ingestion under load: two `autotrain serve` processes on one PostgreSQL, fed in parallel.

    python -m benchmarks.ingest [--conversations 100000] [--processes 2] [--concurrency 4]
                                [--batch 1000] [--database-url URL] [--json]

Starts `--processes` app processes on loopback ports against one PostgreSQL (`--database-url`,
else $TEST_DATABASE_URL, else a throwaway server started here like scripts/test.sh does, when
the PostgreSQL binaries are installed), migrates it once, creates a bot with a few KB entries
and a chatbot key, then posts `--conversations` transcripts in batches of `--batch` (the API's
maximum is 1,000), spread round-robin over the processes with at most `--concurrency` requests
in flight. Bodies are built and encoded before the clock starts, so the figure is the
servers', not the load generator's.

Each transcript is a BANKING77 question (/work/shared/data/banking77) with what followed:
~60% answered by the bot from an entry and thanked (a thumbs-up on half of them), ~30% the
bot's fallback, then a human agent's reply and the customer's thanks, ~10% a wrong answer
with a thumbs-down and a CSAT of 1 or 2.

Prints conversations/s (target: >= 1,000/s with two processes), per-request p50/p99, errors,
and the number of rows stored (checked against the number sent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from benchmarks.cycle import BANKING77_DIR, load_questions
from benchmarks.run import _check, _free_port, _percentiles, running_server

TARGET_PER_S = 1_000.0
FALLBACK = "Sorry, I am not sure about that. Let me connect you with a colleague."
THANKS = ["great, thanks!", "thank you", "perfect, got it", "ok that worked"]
UNHAPPY = ["that's not what I asked", "this doesn't help", "no, that's wrong"]
AGENT = ["Hi, thanks for waiting. {a}", "Hello! {a} Anything else I can help with?", "{a}"]


def _load() -> str:
    # The machine may be shared: the figure means little without the load it ran under.
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# -- a throwaway PostgreSQL (when none is given) ---------------------------------------------

def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL on a free loopback port in a temp dir, removed afterwards (the settings
    scripts/test.sh uses: trust auth, no fsync: a benchmark database, not a durable one)."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        raise SystemExit("no PostgreSQL: pass --database-url or set TEST_DATABASE_URL, or "
                         "install PostgreSQL (scripts/test.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="autotrain-bench-pg-"))
    as_pg: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = root / "data"

    def run(*cmd: str) -> None:
        subprocess.run([*as_pg, *cmd], check=True, capture_output=True, cwd="/")

    run(str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
        "--locale=C.UTF-8", "--no-sync")
    run(str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w",
        "-t", "60", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200", "start")
    try:
        run(str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
            "autotrain_bench")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/autotrain_bench"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _reset(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _stored(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        count = int(conn.execute(text("SELECT count(*) FROM conversation")).scalar_one())
    engine.dispose()
    return count


# -- the transcripts -------------------------------------------------------------------------

def build_bodies(total: int, batch: int, entries: list[tuple[str, str]],
                 questions: list[str], seed: int = 0) -> list[bytes]:
    """`total` transcripts as encoded request bodies of `batch` each. `entries` are
    (entry id, answer) pairs the bot answers with."""
    rng = random.Random(seed)
    run = secrets.token_hex(4)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=14)
    bodies = []
    for start in range(0, total, batch):
        convs = []
        for i in range(start, min(total, start + batch)):
            t0 = base + timedelta(seconds=rng.randrange(14 * 24 * 3600))

            def at(seconds: int, t0: datetime = t0) -> str:
                return (t0 + timedelta(seconds=seconds)).isoformat()

            question = rng.choice(questions)
            entry_id, answer = rng.choice(entries)
            messages: list[dict[str, Any]] = [
                {"role": "customer", "text": question, "at": at(0)}]
            feedback: list[dict[str, Any]] = []
            conv: dict[str, Any] = {"id": f"ingest-{run}-{i}", "started_at": at(0),
                                    "channel": rng.choice(["web", "app", "web"])}
            roll = rng.random()
            if roll < 0.6:
                messages += [{"role": "bot", "text": answer, "at": at(2), "entry_id": entry_id},
                             {"role": "customer", "text": rng.choice(THANKS), "at": at(40)}]
                if rng.random() < 0.5:
                    feedback.append({"message_index": 1, "rating": "up"})
            elif roll < 0.9:
                messages += [{"role": "bot", "text": FALLBACK, "at": at(2)},
                             {"role": "agent", "text": rng.choice(AGENT).format(a=answer),
                              "at": at(180)},
                             {"role": "customer", "text": rng.choice(THANKS), "at": at(240)}]
            else:
                messages += [{"role": "bot", "text": answer, "at": at(2), "entry_id": entry_id},
                             {"role": "customer", "text": rng.choice(UNHAPPY), "at": at(30)}]
                feedback.append({"message_index": 1, "rating": "down"})
                conv["csat"] = rng.choice([1, 2])
            conv["messages"] = messages
            if feedback:
                conv["feedback"] = feedback
            convs.append(conv)
        bodies.append(json.dumps({"conversations": convs}).encode())
    return bodies


# -- the load --------------------------------------------------------------------------------

async def post_all(base_urls: list[str], key: str, slug: str, bodies: list[bytes],
                   concurrency: int) -> dict[str, Any]:
    """Post every body, round-robin over the servers, at most `concurrency` at once."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [httpx.AsyncClient(base_url=u, headers=headers, timeout=300, limits=limits)
               for u in base_urls]
    latencies: list[float] = []
    errors: list[str] = []
    accepted = 0

    async def post(i: int, body: bytes) -> None:
        nonlocal accepted
        async with gate:
            t0 = time.perf_counter()
            try:
                r = await clients[i % len(clients)].post(f"/api/v1/bots/{slug}/conversations",
                                                         content=body)
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            else:
                accepted += r.json()["accepted"]

    start = time.perf_counter()
    try:
        await asyncio.gather(*(post(i, b) for i, b in enumerate(bodies)))
    finally:
        for c in clients:
            await c.aclose()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "accepted": accepted, "errors": len(errors),
            "first_errors": errors[:3], "requests": len(bodies),
            "request_ms": _percentiles(latencies) if latencies else {}}


def run(conversations: int, processes: int, concurrency: int, batch: int,
        database_url: str) -> dict[str, Any]:
    _reset(database_url)
    # Migrate once before the servers start: several processes migrating at once would race.
    with tempfile.TemporaryDirectory(prefix="autotrain-migrate-") as scratch:
        subprocess.run([sys.executable, "-c", "import cli; cli.main()", "migrate"],
                       check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1],
                       env={**os.environ, "DATABASE_URL": database_url,
                            "AUTOTRAIN_DATA_DIR": scratch, "ANONYMIZED_TELEMETRY": "False"})
    admin = "atadm_bench-" + secrets.token_urlsafe(24)
    env = {"DATABASE_URL": database_url, "CHROMA_URL": "", "REDIS_URL": "",
           "AUTOTRAIN_API_KEY": admin, "AUTOTRAIN_LOG_FORMAT": "json",
           # No cycle during the measurement (the first scheduled one is a week away).
           "AUTOTRAIN_CYCLE_INTERVAL_MINUTES": str(7 * 24 * 60)}
    by_label = load_questions(BANKING77_DIR)
    questions = [q for qs in by_label.values() for q in qs]
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(running_server(env=env, label=f"ingest{i}"))
                   for i in range(processes)]
        with httpx.Client(base_url=servers[0].base_url, timeout=120,
                          headers={"Authorization": f"Bearer {admin}"}) as http:
            slug = "bank"
            _check(http.post("/api/v1/bots", json={"slug": slug, "name": "Bank"}), "bot")
            entries = []
            for label in list(by_label)[:20]:
                answer = f"Here is how {label.replace('_', ' ')} works: see the app's help."
                made = _check(http.post(f"/api/v1/bots/{slug}/kb/entries", json={
                    "question": by_label[label][0], "answer": answer}), "entry")
                entries.append((made["id"], answer))
            key = _check(http.post(f"/api/v1/bots/{slug}/keys",
                                   json={"name": "chatbot", "scope": "chatbot"}), "key")["key"]
        bodies = build_bodies(conversations, batch, entries, questions)
        load_before = _load()
        out = asyncio.run(post_all([s.base_url for s in servers], key, slug, bodies,
                                   concurrency))
    out.update(conversations=conversations, processes=processes, concurrency=concurrency,
               batch=batch, stored=_stored(database_url), load_before=load_before,
               load_after=_load())
    out["conversations_per_s"] = round(out["accepted"] / out["seconds"], 1)
    return out


def report(r: dict[str, Any]) -> str:
    ms = r.get("request_ms", {})
    ok = r["conversations_per_s"] >= TARGET_PER_S and r["errors"] == 0 \
        and r["stored"] == r["conversations"]
    return "\n".join([
        f"ingestion: {r['conversations']:,} conversations in batches of {r['batch']:,}, "
        f"{r['processes']} app processes, {r['concurrency']} requests in flight",
        f"  {r['conversations_per_s']:,.0f} conversations/s ({r['seconds']} s)   "
        f"target >= {TARGET_PER_S:,.0f}/s   {'PASS' if ok else 'FAIL'}",
        f"  per request: p50 {ms.get('p50_ms', 0):,.0f} ms, p99 {ms.get('p99_ms', 0):,.0f} ms, "
        f"max {ms.get('max_ms', 0):,.0f} ms",
        f"  errors: {r['errors']}{' ' + str(r['first_errors']) if r['errors'] else ''}   "
        f"stored: {r['stored']:,} of {r['conversations']:,}",
        f"  load average before {r['load_before']}, after {r['load_after']}",
    ])


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split(
        "\n")[0])
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight, in all")
    p.add_argument("--batch", type=int, default=1_000, help="conversations per request")
    p.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"),
                   help="PostgreSQL to use (its public schema is emptied first)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not 1 <= a.batch <= 1_000 or a.conversations < 1 or a.processes < 1 \
            or a.concurrency < 1:
        p.error("--batch is 1..1000; --conversations, --processes, --concurrency >= 1")
    with contextlib.ExitStack() as stack:
        url = a.database_url or stack.enter_context(throwaway_postgres())
        result = run(a.conversations, a.processes, a.concurrency, a.batch, url)
    print(json.dumps(result, indent=2) if a.json else report(result))
    return 0 if result["errors"] == 0 and result["stored"] == a.conversations else 1


if __name__ == "__main__":
    sys.exit(cli())
