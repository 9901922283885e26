"""Operations routes: readiness names the dependency that fails, /metrics exports what an
operator graphs (issue 14 item 7)."""

from __future__ import annotations

import re
from datetime import timedelta

from core.index import IndexUnavailable
from tests.api.test_questions import TOPICS
from tests.helpers import escalated_conversation


def test_readyz_checks_the_database_and_the_vector_index(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "vector_index"}  # no Redis configured
    assert all(c["ok"] for c in body["checks"].values())


def test_readyz_is_503_naming_the_index_when_it_does_not_answer(client, services,
                                                                monkeypatch):
    def down() -> None:
        raise IndexUnavailable("vector index heartbeat failed: connection refused")

    monkeypatch.setattr(services.index, "heartbeat", down)
    r = client.get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["database"]["ok"] and not checks["vector_index"]["ok"]
    assert "connection refused" in checks["vector_index"]["error"]
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def _value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # as exported
    pattern = rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$" if labels else \
        rf"^{re.escape(name)} (\S+)$"
    found = re.search(pattern, text, re.M)
    assert found is not None, f"{name}{{{wanted}}} not in metrics"
    return float(found.group(1))


def test_metrics_export_queue_decisions_cycles_and_answer_latency(api, bot, client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bot.headers).status_code == 403
    convs = [escalated_conversation(f"c{i}", q, reply, api.BASE + timedelta(hours=i))
             for i, (q, reply) in enumerate((q, r) for qs, r in TOPICS.values() for q in qs)]
    api.ingest(bot.slug, convs)
    api.run_cycle(bot.slug, as_of=api.BASE + timedelta(days=1))
    first, *_ = api.suggestions(bot.slug, "pending")
    assert api.decide(first["id"], "approve", "ana").status_code == 200
    for _ in range(3):
        api.answer(bot.slug, "How do I return an item?")

    r = client.get("/metrics", headers=api.admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert _value(text, "autotrain_queue_depth", bot=bot.slug, priority="low") == 3
    assert _value(text, "autotrain_suggestions", bot=bot.slug, status="approved") == 1
    assert _value(text, "autotrain_decisions_total", bot=bot.slug, channel="api",
                  action="approved") == 1
    assert _value(text, "autotrain_cycles_total", bot=bot.slug) == 1
    assert _value(text, "autotrain_cycle_last_seconds", bot=bot.slug) > 0
    assert _value(text, "autotrain_index_outbox_pending", bot=bot.slug) >= 0
    assert _value(text, "autotrain_answer_seconds_count") == 3
    # Figures only: no customer's words, no key.
    assert "return an item" not in text and "Bearer" not in text
