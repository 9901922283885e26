"""Request ids: returned on every response, on every log line of the request, quoted on a 500."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.deps import BotDep
from app import create_app
from core import logs
from core.services import Services
from tests.helpers import ADMIN_KEY


@pytest.fixture
def out(services: Services) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    stream = io.StringIO()
    # As `autotrain serve` does: the settings' secrets (the admin key here) are redacted.
    logs.configure(level="INFO", fmt="json", stream=stream,
                   secrets=logs.settings_secrets(services.settings))
    yield stream
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_response_has_a_request_id_and_a_sane_one_is_echoed(client: TestClient) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    mine = "lb-7f3a9c21-0001"
    assert client.get("/healthz", headers={"X-Request-ID": mine}).headers["x-request-id"] == mine
    forged = client.get("/healthz", headers={"X-Request-ID": 'x" injected="1'})
    assert forged.headers["x-request-id"] != 'x" injected="1'
    assert len(forged.headers["x-request-id"]) == 32
    # An error response carries one too.
    assert client.get("/api/v1/bots").headers["x-request-id"]


def test_a_500_quotes_the_request_id_and_its_log_line_carries_it(
        services: Services, out: io.StringIO) -> None:
    app = create_app(services, background_jobs=False)

    def boom() -> None:
        raise RuntimeError(f"database refused key {ADMIN_KEY}")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom", headers={"X-Request-ID": "support-ticket-42"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "support-ticket-42"
    assert "quote reference support-ticket-42" in r.json()["detail"]
    line = next(rec for rec in records(out) if rec["message"].startswith("unexpected error"))
    assert line["correlation_id"] == "support-ticket-42" and line["level"] == "ERROR"
    assert "RuntimeError" in line["exc_info"] and ADMIN_KEY not in out.getvalue()


def test_log_lines_of_a_request_name_its_bot(services: Services, out: io.StringIO) -> None:
    app = create_app(services, background_jobs=False)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(app) as c:
        assert c.post("/api/v1/bots", json={"slug": "acme", "name": "Acme"},
                      headers=headers).status_code == 201
        log = logging.getLogger("autotrain.probe")

        # A route of the test's own, behind the same bot dependency as the real ones.
        def probe(bot: BotDep) -> dict[str, str]:
            log.info("probe for %s", bot.slug)
            return {"ok": "yes"}

        app.add_api_route("/api/v1/bots/{slug}/probe", probe)
        r = c.get("/api/v1/bots/acme/probe", headers={**headers, "X-Request-ID": "req-probe-1"})
    assert r.status_code == 200
    line = next(rec for rec in records(out) if rec["message"] == "probe for acme")
    assert line["bot"] == "acme" and line["correlation_id"] == "req-probe-1"
    assert ADMIN_KEY not in out.getvalue()
