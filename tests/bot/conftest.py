"""A Slack-enabled autotrain talking to a recording fake Slack Web API on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app import create_app
from bot.handlers import context
from bot.ids import CardPayload
from bot.slack_notify import SlackRound, post_announcements, post_cards, sync_cards
from core.db import session_scope
from core.embeddings import Embedder
from core.models import Suggestion
from core.policy.commands import Actor, Channel, UpdateSettings
from core.review import BotRef
from core.services import Services, build_core_services
from core.settings import load_settings
from tests.fake_slack import FakeSlack, fake_slack
from tests.helpers import ADMIN_KEY
from tests.slack_signing import block_action_body, signed_headers, view_submission_body

SECRET = "test-signing-secret"
CHANNEL = "C0REVIEW1"
ALICE = "U0ALICE1"  # an approver
MALLORY = "U0MALLORY"  # in the channel, not an approver
SETUP = Actor(name="setup", channel=Channel.api)


@dataclass
class SlackWorld:
    svc: Services
    client: TestClient
    fake: FakeSlack
    bot: BotRef

    # -- data -------------------------------------------------------------------------------

    def suggestion(self, *, question: str = "Do you ship to Canada?",
                   answer: str = "Yes, we ship to Canada in 5 to 8 business days.",
                   priority: str = "critical", confidence: int = 85,
                   variants: list[str] | None = None, **fields: Any) -> str:
        sug = Suggestion(bot_id=self.bot.id, kind=fields.pop("kind", "new_answer"),
                         priority=priority, score=7.0, confidence=confidence,
                         question=question, answer=answer,
                         variants=variants if variants is not None else ["ship to canada?"],
                         created_at=datetime.now(UTC), **fields)
        with session_scope(self.svc.engine) as session:
            session.add(sug)
        return sug.id

    def status(self, sid: str) -> str:
        return self.svc.review.card(sid, bot=self.bot).status

    def answer(self, question: str) -> str | None:
        return self.svc.answer(bot=self.svc.review.bot_by_id(self.bot.id),
                               question=question).answer

    def audit(self, action: str) -> list[Any]:
        return self.svc.review.audit(self.bot, action=action)

    # -- Slack ------------------------------------------------------------------------------

    def deps_client(self) -> Any:
        return self.client.app.state.slack.client  # type: ignore[attr-defined]

    def post_cards(self) -> SlackRound:
        return self.client.portal.call(  # type: ignore[union-attr]
            lambda: post_cards(self.svc.review, self.deps_client(), self.bot, priority=None))

    def post_announcements(self) -> SlackRound:
        return self.client.portal.call(  # type: ignore[union-attr]
            lambda: post_announcements(self.svc.review, self.deps_client(), self.bot))

    def sync_cards(self) -> SlackRound:
        return self.client.portal.call(  # type: ignore[union-attr]
            lambda: sync_cards(self.svc.review, self.deps_client(), self.bot))

    def card_ts(self, sid: str) -> str:
        posted = self.svc.review.posted(sid, channel=Channel.slack)
        assert posted is not None, f"no card posted for {sid}"
        return posted[1]

    def send(self, body: str, *, timestamp: int | None = None, secret: str = SECRET,
             headers: dict[str, str] | None = None) -> Response:
        return self.client.post("/slack/events", content=body.encode(), headers={
            **signed_headers(body, secret, timestamp=timestamp), **(headers or {})})

    def click(self, action_id: str, sid: str, *, user: str = ALICE,
              selected_option: str | None = None, headers: dict[str, str] | None = None,
              **kw: Any) -> Response:
        value = None if selected_option else CardPayload(suggestion_id=sid).model_dump_json()
        kw.setdefault("block_id", f"actions:{sid}")
        return self.send(block_action_body(
            action_id=action_id, value=value, user=user, channel=CHANNEL,
            message_ts=self.card_ts(sid), selected_option=selected_option, **kw),
            headers=headers)

    def submit(self, callback_id: str, values: dict[str, Any], *, sid: str,
               user: str = ALICE) -> Response:
        meta = json.dumps({"suggestion_id": sid, "bot_id": self.bot.id, "channel": CHANNEL,
                           "ts": self.card_ts(sid)})
        return self.send(view_submission_body(callback_id=callback_id, values=values,
                                              private_metadata=meta, user=user))

    def settle(self) -> None:
        """Wait for the work the app does after acking."""
        self.client.portal.call(  # type: ignore[union-attr]
            self.client.app.state.slack.drain)  # type: ignore[attr-defined]

    @staticmethod
    def text_of(blocks: list[dict[str, Any]]) -> str:
        return json.dumps(blocks, ensure_ascii=False)


@pytest.fixture
def slack_world(tmp_path: Path, embedder: Embedder, fake_slack: FakeSlack,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackWorld]:
    # No working state unless a test asks for one: on a loaded machine a decision can pass
    # the 0.4 s mark, and the card's first update would be "Working…" instead of its result.
    monkeypatch.setattr(context, "WORKING_AFTER_SECONDS", 30.0)
    settings = load_settings(AUTOTRAIN_DATA_DIR=tmp_path / "data", AUTOTRAIN_API_KEY=ADMIN_KEY,
                             DATABASE_URL="", CHROMA_URL="", REDIS_URL="",
                             SLACK_BOT_TOKEN="xoxb-test-token", SLACK_SIGNING_SECRET=SECRET,
                             SLACK_API_BASE_URL=fake_slack.base_url)
    svc = build_core_services(settings, embedder=embedder)
    bot = svc.review.create_bot(slug="shop", name="Shop")
    svc.review.execute(UpdateSettings(bot_id=bot.id, actor=SETUP, patch={
        "slack_channel": CHANNEL, "slack_approvers": [ALICE]}), bot=bot)
    bot = svc.review.bot_by_id(bot.id)
    with TestClient(create_app(svc, background_jobs=False)) as client:
        yield SlackWorld(svc=svc, client=client, fake=fake_slack, bot=bot)
    svc.close()


__all__ = ["ALICE", "CHANNEL", "MALLORY", "SECRET", "SlackWorld", "fake_slack"]
