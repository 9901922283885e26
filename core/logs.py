"""Structured logs: the bot, job and correlation id bound to each record, JSON or text, redacted."""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO, TypeVar

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["auto", "json", "text"]
FIELDS = ("bot", "job", "correlation_id")
REDACTED = "[redacted]"

# One mutable dict per request or job, not one context variable per field: FastAPI runs sync
# dependencies and routes in worker threads on *copies* of the context, so a value set by a
# dependency (the bot) would be lost on the way back. A copied context still points at the
# same dict, so the bot bound in `bot_for` shows on the access log line written afterwards.
_scope: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
    "autotrain_log_scope", default=None)

# An X-Request-ID we pass on as is: short and of characters that cannot forge a log line or a
# JSON field. Anything else (too long, spaces, quotes, newlines) is replaced by our own id.
_SANE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{6,128}")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def sane_request_id(value: str | None) -> str | None:
    """The caller's request id if it is safe to echo and log, else None."""
    return value if value is not None and _SANE_ID.fullmatch(value) else None


def current() -> dict[str, str | None]:
    """The fields bound now (all None outside a request or job)."""
    scope = _scope.get()
    return dict(scope) if scope else dict.fromkeys(FIELDS)


def correlation_id() -> str | None:
    scope = _scope.get()
    return scope["correlation_id"] if scope else None


def bind(**fields: str | None) -> None:
    """Add fields to the current request's or job's scope (e.g. the bot once it is known).
    Outside any scope this opens one for the rest of the current context."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log fields {sorted(unknown)}; known: {FIELDS}")
    scope = _scope.get()
    if scope is None:
        _scope.set({**dict.fromkeys(FIELDS), **fields})
    else:
        scope.update(fields)


@contextmanager
def scope(**fields: str | None) -> Iterator[dict[str, str | None]]:
    """A fresh scope (a request, a job run): fields not given start empty, except the
    correlation id, which is generated when not given."""
    values: dict[str, str | None] = {**dict.fromkeys(FIELDS), **fields}
    values["correlation_id"] = values["correlation_id"] or new_correlation_id()
    token = _scope.set(values)
    try:
        yield values
    finally:
        _scope.reset(token)


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def job(fn: F) -> F:
    """Wrap an async job `fn(ctx, ...)` so its log lines carry the job (arq's job id, or the
    function's name on the in-process schedule) and the bot when it takes a `bot_id`.

    functools.wraps keeps the name arq registers the function under."""
    params = list(inspect.signature(fn).parameters)
    bot_at = params.index("bot_id") if "bot_id" in params else None

    @functools.wraps(fn)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        bot = kwargs.get("bot_id")
        if bot is None and bot_at is not None and len(args) >= bot_at:
            bot = args[bot_at - 1]  # args exclude ctx
        job_id = ctx.get("job_id") if isinstance(ctx, dict) else None
        with scope(job=str(job_id) if job_id else fn.__name__,
                   bot=str(bot) if bot is not None else None):
            return await fn(ctx, *args, **kwargs)

    return run  # type: ignore[return-value]


# -- redaction -------------------------------------------------------------------------------

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # API keys (core/bots.py issues atk_ for a bot, atadm_ for the admin).
    (re.compile(r"\bat(?:k|adm)_[A-Za-z0-9_-]{6,}"), REDACTED),
    # Any bearer credential, whatever it is.
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1" + REDACTED),
    # Slack tokens (bot, user, app, refresh).
    (re.compile(r"\bxox[abeprs]-[A-Za-z0-9-]+"), REDACTED),
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), REDACTED),
    # OpenAI-style keys.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
    # Email reply keys: 160 bits in lowercase base32 (core/review/mailroom.py). A run of 32
    # such characters is not an English word, so this does not eat ordinary text.
    (re.compile(r"(?<![A-Za-z0-9])[a-z2-7]{32}(?![A-Za-z0-9])"), REDACTED),
    # One-click links carry a signed token in the path (the access log shows paths).
    (re.compile(r"(/email/links/)[^/\s?\"']+"), r"\1" + REDACTED),
    # Passwords in connection URLs (DATABASE_URL, REDIS_URL, ...).
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
]


class Redactor:
    """Removes credentials from text: the known shapes above and the exact secret values
    this process was configured with."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Short values would redact ordinary words; settings' secrets are long.
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s and len(s) >= 8)},
                              key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


REDACT = Redactor()


def settings_secrets(settings: Any) -> list[str]:
    """The secret values in a Settings object (every SecretStr field)."""
    from pydantic import SecretStr

    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
    return found


class ContextFilter(logging.Filter):
    """Stamps the bound fields on every record and redacts its message once, before any
    handler formats it (so every format and every handler sees the same clean text)."""

    def __init__(self, redact: Redactor = REDACT) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        if not getattr(record, "_autotrain_redacted", False):
            try:
                message = record.getMessage()
            except Exception:  # a broken %-format must not hide the line
                message = f"{record.msg!r} % {record.args!r}"
            record.msg, record.args = self.redact(message), None
            record._autotrain_redacted = True
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [bot=… job=… cid=…]: message`, only the fields that are bound."""

    def __init__(self, redact: Redactor = REDACT) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        bound = [f"{'cid' if n == 'correlation_id' else n}={getattr(record, n)}"
                 for n in FIELDS if getattr(record, n, None)]
        record.context = f" [{' '.join(bound)}]" if bound else ""
        return super().format(record)

    def formatException(self, ei: Any) -> str:
        return self.redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self.redact(super().formatStack(stack_info))


class JsonLineFormatter(JsonFormatter):
    """One JSON object a line: time, level, logger, message, bot, job, correlation_id (null
    when not bound), exc_info when there is one; string extras are redacted too."""

    def __init__(self, redact: Redactor = REDACT) -> None:
        super().__init__(["asctime", "levelname", "name", "message", *FIELDS],
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger"},
                         datefmt="%Y-%m-%dT%H:%M:%S%z", json_ensure_ascii=False)
        self.redact = redact

    def formatException(self, ei: Any) -> str:
        return self.redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self.redact(super().formatStack(stack_info))

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # uvicorn adds an ANSI-coloured copy of the message; the plain one is enough.
        log_data.pop("color_message", None)
        log_data.pop("_autotrain_redacted", None)
        log_data.pop("context", None)
        return {k: self.redact(v) if isinstance(v, str) and k != "message" else v
                for k, v in log_data.items()}


def resolve_format(fmt: str | None, stream: TextIO) -> Literal["json", "text"]:
    """`auto` (the default): text for a person at a terminal, JSON for everything else (a
    service manager, a container runtime, a file) where a log collector reads the lines."""
    if fmt in ("json", "text"):
        return fmt  # type: ignore[return-value]
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


# Kept at WARNING: alembic's chatter on every start; aiosmtpd and aioimaplib log every
# command, reply addresses (their keys) included; httpx logs every request the Chroma, Slack
# and OpenAI clients make, several per API call.
_TALKATIVE = ("alembic", "mail.log", "aioimaplib", "aioimaplib.aioimaplib", "httpx")
_HANDLER_NAME = "autotrain"


def configure(*, level: str = "INFO", fmt: str | None = None, secrets: Iterable[str] = (),
              stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records (uvicorn's and arq's included) through one handler on the
    root logger, in `fmt` (json, text or auto), with the bound fields and redaction.

    Calling it again replaces the handler it installed before, so it is safe per command."""
    out = stream or sys.stderr
    REDACT.add(secrets)
    chosen = resolve_format(fmt or os.environ.get("AUTOTRAIN_LOG_FORMAT"), out)
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonLineFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for talkative in _TALKATIVE:
        logging.getLogger(talkative).setLevel(logging.WARNING)
    adopt("uvicorn", "uvicorn.error", "uvicorn.access", "arq")
    return handler


def adopt(*names: str) -> None:
    """Route these libraries' loggers to the root handler: uvicorn and arq install their own
    handlers and formats (uvicorn's when it starts, after `configure`), which would print
    lines without the fields and without redaction."""
    if not any(h.get_name() == _HANDLER_NAME for h in logging.getLogger().handlers):
        return  # logging not configured by us (tests, embedding): leave theirs alone
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
