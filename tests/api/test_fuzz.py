"""Every route, fuzzed from the OpenAPI document (Schemathesis strategies driven by
Hypothesis): valid and invalid input alike, the answer is never a 5xx (issue 14 item 6)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from app import create_app

# Routes whose callers are machines with their own tests and secrets: Slack signs its
# requests (tests/bot), inbound mail needs the inbound secret (tests/bot/mail).
SKIPPED = ("/slack/events", "/email/inbound")
EXAMPLES = 12
# The routes as the OpenAPI document lists them (built without services: routes only).
ROUTES = sorted((path, method) for path, item in create_app().openapi()["paths"].items()
                for method in item if path not in SKIPPED)


def test_every_route_is_fuzzed() -> None:
    assert len(ROUTES) > 30 and ("/api/v1/bots/{slug}/answer", "post") in ROUTES


@pytest.mark.parametrize(("path", "method"), ROUTES, ids=[f"{m.upper()} {p}" for p, m in ROUTES])
def test_no_input_gets_a_server_error(path: str, method: str, client: Any, api: Any, bot: Any,
                                      admin: dict[str, str]) -> None:
    # Something behind the bot's routes, so reads and edits go past the 404.
    api.load_faq(bot.slug, ["shipping", "returns"])
    op = schemathesis.openapi.from_asgi("/openapi.json", client.app)[path][method]
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    # Valid data reaches the logic; invalid data (wrong types, out-of-range numbers, missing
    # fields, bodies off the schema) must be refused with a 4xx, never a crash.
    for mode in GenerationMode:
        @given(case=op.as_strategy(mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            if "slug" in (case.path_parameters or {}):
                # The real bot: a made-up slug only ever reaches the 404.
                case.path_parameters["slug"] = bot.slug
            response = case.call(headers={**(case.headers or {}), **admin})
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r:.300} -> "
                                f"{response.status_code} {response.text[:200]}")

        try:
            fuzz()
        except Unsatisfiable:
            # A route with nothing to get wrong (no parameters, no body) has no invalid input.
            assert mode is GenerationMode.NEGATIVE, op.label
    assert not failures, "\n".join(failures[:10])
    assert statuses.total() > 0
