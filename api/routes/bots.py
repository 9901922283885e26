"""Bots, their API keys and settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Response, status
from pydantic import ValidationError

from api.checked import CheckedRoute
from api.deps import BOT_ADMIN, AdminDep, BotDep, CallerDep, ServicesDep
from api.schemas import BotCreate, BotList, BotOut, KeyCreate, KeyOut
from core.policy.commands import UpdateSettings
from core.review import BotRef

router = APIRouter(prefix="/api/v1", tags=["bots"], route_class=CheckedRoute)


def bot_out(bot: BotRef) -> BotOut:
    return BotOut(slug=bot.slug, name=bot.name, settings=bot.settings.model_dump(mode="json"))


@router.post("/bots", status_code=status.HTTP_201_CREATED, response_model=BotOut)
def create(body: BotCreate, svc: ServicesDep, _: AdminDep) -> BotOut:
    """Create a bot (tenant). Admin key only; 409 if the slug exists."""
    return bot_out(svc.review.create_bot(slug=body.slug, name=body.name))


@router.get("/bots", response_model=BotList)
def list_bots(svc: ServicesDep, who: CallerDep) -> BotList:
    """The bots this key may see: all for the admin key, its own for a bot key."""
    return BotList(items=[bot_out(b) for b in svc.review.bots(
        only=None if who.is_admin else who.bot_id)])


@router.get("/bots/{slug}", response_model=BotOut)
def get(bot: BotDep) -> BotOut:
    return bot_out(bot)


@router.post("/bots/{slug}/keys",
             dependencies=[BOT_ADMIN], status_code=status.HTTP_201_CREATED, response_model=KeyOut)
def create_key(body: KeyCreate, bot: BotDep, svc: ServicesDep) -> KeyOut:
    """Issue a key that works only on this bot's routes, within its scope (default
    `chatbot`). The key is shown once."""
    key_id, name, key = svc.review.issue_key(bot, name=body.name, scope=body.scope)
    return KeyOut(id=key_id, name=name, scope=body.scope, key=key)


@router.delete("/bots/{slug}/keys/{key_id}",
               dependencies=[BOT_ADMIN], status_code=status.HTTP_204_NO_CONTENT)
def delete_key(key_id: str, bot: BotDep, svc: ServicesDep) -> Response:
    """Revoke a key: it gets 401 from then on."""
    svc.review.revoke_key(bot, key_id=key_id)
    svc.forget_keys()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/bots/{slug}/settings", dependencies=[BOT_ADMIN])
def get_settings(bot: BotDep) -> dict[str, Any]:
    return bot.settings.model_dump(mode="json")


@router.patch("/bots/{slug}/settings", dependencies=[BOT_ADMIN])
def patch_settings(bot: BotDep, svc: ServicesDep, who: CallerDep,
                   patch: dict[str, Any] = Body(
                       ..., examples=[{"autonomy": "moderate", "daily_auto_publish_limit": 5}]),
                   ) -> dict[str, Any]:
    """Change some settings; unknown keys or bad values → 422 naming the field. Audited."""
    try:
        done = svc.review.execute(UpdateSettings(bot_id=bot.id, patch=patch,
                                                 actor=who.actor()), bot=bot)
        return done.settings or {}
    except ValidationError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", *[str(p) for p in e["loc"]]], "msg": e["msg"], "type": e["type"]}
             for e in exc.errors()],
        ) from None
