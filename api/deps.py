"""Request dependencies: the wired services, API-key authentication and tenant checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core import logs
from core.bots import KeyScope
from core.errors import NotFound
from core.policy.commands import Actor, Channel
from core.review import BotRef
from core.services import Services

bearer = HTTPBearer(auto_error=False, description="An admin key or a bot key")


@dataclass(frozen=True)
class Caller:
    """Who is calling: the admin (bot_id None) or one bot's key."""

    key_id: str
    key_name: str
    bot_id: str | None
    scope: KeyScope = KeyScope.admin

    @property
    def is_admin(self) -> bool:
        return self.bot_id is None

    def actor(self, name: str | None = None) -> Actor:
        return Actor(name=name or f"api-key:{self.key_name}", channel=Channel.api)


async def services(request: Request) -> Services:
    # async: a plain attribute read must not cost a thread-pool hop on every request.
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]


def caller_for_key(svc: Services, key: str) -> Caller | None:
    """Who a presented key belongs to, or None if it is unknown or revoked."""
    holder = svc.key_holder(key)
    return None if holder is None else Caller(*holder)


async def caller(
    svc: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    found = None
    if credentials is not None and credentials.scheme.lower() == "bearer" \
            and credentials.credentials:
        key = credentials.credentials
        # A key this process remembers needs no I/O: answered on the loop, no thread hop.
        holder = svc.keys.remembered(key) if svc.keys is not None else None
        found = Caller(*holder) if holder is not None else \
            await run_in_threadpool(caller_for_key, svc, key)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid API key",
                            headers={"WWW-Authenticate": "Bearer"})
    return found


CallerDep = Annotated[Caller, Depends(caller)]


# async: a check without I/O must not cost a thread-pool hop on every request (a sync
# dependency runs in the pool; under load each hop is a thread switch and a GIL hand-over).
async def require_admin(who: CallerDep) -> Caller:
    if not who.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin key")
    return who


AdminDep = Annotated[Caller, Depends(require_admin)]


def needs(scope: KeyScope) -> Any:
    """A route dependency: the caller's key must reach `scope` (the admin key always does);
    otherwise 403 naming the scope needed, before anything runs."""

    async def check(who: CallerDep) -> Caller:  # no I/O: on the loop, as require_admin
        if not who.scope.reaches(scope):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this key's scope is {who.scope.value}; this route needs a "
                                f"{scope.value} key (or the admin key)")
        return who

    return Depends(check)


# Route dependencies, by the scope a route needs (README, "Key scopes").
CHATBOT, REVIEWER, BOT_ADMIN = (needs(KeyScope.chatbot), needs(KeyScope.reviewer),
                                needs(KeyScope.admin))


def bot_for(slug: str, svc: ServicesDep, who: CallerDep) -> BotRef:
    """The bot named in the route, if the caller may see it; otherwise 404 (nothing revealed)."""
    try:
        bot = svc.review.bot(slug)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"bot {slug!r} not found") from None
    if not who.is_admin and who.bot_id != bot.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"bot {slug!r} not found")
    logs.bind(bot=bot.slug)
    return bot


BotDep = Annotated[BotRef, Depends(bot_for)]


def suggestion_bot(suggestion_id: str, svc: ServicesDep, who: CallerDep) -> BotRef:
    """The bot a suggestion route acts for: the suggestion's own for the admin key, the key's
    bot otherwise (the review door then answers 404 for another bot's suggestion)."""
    try:
        if who.is_admin:
            bot = svc.review.owner_of(suggestion_id)
        else:
            assert who.bot_id is not None
            bot = svc.review.bot_by_id(who.bot_id)
        logs.bind(bot=bot.slug)
        return bot
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"suggestion {suggestion_id!r} not found") from None


SuggestionBotDep = Annotated[BotRef, Depends(suggestion_bot)]
