"""`/answer` throughput under concurrent load, measured with wrk against a real `autotrain serve`.

For each backend a fresh server is started (`autotrain serve`, as `benchmarks.run` does), a bot
is created and its KB seeded over HTTP with ~10,000 BANKING77 phrasings (train.csv texts as
entries and variants), a chatbot-scope key is issued, and wrk (a real load generator, in C)
POSTs questions the KB does not contain: held-out test.csv questions, each sent once and
never seen before by the server (a greeting or closing is added to reach enough distinct
texts: every request is a cache miss of the embedding cache). Two runs per backend, in the
same server: `--connections` (50) concurrent connections for `--duration` seconds, then one
connection for the same time. Each prints answers/s, p50/p90/p99 latency and errors/non-2xx.

Backends (`--backend`):
  embedded   the default: SQLite + embedded Chroma, one process
  server     PostgreSQL + a Chroma server, `serve --workers N` (`--workers`, default 2):
             TEST_DATABASE_URL / TEST_CHROMA_URL if set, else throwaway ones started here
             (PostgreSQL 15 binaries under /usr/lib/postgresql, `chroma run` from this venv)

    python -m benchmarks.answer_load [--backend embedded server] [--duration 60]
        [--connections 50] [--phrasings 10000] [--workers 2] [--repeat-share 0]

`--repeat-share 0.5` adds a third run per backend where that share of the questions repeat
ones already asked (labelled so; the primary figures are distinct questions).
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.run import Server, build_entries, load_corpus, running_server, seed_kb

# Ways a customer wraps a question: each held-out question becomes several distinct texts,
# so a 60 s run at hundreds of answers/s never sends the same text twice.
WRAPPERS = ["{q}", "Hi, {q}", "Hello! {q}", "{q} Thanks.", "Quick question: {q}",
            "{q} Thank you!", "Hey there, {q}", "Good morning. {q}", "{q} Cheers",
            "Hi team, {q}", "Excuse me, {q}", "{q} Please help.", "Hello, {q} Thanks!",
            "Hi again, {q}", "Sorry to bother you: {q}", "{q} Any idea?",
            "Good evening, {q}", "One more thing: {q}", "{q} Much appreciated.",
            "Hi! Quick one: {q}"]
HELDOUT = 3_000  # test.csv questions kept out of the KB (the rest of the KB is train.csv)

LUA = r"""
-- Each wrk thread sends its own slice of the bodies, in order: no text is sent twice
-- unless the slice runs out (then it starts over; the benchmark reports that).
local bodies = {}
for line in io.lines(os.getenv("ANSWER_BODIES")) do bodies[#bodies + 1] = line end
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  nthreads = tonumber(os.getenv("ANSWER_THREADS"))
  i = 0
  sent = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("ANSWER_KEY")
end
function request()
  local idx = (i * nthreads + tid) % #bodies + 1
  i = i + 1
  sent = sent + 1
  return wrk.format(nil, os.getenv("ANSWER_PATH"), nil, bodies[idx])
end
function done(summary, latency, requests)
  local sent_total = 0
  for _, t in ipairs(threads) do sent_total = sent_total + t:get("sent") end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d, '
    .. '"sent": %d, "bodies": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    sent_total, #bodies))
end
"""


@dataclass(frozen=True)
class Run:
    label: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    repeats: int  # requests beyond the distinct texts given to wrk
    cpu_s: float  # CPU time the server's processes used during the run

    @property
    def cpu_ms_per_answer(self) -> float:
        return 1000 * self.cpu_s / max(1, self.requests)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        return (f"  {self.label:34} {self.connections:>3} conn  {self.per_s:7.1f} answers/s  "
                f"p50 {self.p50_ms:6.1f} ms  p90 {self.p90_ms:6.1f} ms  "
                f"p99 {self.p99_ms:6.1f} ms  errors {self.errors}  non-2xx {self.non_2xx}  "
                f"app CPU {self.cpu_ms_per_answer:5.1f} ms/answer"
                + (f"  ({self.repeats} repeated texts)" if self.repeats > 0 else ""))


def distinct_questions(questions: list[str], seed: int) -> list[str]:
    """Every held-out question in every wrapper, shuffled: all distinct texts."""
    out = list(dict.fromkeys(w.format(q=q) for w in WRAPPERS for q in questions))
    random.Random(seed).shuffle(out)
    return out


def wrk_run(server: Server, *, slug: str, key: str, label: str, bodies: list[str],
            connections: int, duration: int, workdir: Path) -> Run:
    """One wrk run; `bodies` are the questions to send, in order."""
    threads = min(2, connections)
    body_file = workdir / f"bodies-{secrets.token_hex(4)}.txt"
    body_file.write_text("".join(json.dumps({"question": b}) + "\n" for b in bodies))
    script = workdir / "answer.lua"
    script.write_text(LUA)
    env = {**os.environ, "ANSWER_BODIES": str(body_file), "ANSWER_KEY": key,
           "ANSWER_PATH": f"/api/v1/bots/{slug}/answer", "ANSWER_THREADS": str(threads)}
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
           "--timeout", "10s", "-s", str(script), server.base_url]
    cpu_before = process_tree_cpu(server.process.pid)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    cpu = process_tree_cpu(server.process.pid) - cpu_before
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} "
                           f"{out.stderr[-2000:]}")
    got = json.loads(line.removeprefix("WRKJSON "))
    errors = got["connect"] + got["read"] + got["write"] + got["timeout"]
    return Run(label=label, connections=connections, requests=got["requests"],
               seconds=got["duration_us"] / 1e6, p50_ms=got["p50"] / 1000,
               p90_ms=got["p90"] / 1000, p99_ms=got["p99"] / 1000, max_ms=got["max"] / 1000,
               errors=errors, non_2xx=got["status"],
               repeats=max(0, got["sent"] - got["bodies"]), cpu_s=cpu)


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (live ones), from /proc.
    Unlike latency, this hardly depends on what else the machine is running."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def prepare_bot(server: Server, phrasings: int, questions_seed: int = 0
                ) -> tuple[str, str, list[str], dict[str, Any]]:
    """Create the bot, seed its KB over HTTP, issue a chatbot key: (slug, key, questions, seed
    figures)."""
    corpus = load_corpus(HELDOUT, seed=questions_seed)
    phrasings = min(phrasings, corpus.pool_size)
    entries = build_entries(corpus, phrasings)
    slug = f"load-{secrets.token_hex(3)}"
    with httpx.Client(base_url=server.base_url, timeout=600.0,
                      headers={"Authorization": f"Bearer {server.api_key}"}) as client:
        seeded = seed_kb(client, slug, entries)
        seeded.pop("_entry_category", None)
        resp = client.post(f"/api/v1/bots/{slug}/keys",
                           json={"name": "answer-load", "scope": "chatbot"})
        resp.raise_for_status()
        key = resp.json()["key"]
    return slug, key, [q for q, _ in corpus.heldout], seeded


def run_backend(server: Server, *, label: str, phrasings: int, duration: int,
                connections: int, repeat_share: float) -> list[Run]:
    slug, key, heldout, seeded = prepare_bot(server, phrasings)
    print(f"[{label}] seeded {seeded['phrasings']} phrasings in {seeded['entries']} entries "
          f"({seeded['seconds']} s); {len(heldout)} held-out questions", flush=True)
    texts = distinct_questions(heldout, seed=1)
    # Disjoint slices: the warm-up, each run and its repeats never share a text.
    warm, texts = texts[:300], texts[300:]
    half = len(texts) * 3 // 4
    many, one = texts[:half], texts[half:]
    workdir = Path(tempfile.mkdtemp(prefix="answer-load-"))
    runs: list[Run] = []
    try:
        wrk_run(server, slug=slug, key=key, label="warm-up", bodies=warm, connections=4,
                duration=3, workdir=workdir)
        runs.append(wrk_run(server, slug=slug, key=key, label=f"{label}, distinct questions",
                            bodies=many, connections=connections, duration=duration,
                            workdir=workdir))
        print(runs[-1].line(), flush=True)
        runs.append(wrk_run(server, slug=slug, key=key, label=f"{label}, distinct questions",
                            bodies=one, connections=1, duration=duration, workdir=workdir))
        print(runs[-1].line(), flush=True)
        if repeat_share > 0:
            # Questions already asked in the runs above, mixed into unseen ones.
            rng = random.Random(2)
            asked = many[:runs[0].requests] or many
            fresh = texts[: max(1, len(texts) // 8)][::-1]
            mixed = [rng.choice(asked) if rng.random() < repeat_share else fresh.pop()
                     if fresh else rng.choice(asked) for _ in range(len(many))]
            runs.append(wrk_run(server, slug=slug, key=key,
                                label=f"{label}, {repeat_share:.0%} repeated",
                                bodies=mixed, connections=connections, duration=duration,
                                workdir=workdir))
            print(runs[-1].line(), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return runs


# --------------------------------------------------------------------------- engines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql, or "
                           "set TEST_DATABASE_URL)")
    return found[-1].parent


def _as_pg(cmd: list[str]) -> list[str]:
    # initdb and pg_ctl refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port in a temp dir, as scripts/test.sh starts it."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    bindir, port = _pg_bin(), _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="answer-load-pg-"))
    tmp.chmod(0o777)
    data = tmp / "data"
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    subprocess.run(_as_pg([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                           "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                   check=True, capture_output=True, cwd="/")
    opts = (f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run(_as_pg([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "pg.log"),
                           "-w", "-t", "60", "-o", opts, "start"]),
                   check=True, capture_output=True, cwd="/")
    try:
        subprocess.run(_as_pg([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                               "-U", "postgres", "autotrain_load"]),
                       check=True, capture_output=True, cwd="/")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/autotrain_load"
    finally:
        subprocess.run(_as_pg([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                               "stop"]), capture_output=True, cwd="/", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def throwaway_chroma() -> Iterator[str]:
    if url := os.environ.get("TEST_CHROMA_URL"):
        yield url
        return
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="answer-load-chroma-"))
    chroma = Path(sys.executable).with_name("chroma")
    log = (tmp / "chroma.log").open("wb")
    proc = subprocess.Popen([str(chroma), "run", "--host", "127.0.0.1", "--port", str(port),
                             "--path", str(tmp / "data")], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chroma did not start: {(tmp / 'chroma.log').read_text()}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- main


def main(*, backends: list[str], duration: int, connections: int, phrasings: int,
         workers: int, repeat_share: float) -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    load_start = os.getloadavg()
    runs: list[Run] = []
    for backend in backends:
        if backend == "embedded":
            with running_server(label="answer-load") as server:
                runs += run_backend(server, label="embedded (SQLite + Chroma)",
                                    phrasings=phrasings, duration=duration,
                                    connections=connections, repeat_share=repeat_share)
        else:
            with throwaway_postgres() as db, throwaway_chroma() as chroma, running_server(
                    label="answer-load", env={"DATABASE_URL": db, "CHROMA_URL": chroma},
                    args=["--workers", str(workers)]) as server:
                runs += run_backend(server, label=f"PostgreSQL + Chroma server, {workers} "
                                                  "workers",
                                    phrasings=phrasings, duration=duration,
                                    connections=connections, repeat_share=repeat_share)
    load_end = os.getloadavg()
    print()
    print(f"/answer under load, {duration} s per run, wrk over loopback, distinct never-seen "
          "questions unless labelled:")
    for run in runs:
        print(run.line())
    print("app CPU: CPU time of the `autotrain serve` processes over the run / answers (not "
          "counting a Chroma server or PostgreSQL); "
          f"{os.cpu_count()} idle cores could give at most {os.cpu_count()} s of it a second")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_start[0]:.2f} / "
          f"{load_start[1]:.2f} / {load_start[2]:.2f} at start, {load_end[0]:.2f} / "
          f"{load_end[1]:.2f} / {load_end[2]:.2f} at end (wrk runs on the same CPUs)")
    return 0 if all(r.errors == 0 and r.non_2xx == 0 for r in runs) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_load",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--backend", nargs="+", choices=["embedded", "server"],
                        default=["embedded", "server"])
    parser.add_argument("--duration", type=int, default=60, help="seconds per run (60)")
    parser.add_argument("--connections", type=int, default=50,
                        help="concurrent connections of the loaded run (50)")
    parser.add_argument("--phrasings", type=int, default=10_000, help="KB size (10,000)")
    parser.add_argument("--workers", type=int, default=2,
                        help="app processes for the server backend (2)")
    parser.add_argument("--repeat-share", type=float, default=0.0,
                        help="also run a mix where this share of questions repeats (0: off)")
    a = parser.parse_args()
    sys.exit(main(backends=a.backend, duration=a.duration, connections=a.connections,
                  phrasings=a.phrasings, workers=a.workers, repeat_share=a.repeat_share))
