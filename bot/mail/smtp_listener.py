"""A built-in SMTP listener that hands replies to digest emails to the inbound pipeline."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

__all__ = ["MailSink", "SmtpListener", "start_smtp_listener"]


class MailSink(Protocol):
    """The inbound pipeline's one entry point, fed by every route (SMTP, IMAP, webhook).

    `source` is "smtp", "imap" or "webhook". It raises only on a bug: a route logs that
    and goes on serving."""

    async def __call__(self, raw: bytes, *, envelope_to: Sequence[str] = (),
                       source: str) -> Any: ...


def _domain_of(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return domain.rstrip(".").lower() if at and local else ""


class _Handler:
    """aiosmtpd hooks: choose recipients, then hand each accepted message to the sink."""

    def __init__(self, sink: MailSink, accept_domains: Sequence[str]) -> None:
        self._sink = sink
        self._domains = frozenset(d.strip().rstrip(".").lower() for d in accept_domains
                                  if d.strip())
        # Sink calls survive a dropped connection (see handle_DATA); stop() waits for them.
        self.in_flight: set[asyncio.Task[Any]] = set()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self._domains and _domain_of(address) not in self._domains:
            # A permanent refusal: a sender that retried would never get through.
            return f"550 5.7.1 <{address}>: relay not permitted, recipient not accepted here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        # The pipeline de-duplicates by Message-ID, so a sender's retry after a dropped
        # connection is harmless; but a half-run sink is not, hence the shield: if the
        # client hangs up, aiosmtpd cancels this coroutine, not the sink's work.
        task = asyncio.ensure_future(self._sink(raw, envelope_to=tuple(envelope.rcpt_tos),
                                                source="smtp"))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # The client went away: the sink goes on, and only a failure is logged.
            task.add_done_callback(_log_orphan_failure)
            raise
        except Exception:
            ref = uuid.uuid4().hex[:12]
            # Only sizes and counts are logged: the message holds customer text.
            log.exception("inbound SMTP: the mail sink failed on a %d-byte message for %d "
                          "recipient(s); answered 451 so the sender retries (ref %s)",
                          len(raw), len(envelope.rcpt_tos), ref)
            return f"451 4.3.0 Temporary failure, please retry later (ref {ref})"
        return "250 OK"


def _log_orphan_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("inbound SMTP: the mail sink failed after the sender hung up (ref %s)",
                  uuid.uuid4().hex[:12], exc_info=error)


class SmtpListener:
    """An aiosmtpd SMTP server on the running event loop (the app's or the worker's), so no
    thread and no second loop: `await start()`, read `port`, `await stop()`.

    Meant for a dedicated MX or a relay's forward target, so it asks for no AUTH; it binds
    127.0.0.1 unless told otherwise. Messages over `max_bytes` are refused with 552 (at MAIL
    FROM when the client announces SIZE, after DATA otherwise); with `accept_domains`,
    recipients of other domains get 550."""

    def __init__(self, sink: MailSink, *, host: str = "127.0.0.1", port: int = 25,
                 max_bytes: int, accept_domains: Sequence[str] = (),
                 hostname: str | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.host = host
        self._requested_port = port
        self.max_bytes = max_bytes
        self.hostname = hostname
        self._handler = _Handler(sink, accept_domains)
        self.server: asyncio.Server | None = None

    async def start(self) -> SmtpListener:
        if self.server is not None:
            raise RuntimeError("the SMTP listener is already started")
        loop = asyncio.get_running_loop()
        if self.hostname is None:
            # aiosmtpd would resolve it on every connection, blocking the loop each time.
            self.hostname = await loop.run_in_executor(None, socket.getfqdn)
        hostname = self.hostname

        def factory() -> SMTP:
            return SMTP(self._handler, data_size_limit=self.max_bytes, enable_SMTPUTF8=True,
                        decode_data=False, hostname=hostname, loop=loop)

        self.server = await loop.create_server(factory, host=self.host,
                                               port=self._requested_port)
        log.info("inbound SMTP listening on %s:%d (max %d bytes)", self.host, self.port,
                 self.max_bytes)
        return self

    @property
    def port(self) -> int:
        """The bound port (the kernel's choice when started with port 0)."""
        if self.server is None or not self.server.sockets:
            raise RuntimeError("the SMTP listener is not started")
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self, *, grace_seconds: float = 10.0) -> None:
        """Stop accepting, then give messages already handed over time to finish."""
        server, self.server = self.server, None
        if server is None:
            return
        server.close()
        pending = set(self._handler.in_flight)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_seconds)
            for task in late:
                task.cancel()
        # Python 3.12+ waits here for open connections too; 3.11 returns at once.
        await server.wait_closed()

    async def __aenter__(self) -> SmtpListener:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


async def start_smtp_listener(sink: MailSink, *, host: str = "127.0.0.1", port: int,
                              max_bytes: int, accept_domains: Sequence[str] = ()
                              ) -> SmtpListener:
    """Start an SMTP listener on the running loop; port 0 picks a free one (see `.port`)."""
    return await SmtpListener(sink, host=host, port=port, max_bytes=max_bytes,
                              accept_domains=accept_domains).start()
