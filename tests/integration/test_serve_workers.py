"""`autotrain serve --workers N`: several app processes on shared engines, jobs in one of them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import _hold_lock
from tests.helpers import (
    ADMIN_KEY,
    ROOT,
    TEST_CHROMA_URL,
    TEST_DATABASE_URL,
    reset_postgres,
    run_cli,
)


def test_several_workers_are_refused_on_the_embedded_default(tmp_path: Path) -> None:
    out = run_cli(tmp_path / "data", "serve", "--workers", "2")
    assert out.returncode == 2
    assert "--workers 2 refused" in out.stderr
    assert "CHROMA_URL" in out.stderr and "DATABASE_URL" in out.stderr


def test_the_jobs_lock_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / "serve-jobs.lock"
    probe = [sys.executable, "-c", "import pathlib, sys; from app import _hold_lock; "
             "print(_hold_lock(pathlib.Path(sys.argv[1])) is not None)", str(lock)]
    held = _hold_lock(lock)
    assert held is not None
    try:
        other = subprocess.run(probe, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert other.stdout.strip() == "False", other.stderr
    finally:
        held.close()
    # Released (as when the holding worker exits, however it exits): another takes it.
    other = subprocess.run(probe, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert other.stdout.strip() == "True", other.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


@pytest.fixture
def workers_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if not (TEST_DATABASE_URL and TEST_CHROMA_URL):
        pytest.skip("TEST_DATABASE_URL and TEST_CHROMA_URL not set (scripts/test.sh starts them)")
    reset_postgres(TEST_DATABASE_URL)
    port = _free_port()
    env = {**os.environ, "AUTOTRAIN_DATA_DIR": str(tmp_path / "data"),
           "DATABASE_URL": TEST_DATABASE_URL, "CHROMA_URL": TEST_CHROMA_URL,
           "AUTOTRAIN_API_KEY": ADMIN_KEY, "ANONYMIZED_TELEMETRY": "False"}
    env.pop("REDIS_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port),
                             "--workers", "2"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# Two processes each load the embedding model and connect to both engines before they serve.
@pytest.mark.timeout(400)
def test_two_workers_answer_from_shared_engines_and_never_serve_a_deactivated_entry(
        workers_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    base, proc = workers_server
    assert len(_children(proc.pid)) >= 2  # the workers (and uvicorn's own helpers)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=f"{base}/api/v1", headers=admin, timeout=60) as c:
        assert c.post("/bots", json={"slug": "acme", "name": "Acme"}).status_code == 201
        entry = c.post("/bots/acme/kb/entries", json={
            "question": "How long does shipping take?",
            "answer": "Standard shipping takes 3-5 business days.",
            "variants": ["How long does delivery take?", "When will my order arrive?"]}).json()
        key = c.post("/bots/acme/keys", json={"name": "widget"}).json()["key"]
        widget = {"Authorization": f"Bearer {key}"}
        # Many calls: each worker process answers some of them (new connections each time).
        for _ in range(10):
            got = httpx.post(f"{base}/api/v1/bots/acme/answer", headers=widget, timeout=60,
                             json={"question": "when will my order arrive"}).json()
            assert got["entry_id"] == entry["id"] and not got["escalate"]
        assert c.post(f"/bots/acme/kb/entries/{entry['id']}/deactivate").status_code == 200
        for _ in range(10):
            got = httpx.post(f"{base}/api/v1/bots/acme/answer", headers=widget, timeout=60,
                             json={"question": "when will my order arrive"}).json()
            assert got["entry_id"] is None and got["escalate"]
    # Without REDIS_URL the scheduled jobs run in one worker: it holds the lock.
    assert _hold_lock(tmp_path / "data" / "serve-jobs.lock") is None
