"""scripts/production.sh against real PostgreSQL, Redis and Chroma: migrate, app + worker, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.helpers import (
    CHARGER_QUESTIONS,
    CHARGER_REPLIES,
    ROOT,
    TEST_CHROMA_URL,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    drafted_from,
    escalated_conversation,
    reset_postgres,
)

ADMIN = "atadm_production-test-admin-key-0123456789"
SECRET = "production-test-link-secret-0123456789"

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reset(database_url: str, redis_url: str) -> None:
    reset_postgres(database_url)
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()


async def _enqueue(redis_url: str, function: str) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        assert await pool.enqueue_job(function)
    finally:
        await pool.aclose()


def _wait(check: Any, what: str, seconds: float, out: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {seconds} s; output:\n"
                         f"{out.read_text()[-4000:]}")


def _json_lines(output: str) -> list[dict[str, Any]]:
    """honcho prefixes each line with `HH:MM:SS name.1 | `; what follows is one JSON object."""
    found = []
    for line in output.splitlines():
        _, bar, rest = line.partition("| ")
        if bar and rest.startswith("{"):
            found.append(json.loads(rest))
    return found


def test_the_launcher_runs_app_and_worker_and_stops_both(tmp_path: Path) -> None:
    if not (TEST_DATABASE_URL and TEST_REDIS_URL and TEST_CHROMA_URL):
        pytest.skip("needs TEST_DATABASE_URL, TEST_REDIS_URL and TEST_CHROMA_URL "
                    "(scripts/test.sh starts them)")
    _reset(TEST_DATABASE_URL, TEST_REDIS_URL)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRAIN_", "SLACK_",
                                                                    "SMTP_", "IMAP_", "EMAIL_"))}
    env.update(DATABASE_URL=TEST_DATABASE_URL, REDIS_URL=TEST_REDIS_URL,
               CHROMA_URL=TEST_CHROMA_URL, AUTOTRAIN_API_KEY=ADMIN,
               AUTOTRAIN_SECRET_KEY=SECRET, AUTOTRAIN_HOST="127.0.0.1",
               AUTOTRAIN_PORT=str(port), AUTOTRAIN_DATA_DIR=str(tmp_path / "data"),
               AUTOTRAIN_LOG_FORMAT="json", ANONYMIZED_TELEMETRY="False",
               # The commands of the interpreter running the tests, as an installed venv,
               # importing this checkout (an editable install may point at another one).
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=str(ROOT))
    out = tmp_path / "production.log"
    with out.open("wb") as sink:
        launcher = subprocess.Popen([str(ROOT / "scripts" / "production.sh")], env=env,
                                    stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    children: list[psutil.Process] = []
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            def ready() -> bool:
                try:
                    return http.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            _wait(ready, "GET /readyz 200", 120, out)
            ready_body = http.get("/readyz").json()
            assert launcher.poll() is None
            children = psutil.Process(launcher.pid).children(recursive=True)
            commands = [" ".join(c.cmdline()) for c in children]
            assert any(" serve " in f" {c} " for c in commands), commands
            assert any(c.rstrip().endswith("worker") for c in commands), commands

            assert http.post("/api/v1/bots", json={"slug": "shop", "name": "Shop"},
                             headers=admin).status_code == 201
            entry = http.post("/api/v1/bots/shop/kb/entries", headers=admin, json={
                "question": "How long does shipping take?",
                "answer": "Standard shipping takes 3-5 business days."})
            assert entry.status_code == 201, entry.text
            now = datetime.now(UTC) - timedelta(minutes=30)
            convs = [escalated_conversation(f"c{i}", q, CHARGER_REPLIES[i % 3],
                                            now - timedelta(minutes=5 * i))
                     for i, q in enumerate(CHARGER_QUESTIONS)]
            ingested = http.post("/api/v1/bots/shop/conversations", headers=admin,
                                 json={"conversations": convs})
            assert ingested.json() == {"accepted": 6, "updated": 0}, ingested.text

            # The worker's scheduled job, enqueued now instead of at the top of the hour: it
            # enqueues one cycle per bot, which the worker runs too.
            asyncio.run(_enqueue(TEST_REDIS_URL, "cycle_all_bots"))

            def suggested() -> list[dict[str, Any]]:
                r = http.get("/api/v1/bots/shop/suggestions", headers=admin)
                return list(r.json()["items"]) if r.status_code == 200 else []

            items = _wait(suggested, "a suggestion from the worker's cycle", 120, out)
            assert drafted_from(items[0]["answer"], CHARGER_REPLIES), items[0]
            answered = http.post("/api/v1/bots/shop/answer", headers=admin,
                                 json={"question": "how long does shipping take"}).json()
            assert answered["answer"] == "Standard shipping takes 3-5 business days."
            assert answered["escalate"] is False
            request_id = http.get("/healthz", headers={"X-Request-ID": "probe-0001"}
                                  ).headers["x-request-id"]
            assert request_id == "probe-0001"
        assert ready_body["status"] == "ready", ready_body
        # The suggestion is written before the cycle's last steps and its log line: stop only
        # once the worker has finished the job.
        _wait(lambda: "cycle for bot" in out.read_text(), "the cycle's end", 60, out)

        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 143
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [c.cmdline() for c in alive]
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for child in children:
            if child.is_running():
                child.kill()
    output = out.read_text()
    assert "schema at revision" in output  # migrated once, before both started
    lines = _json_lines(output)
    # The cycle's log line names its job and its bot; the access log line its request.
    cycle_lines = [rec for rec in lines if rec["message"].startswith("cycle for bot")]
    assert cycle_lines and cycle_lines[0]["job"] and cycle_lines[0]["bot"], lines[-20:]
    probe = [rec for rec in lines if rec["logger"] == "uvicorn.access"
             and "/healthz" in rec["message"] and rec["correlation_id"] == "probe-0001"]
    assert probe, [rec for rec in lines if rec["logger"] == "uvicorn.access"][-5:]
    ingest = [rec for rec in lines if rec["logger"] == "uvicorn.access"
              and "/conversations" in rec["message"]]
    assert ingest and ingest[0]["bot"] == "shop"
    assert ADMIN not in output and SECRET not in output
    assert "great, thanks" not in output and CHARGER_QUESTIONS[0] not in output
