"""Operations: liveness, readiness of the dependencies, and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from api.deps import AdminDep, ServicesDep
from core.health import readiness, snapshot
from core.services import Services

router = APIRouter(tags=["operations"])

# The chatbot's hot path; buckets from 1 ms to 2.5 s around the ~10-100 ms it takes.
ANSWER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(svc: ServicesDep) -> JSONResponse:
    """Readiness: the database, the vector index and Redis (when configured) all answer;
    503 naming the one that does not. No key needed: it says nothing about any bot."""
    checks = readiness(engine=svc.engine, index=svc.index, redis_url=svc.settings.redis_url)
    ok = all(c.ok for c in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready",
                         "checks": {name: c.public() for name, c in checks.items()}},
                        status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, _: AdminDep) -> Response:
    """Prometheus text format (admin key): queue depth, suggestions by status, decisions by
    channel, cycle durations, index outbox lag, answer latency of this process."""
    registry: CollectorRegistry = request.app.state.metrics
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class StoreCollector(Collector):
    """Figures read from SQL at scrape time: the same from every replica."""

    def __init__(self, services: Callable[[], Services | None]) -> None:
        self.services = services  # built by the app's lifespan when not handed in

    def collect(self) -> Iterator[Any]:
        svc = self.services()
        if svc is None:
            return
        s = snapshot(svc.engine)
        bots = GaugeMetricFamily("autotrain_bots", "Bots served")
        bots.add_metric([], len(s.bots))
        yield bots
        suggestions = GaugeMetricFamily("autotrain_suggestions", "Suggestions by status",
                                        labels=["bot", "status"])
        for (bot, status), n in sorted(s.suggestions.items()):
            suggestions.add_metric([bot, status], n)
        yield suggestions
        queue = GaugeMetricFamily("autotrain_queue_depth", "Pending suggestions by priority",
                                  labels=["bot", "priority"])
        for (bot, priority), n in sorted(s.pending.items()):
            queue.add_metric([bot, priority], n)
        yield queue
        decisions = CounterMetricFamily("autotrain_decisions",
                                        "Suggestion decisions by channel and action",
                                        labels=["bot", "channel", "action"])
        for (bot, channel, action), n in sorted(s.decisions.items()):
            decisions.add_metric([bot, channel, action], n)
        yield decisions
        pending = GaugeMetricFamily("autotrain_index_outbox_pending",
                                    "Entry changes not yet relayed to the vector index",
                                    labels=["bot"])
        lag = GaugeMetricFamily("autotrain_index_outbox_lag_seconds",
                                "Age of the oldest change not yet in the vector index",
                                labels=["bot"])
        for bot in s.bots:
            pending.add_metric([bot], s.outbox_pending.get(bot, 0))
            lag.add_metric([bot], s.outbox_lag_seconds.get(bot, 0.0))
        yield pending
        yield lag
        cycles = CounterMetricFamily("autotrain_cycles", "Finished analysis cycles",
                                     labels=["bot"])
        last = GaugeMetricFamily("autotrain_cycle_last_seconds",
                                 "Duration of the bot's latest finished cycle", labels=["bot"])
        running = GaugeMetricFamily("autotrain_cycle_running", "1 while a cycle runs",
                                    labels=["bot"])
        for bot in s.bots:
            cycles.add_metric([bot], s.cycles.get(bot, 0))
            running.add_metric([bot], s.cycle_running.get(bot, 0))
            if bot in s.cycle_last_seconds:
                last.add_metric([bot], s.cycle_last_seconds[bot])
        yield cycles
        yield last
        yield running


def metrics_registry(services: Callable[[], Services | None]
                     ) -> tuple[CollectorRegistry, Histogram]:
    """A registry per app (tests build many apps in one process) with the store's figures
    and this process's answer latency."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(services))
    latency = Histogram("autotrain_answer_seconds", "Time to answer POST .../answer",
                        buckets=ANSWER_BUCKETS, registry=registry)
    return registry, latency
