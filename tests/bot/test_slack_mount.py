"""Slack's place in the service: absent when unconfigured, and fed by the worker's cycle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

import worker
from app import create_app
from core.embeddings import Embedder
from core.policy.commands import UpdateSettings
from core.services import build_core_services
from core.settings import load_settings
from core.status import Priority
from tests.bot.conftest import ALICE, CHANNEL, SETUP, SlackWorld
from tests.helpers import ADMIN_KEY, charger_bot
from tests.slack_signing import event_body, signed_headers


def test_without_slack_settings_there_is_no_slack_route(tmp_path: Path,
                                                        embedder: Embedder) -> None:
    settings = load_settings(AUTOTRAIN_DATA_DIR=tmp_path / "data", AUTOTRAIN_API_KEY=ADMIN_KEY,
                             DATABASE_URL="", CHROMA_URL="", REDIS_URL="",
                             SLACK_BOT_TOKEN="", SLACK_SIGNING_SECRET="")
    assert settings.integrations()["slack"] == "off"
    svc = build_core_services(settings, embedder=embedder)
    try:
        with TestClient(create_app(svc, background_jobs=False)) as client:
            body = event_body({"type": "app_home_opened", "user": ALICE, "tab": "home"})
            r = client.post("/slack/events", content=body.encode(),
                            headers=signed_headers(body, "any-secret"))
            assert r.status_code == 404
    finally:
        svc.close()


def test_a_cycle_run_by_the_worker_posts_the_critical_card_at_once(slack_world: SlackWorld
                                                                   ) -> None:
    world = slack_world
    bot_id = charger_bot(world.svc, slug="chargers", now=datetime.now(UTC))
    bot = world.svc.review.bot_by_id(bot_id)
    world.svc.review.execute(UpdateSettings(bot_id=bot.id, actor=SETUP, patch={
        "slack_channel": "C0CHARGE1", "slack_approvers": [ALICE],
        "notify_frequency": "critical_only"}), bot=bot)
    deps = world.client.app.state.slack  # type: ignore[attr-defined]

    async def cycle() -> None:
        await worker.run_cycle({"services": world.svc, "slack": deps}, bot_id)

    asyncio.run(cycle())
    [critical] = [s for s in world.svc.review.queue(bot) if s.priority == Priority.critical]
    posts = [c for c in world.fake.calls_to("chat.postMessage")
             if c.body["channel"] == "C0CHARGE1"]
    assert len(posts) == 1 and critical.question in posts[0].body["text"]
    assert world.svc.review.posted(critical.id, channel="slack") is not None
    # Critical only: no digest follows. The shop bot's channel got nothing from this cycle.
    assert all(c.body["channel"] != CHANNEL for c in world.fake.calls_to("chat.postMessage"))
