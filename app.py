"""The web application: the HTTP API, health check and, on the embedded default, in-process jobs."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

import worker
from api.correlation import SCOPE_KEY, CorrelationId
from api.routes import bots, channels, conversations, email, kb, ops, review
from bot.mail.service import build_mail
from core import logs
from core.errors import Conflict, DomainError, InvalidInput, NotFound
from core.services import Services, build_core_services
from core.settings import Settings, load_settings

log = logging.getLogger("autotrain")

# Requests larger than this are refused before they are read into memory (documented in the
# README under "Ingestion limits"): 1,000 conversations of a few KB each fit comfortably.
MAX_BODY_BYTES = 16 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, whether or not Content-Length is sent."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.limit:
                await self._refuse(send, int(declared))
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the limit here, then replay the body, so
        # an oversized upload is refused before the app parses any of it.
        chunks: list[bytes] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refuse(send, seen)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Callable[[Any], Awaitable[None]], size: int) -> None:
        body = JSONResponse(
            {"detail": f"request body is {size} bytes or more; the limit is {self.limit} bytes "
                       "(send conversations in smaller batches)"}, status_code=413).body
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class InProcessJobs:
    """The embedded default's scheduler: the worker's job functions on timers, in this process."""

    def __init__(self, services: Services, slack: Any = None, mail: Any = None) -> None:
        self.ctx: dict[str, Any] = {"services": services}
        if slack is not None:
            self.ctx["slack"] = slack
        if mail is not None:
            self.ctx["mail"] = mail
        # The cycle schedule ticks often; slots open on the cadence's grid (core.cycle.slots),
        # so a restarted server neither skips a period nor runs one twice.
        self.schedule_every: float = worker.SCHEDULE_SECONDS
        self.tasks: list[asyncio.Task[None]] = []

    async def _every(self, seconds: float, job: Callable[[dict[str, Any]], Awaitable[Any]],
                     first_delay: float) -> None:
        await asyncio.sleep(first_delay)
        while True:
            try:
                with logs.scope(job=job.__name__):
                    await job(self.ctx)
            except worker.Retry:
                pass  # transient (logged by the job): the next round is its retry
            except Exception:
                log.exception("background job %s failed", job.__name__)
            await asyncio.sleep(seconds)

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._every(5, worker.relay_outbox, 1)),
            asyncio.create_task(self._every(self.schedule_every, worker.cycle_all_bots,
                                            self.schedule_every)),
            asyncio.create_task(self._every(worker.RECONCILE_SECONDS, worker.reconcile_index,
                                            worker.RECONCILE_SECONDS)),
        ]
        if "slack" in self.ctx:
            # Cards for critical suggestions, announcements, and cards decided elsewhere.
            self.tasks.append(asyncio.create_task(
                self._every(worker.SLACK_ROUND_SECONDS, worker.slack_round, 2)))
        # Scheduled digests by email (files in the outbox when SMTP is off) and retries.
        self.tasks.append(asyncio.create_task(
            self._every(worker.EMAIL_ROUND_SECONDS, worker.email_round, 3)))
        settings = self.ctx["services"].settings
        if settings.imap_enabled:
            self.tasks.append(asyncio.create_task(
                self._every(settings.imap_poll_seconds, worker.imap_poll, 4)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _authenticated(request: Request) -> bool:
    from api.deps import caller_for_key

    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return False
    return caller_for_key(request.app.state.services, key.strip()) is not None


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(services: Services | None = None, *, settings: Settings | None = None,
               background_jobs: bool | None = None, run_migrations: bool = True,
               jobs_lock: Path | None = None) -> FastAPI:
    """The FastAPI app. Tests hand in their own services; `serve` builds them from settings.

    `jobs_lock`: with several app processes (`serve --workers N`), the in-process jobs run
    only in the process that holds this file's lock."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "services", None) is None:
            app.state.services = build_core_services(settings or load_settings(),
                                                     run_migrations=run_migrations)
        svc: Services = app.state.services
        if getattr(app.state, "slack", None) is None:
            _mount_slack(app, svc)  # services built just now
        if getattr(app.state, "mail", None) is None:
            app.state.mail = build_mail(svc.settings, svc.review)
        # uvicorn installs its own log handlers when it starts (after `serve` configured
        # ours): send its error and access lines through ours, with fields and redaction.
        logs.adopt("uvicorn", "uvicorn.error", "uvicorn.access")
        run_jobs = background_jobs if background_jobs is not None else not svc.settings.redis_url
        held = None
        if run_jobs and jobs_lock is not None:
            held = _hold_lock(jobs_lock)
            run_jobs = held is not None
        jobs = InProcessJobs(svc, getattr(app.state, "slack", None),
                             app.state.mail) if run_jobs else None
        if jobs:
            jobs.start()
        homes = _refresh_homes_task(app) if background_jobs is not False else None
        # On app.state: with port 0 (tests, benchmarks) the bound port is read from it.
        listener = app.state.smtp_listener = await _smtp_listener(app.state.mail)
        try:
            yield
        finally:
            if listener is not None:
                await listener.stop()
            if homes is not None:
                homes.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await homes
            if jobs:
                await jobs.stop()
            if held is not None:
                held.close()  # releases the lock: a restarted worker may take the jobs over
            if getattr(app.state, "slack", None) is not None:
                await app.state.slack.drain()
            await app.state.mail.inbound.drain()

    # FastAPIOffline serves Swagger UI's and ReDoc's files from its package instead of a CDN,
    # so /docs is not a blank page on a machine without internet.
    app = FastAPIOffline(
        title="autotrain",
        version="1.0.0",
        summary="Keeps a support chatbot learning from its own conversations.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics, app.state.answer_latency = ops.metrics_registry(
        lambda: getattr(app.state, "services", None))
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)  # type: ignore[arg-type]
    # Added last, so outermost: a 413 from BodyLimit carries a request id too.
    app.add_middleware(CorrelationId)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI parses the body before dependencies run; without this an unauthenticated
        # caller would learn how its body is wrong instead of getting 401.
        if request.url.path.startswith("/api/") and not _authenticated(request):
            return JSONResponse({"detail": "missing or invalid API key"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        parts = exc.field.split(".") if exc.field else []
        loc = ["body", *(int(p) if p.isdigit() else p for p in parts)]
        return _error(422, [{"loc": loc, "msg": str(exc), "type": "value_error"}])

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The reference a user quotes is the request's correlation id: it finds this line
        # and every other line of the same request.
        bound = request.scope.get(SCOPE_KEY) or {}
        with logs.scope(**bound) as fields:
            ref = str(fields["correlation_id"])
            log.error("unexpected error (ref %s)", ref, exc_info=exc)
        response = _error(500, f"internal error; quote reference {ref} when reporting it")
        response.headers["X-Request-ID"] = ref
        return response

    for module in (bots, kb, conversations, review, channels, email, ops):
        app.include_router(module.router)
    app.state.slack = None
    app.state.mail = None
    if services is not None:
        _mount_slack(app, services)
        app.state.mail = build_mail(services.settings, services.review)
    return app


def worker_app() -> FastAPI:
    """The app of one `serve --workers N` process (uvicorn's factory): services built from
    the environment in this process, migrations already applied by the parent, and the
    in-process jobs (without REDIS_URL) in whichever worker takes the data dir's lock first."""
    settings = load_settings()
    return create_app(settings=settings, run_migrations=False,
                      jobs_lock=settings.data_dir / "serve-jobs.lock")


def _hold_lock(path: Path) -> IO[bytes] | None:
    """An exclusive lock on `path` held while the returned file is open (the OS drops it when
    the process dies, however it dies), or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("ab")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def _refresh_homes_task(app: FastAPI) -> asyncio.Task[None] | None:
    """App Home tabs are drawn by the process Slack's events reach (this one), whoever
    changed the queue: a cycle in the worker, a decision over the API or by email. Homes
    whose content is unchanged cost no Slack call."""
    deps = getattr(app.state, "slack", None)
    if deps is None:
        return None

    async def loop() -> None:
        while True:
            await asyncio.sleep(worker.SLACK_ROUND_SECONDS)
            deps.changed()

    return asyncio.create_task(loop())


async def _smtp_listener(mail: Any) -> Any:
    """The built-in SMTP listener for replies, when AUTOTRAIN_SMTP_LISTEN_PORT is set: only
    mail for the reply address's domain is accepted."""
    settings = mail.settings
    if settings.smtp_listen_port is None:
        return None
    from bot.mail.smtp_listener import start_smtp_listener

    domains = [settings.email_reply_to.rsplit("@", 1)[1]] if settings.email_reply_to else []
    listener = await start_smtp_listener(mail.inbound, host=settings.smtp_listen_host,
                                         port=settings.smtp_listen_port,
                                         max_bytes=settings.email_max_bytes,
                                         accept_domains=domains)
    log.info("replies by SMTP on %s:%d", settings.smtp_listen_host, listener.port)
    return listener


def _mount_slack(app: FastAPI, services: Services) -> None:
    """POST /slack/events when Slack is configured; absent (404) otherwise."""
    if not services.settings.slack_enabled:
        return
    from bot.slack_app import build_slack_app, mount_slack

    app.state.slack_app, app.state.slack = build_slack_app(services.settings, services.review)
    mount_slack(app, app.state.slack_app)
