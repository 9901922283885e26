"""ASGI middleware: one correlation id per request, bound for its log lines and returned."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core import logs

HEADER = b"x-request-id"
SCOPE_KEY = "autotrain.log"


class CorrelationId:
    """Takes a sane X-Request-ID from the caller (a load balancer's, so its logs and ours
    join up) or makes one, binds it for every log line of the request (the access log
    included) and sends it back as X-Request-ID on every response, 4xx and 5xx too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers") or [] if k == HEADER), None)
        cid = logs.sane_request_id(given.decode("latin-1") if given is not None else None)
        with logs.scope(correlation_id=cid) as bound:
            # Starlette's 500 handler runs outside every middleware, after this scope has
            # ended: it finds the fields (and the id to return) in the request's scope.
            scope[SCOPE_KEY] = bound
            header = (HEADER, str(bound["correlation_id"]).encode())

            async def send_with_id(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [
                        *(h for h in message.get("headers", []) if h[0].lower() != HEADER),
                        header]}
                await send(message)

            await self.app(scope, receive, send_with_id)
