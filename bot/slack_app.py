"""The Slack app: a bolt AsyncApp on POST /slack/events, wired to the review door."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvers import Approvers
from core.review import Review
from core.settings import Settings

log = logging.getLogger(__name__)

# After-ack work running at once; the rest waits its turn (see SlackDeps.later).
AFTER_ACK_AT_ONCE = 4


@dataclass
class SlackDeps:
    """What every Slack handler is handed: the review door and the approver check."""

    review: Review
    approvers: Approvers
    client: AsyncWebClient
    # Work done after the ack, kept so tests and shutdown can wait for it.
    tasks: set[asyncio.Task[Any]]
    # Called after anything a reviewer sees may have changed (App Home registers its refresh).
    on_change: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    _slots: asyncio.Semaphore | None = None

    def changed(self) -> None:
        """Something reviewers see changed: refresh the views that show it, after the ack."""
        for refresh in self.on_change:
            self.later(refresh())

    def later(self, work: Awaitable[Any]) -> None:
        """Run `work` after the ack (Slack wants an answer within 3 s). At most AFTER_ACK_AT_ONCE
        run together: a burst of clicks then queues its decisions instead of having them all
        compete with the next requests' acks for the two cores."""
        task: asyncio.Task[Any] = asyncio.ensure_future(self._bounded(work))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def _bounded(self, work: Awaitable[Any]) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(AFTER_ACK_AT_ONCE)
        async with self._slots:
            return await work

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            ref = uuid.uuid4().hex[:12]
            log.error("slack work failed (ref %s)", ref, exc_info=task.exception())

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def slack_client(settings: Settings, *, with_token: bool = True) -> AsyncWebClient:
    """The Web API client: Slack's own URL, or a local one in tests and benchmarks; 429s wait
    for Retry-After, dropped connections and 5xx are retried. Without the token for bolt,
    which gives each request a copy with the token `authorize` returns."""
    assert settings.slack_bot_token is not None
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value() if with_token else None,
        base_url=settings.slack_api_base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                        AsyncConnectionErrorRetryHandler(max_retry_count=2),
                        AsyncServerErrorRetryHandler(max_retry_count=2)],
    )


def build_slack_app(settings: Settings, review: Review) -> tuple[AsyncApp, SlackDeps]:
    """The bolt app with every listener registered. No network call happens here: bolt is
    given an `authorize` function, so it never needs auth.test at start-up."""
    assert settings.slack_bot_token is not None and settings.slack_signing_secret is not None
    token = settings.slack_bot_token.get_secret_value()
    client = slack_client(settings)

    async def authorize(enterprise_id: str | None, team_id: str | None,
                        user_id: str | None, **_: Any) -> AuthorizeResult:
        # One workspace, one bot token (a single-workspace install).
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id,
                               bot_token=token)

    app = AsyncApp(signing_secret=settings.slack_signing_secret.get_secret_value(),
                   authorize=authorize, client=slack_client(settings, with_token=False),
                   raise_error_for_unhandled_request=False)
    deps = SlackDeps(review=review, approvers=Approvers(), client=client, tasks=set())

    @app.middleware
    async def skip_retries(req: AsyncBoltRequest, resp: BoltResponse,
                           next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        # Every request is acked within 3 s, so a retry is a copy of one being handled.
        if req.headers.get("x-slack-retry-num"):
            return BoltResponse(status=200, body="")
        return await next()

    from bot.handlers import register

    register(app, deps)
    return app, deps


def mount_slack(api: FastAPI, app: AsyncApp) -> None:
    """POST /slack/events: the one Request URL for events, interactivity and /autotrain."""
    from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler

    handler = AsyncSlackRequestHandler(app)

    @api.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)  # type: ignore[no-any-return]
