"""Structured logs: bound fields on every line, JSON and text, and no credential in the output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from core import logs
from core.review.mailroom import new_reply_key
from core.settings import load_settings


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    out = io.StringIO()
    logs.configure(level="DEBUG", fmt="json", stream=out)
    yield out, logging.getLogger("autotrain.test")
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_every_json_line_carries_the_bound_bot_job_and_correlation_id(captured: Any) -> None:
    out, log = captured
    log.info("outside any scope")
    with logs.scope(job="cycle:abc:2026120210", bot="acme"):
        log.warning("inside: %d gaps", 3)
        logs.bind(bot="globex")
        log.info("rebound")
    first, inside, rebound = lines(out)
    assert first["message"] == "outside any scope"
    assert first["bot"] is first["job"] is first["correlation_id"] is None
    assert inside["message"] == "inside: 3 gaps" and inside["level"] == "WARNING"
    assert inside["bot"] == "acme" and inside["job"] == "cycle:abc:2026120210"
    assert inside["logger"] == "autotrain.test" and inside["time"]
    assert inside["correlation_id"] and rebound["correlation_id"] == inside["correlation_id"]
    assert rebound["bot"] == "globex"


def test_no_credential_reaches_the_output(captured: Any) -> None:
    out, log = captured
    settings = load_settings(AUTOTRAIN_API_KEY="my-own-admin-key-123", DATABASE_URL="",
                             CHROMA_URL="", REDIS_URL="",
                             SMTP_PASSWORD="hunter2-smtp-pass")
    logs.REDACT.add(logs.settings_secrets(settings))
    reply_key = new_reply_key()
    secrets = ["atk_Zx9f8K2mQ-long_bot_key_value", "atadm_3kLmN0pQrStUvWxYz",
               "eyJhbGciOiJIUzI1NiJ9.payload.sig", "my-own-admin-key-123",
               "hunter2-smtp-pass", reply_key, "xoxb-1234-5678-abcdefghij", "s3cr3tpass",
               "ImFiYyI.Zk9x2Q.l0ng-s1gnature"]
    log.info("key %s and %s presented; header Authorization: Bearer %s", *secrets[:3])
    log.warning("configured %s / %s; mail to reply+%s@example.com; token %s",
                *secrets[3:7])
    log.error("cannot reach postgresql://autotrain:%s@db:5432/autotrain", secrets[7])
    log.info('"GET /email/links/%s HTTP/1.1" 200', secrets[8])
    try:
        raise RuntimeError(f"refused {secrets[0]}")
    except RuntimeError:
        log.exception("job failed")
    text = out.getvalue()
    for secret in secrets:
        assert secret not in text, secret
    assert text.count(logs.REDACTED) >= len(secrets)
    # What is not a secret is left readable.
    records = lines(out)
    assert "reply+[redacted]@example.com" in records[1]["message"]
    assert "postgresql://autotrain:[redacted]@db:5432/autotrain" in records[2]["message"]
    assert "RuntimeError: refused [redacted]" in records[4]["exc_info"]


def test_settings_secrets_are_every_secret_field() -> None:
    settings = load_settings(AUTOTRAIN_API_KEY="admin-key-xyz", DATABASE_URL="", CHROMA_URL="",
                             REDIS_URL="", IMAP_PASSWORD="imap-pass-123")
    found = logs.settings_secrets(settings)
    assert {"admin-key-xyz", "imap-pass-123"} <= set(found)
    assert all(isinstance(getattr(settings, n), SecretStr) or getattr(settings, n) is None
               for n in type(settings).model_fields if "password" in n or "secret" in n)


def test_text_format_shows_only_the_bound_fields() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    try:
        logs.configure(level="INFO", fmt="text", stream=out)
        log = logging.getLogger("autotrain.text")
        log.info("plain line")
        with logs.scope(correlation_id="req-123456", bot="acme"):
            log.info("about %s", "atk_abcdefghijkl")
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
    plain, bound = out.getvalue().splitlines()
    assert plain.endswith("INFO autotrain.text: plain line")
    assert bound.endswith("INFO autotrain.text [bot=acme cid=req-123456]: about [redacted]")


def test_auto_is_text_at_a_terminal_and_json_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve_format("auto", Tty()) == "text"
    assert logs.resolve_format(None, io.StringIO()) == "json"
    assert logs.resolve_format("text", io.StringIO()) == "text"


async def test_a_job_binds_its_id_and_bot(captured: Any) -> None:
    out, log = captured

    async def run_cycle(ctx: dict[str, Any], bot_id: str, as_of: str | None = None) -> str:
        log.info("cycle ran")
        return bot_id

    async def relay(ctx: dict[str, Any]) -> None:
        log.info("relayed")

    wrapped = logs.job(run_cycle)
    assert wrapped.__qualname__ == run_cycle.__qualname__  # arq registers it by this name
    assert await wrapped({"job_id": "cycle:b1:2026120210"}, "b1") == "b1"
    await asyncio.gather(logs.job(relay)({}), logs.job(relay)({}))
    cycle, r1, r2 = [r for r in lines(out) if r["logger"] == "autotrain.test"]
    assert cycle["job"] == "cycle:b1:2026120210" and cycle["bot"] == "b1"
    assert r1["job"] == r2["job"] == "relay" and r1["bot"] is None
    # Each run is its own scope: two runs at once do not share an id.
    assert r1["correlation_id"] != r2["correlation_id"]


@pytest.mark.parametrize("given", ["abc", "x" * 129, "a b c d e f", 'quote"injection',
                                   "line\nbreak-here"])
def test_an_unsafe_request_id_is_not_taken(given: str) -> None:
    assert logs.sane_request_id(given) is None


def test_a_load_balancers_request_id_is_taken() -> None:
    for given in ("0f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0", "Root=1-67891233-abcdef012345678912"):
        assert logs.sane_request_id(given) == given
