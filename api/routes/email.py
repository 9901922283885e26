"""The email channel over HTTP: a mail provider's inbound webhook and one-click link pages."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse

from bot.mail.links import LinkError, LinkPage
from bot.mail.service import MailDeps, link_page_html

router = APIRouter(tags=["email"])

# Link pages carry a token in their URL: keep them out of caches, indexes and referrers.
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def _mail(request: Request) -> MailDeps:
    return request.app.state.mail  # type: ignore[no-any-return]


@router.post("/email/inbound")
async def email_inbound(request: Request) -> dict[str, Any]:
    """A raw RFC 822 reply handed over by a mail provider (Content-Type: message/rfc822),
    authenticated with `Authorization: Bearer $AUTOTRAIN_INBOUND_SECRET`. Answers what came
    of it; a message already received (the provider retrying) is not applied again."""
    mail = _mail(request)
    secret = mail.settings.inbound_secret
    if secret is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the inbound webhook is off: set "
                            "AUTOTRAIN_INBOUND_SECRET to turn it on")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), secret.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong inbound secret",
                            headers={"WWW-Authenticate": "Bearer"})
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "message/rfc822":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"Content-Type must be message/rfc822 (got {kind or 'none'})")
    raw = await request.body()
    if not raw.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the message is empty")
    got = await mail.inbound(raw, source="webhook")
    return got.public()


def _page(page: LinkPage, code: int = 200) -> HTMLResponse:
    return HTMLResponse(link_page_html(page), status_code=code, headers=PAGE_HEADERS)


def _error_page(message: str, code: int) -> HTMLResponse:
    return _page(LinkPage(title="This link cannot be used", action="approve", number=0,
                          bot_name="autotrain", suggestion=None, note=None, message=message,
                          ok=False, can_confirm=False, reasons=[]), code)


@router.api_route("/email/links/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def link_preview(token: str, request: Request) -> Response:
    """What a link in a digest opens: the item and a button. Mail scanners open (and render)
    every link; a GET or HEAD therefore changes nothing."""
    try:
        page = await asyncio.to_thread(_mail(request).links.preview, token)
    except LinkError as exc:
        return _error_page(str(exc), 400)
    response = _page(page)
    if request.method == "HEAD":
        return Response(status_code=200, headers={**PAGE_HEADERS,
                                                  "Content-Type": "text/html; charset=utf-8"})
    return response


@router.post("/email/links/{token}", include_in_schema=False)
async def link_confirmed(token: str, request: Request) -> HTMLResponse:
    """The page's button: the decision, once per link, audited with channel "link"."""
    # The page's own form is urlencoded (no multipart, no file): read it without a parser
    # dependency; anything else posted is ignored rather than trusted.
    form = parse_qs((await request.body())[:20_000].decode("utf-8", "replace"))
    reason = (form.get("reason") or [None])[0]
    comment = (form.get("comment") or [None])[0]
    try:
        page = await asyncio.to_thread(_mail(request).links.apply, token, reason=reason,
                                       comment=comment)
    except LinkError as exc:
        return _error_page(str(exc), 400)
    return _page(page, 200 if page.ok else 409)
