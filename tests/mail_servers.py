"""Real local mail servers for tests: a recording SMTP server, and the Dovecot mailbox that
scripts/test.sh starts (TEST_IMAP_*)."""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, cast

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.mail.imap import ImapSettings

__all__ = ["ImapMailbox", "ReceivedMail", "SmtpRecorder", "imap_mailbox", "smtp_recorder"]


# -- SMTP ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server got it: the envelope and the exact bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return cast(EmailMessage, message_from_bytes(self.raw, policy=policy.default))


class SmtpRecorder:
    """An aiosmtpd server on 127.0.0.1 (a free port) in its own thread and event loop, so a
    sync test or the code under test's loop can send to it; it keeps every message.

    `fail_next("451 ...")` answers the next DATA with that status instead of keeping it."""

    host = "127.0.0.1"

    def __init__(self, *, max_bytes: int = 10 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._received: list[ReceivedMail] = []
        self._failures: list[str] = []
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-recorder",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    # aiosmtpd handler hook
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._changed:
            if self._failures:
                return self._failures.pop(0)
            self._received.append(ReceivedMail(envelope.mail_from or "",
                                               tuple(envelope.rcpt_tos),
                                               envelope.original_content or b""))
            self._changed.notify_all()
        return "250 OK"

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._changed:
            return list(self._received)

    def fail_next(self, status: str, *, times: int = 1) -> None:
        with self._changed:
            self._failures.extend([status] * times)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until at least `count` messages arrived; fail the test after `timeout`."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= count, timeout):
                raise AssertionError(f"waited {timeout} s for {count} message(s) on "
                                     f"{self.host}:{self.port}, got {len(self._received)}")
            return list(self._received)

    def start(self) -> SmtpRecorder:
        self._thread.start()

        def factory() -> SMTP:
            return SMTP(self, data_size_limit=self.max_bytes, enable_SMTPUTF8=True,
                        hostname="smtp-recorder.test", loop=self._loop)

        self._server = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(factory, self.host, 0), self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        # Connections a test left open would otherwise outlive the loop.
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def __enter__(self) -> SmtpRecorder:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@pytest.fixture
def smtp_recorder() -> Iterator[SmtpRecorder]:
    """A running SmtpRecorder for one test. A conftest shares it with
    `from tests.mail_servers import smtp_recorder  # noqa: F401`; a test module, where ruff
    would flag the parameter as a redefinition, writes
    `smtp_recorder = mail_servers.smtp_recorder` after `from tests import mail_servers`."""
    with SmtpRecorder() as recorder:
        yield recorder


# -- IMAP ----------------------------------------------------------------------------------

_LIST_NAME = re.compile(rb'\) "[^"]*" (?P<name>"(?:[^"\\]|\\.)*"|\S+)$')
_FLAGS = re.compile(rb"UID (?P<uid>\d+) FLAGS \((?P<flags>[^)]*)\)|"
                    rb"FLAGS \((?P<flags2>[^)]*)\) UID (?P<uid2>\d+)")


@dataclass
class ImapMailbox:
    """The test user's mailbox on a real IMAP server, seen through the standard library's
    imaplib: a second client, so a mistake in our aioimaplib code cannot hide itself."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    tls_port: int | None = None  # implicit TLS, when the server has it
    ca_file: str | None = None  # trusts the server's test certificate

    @classmethod
    def from_env(cls) -> ImapMailbox | None:
        env = os.environ
        if not all(env.get(f"TEST_IMAP_{k}") for k in ("HOST", "PORT", "USER", "PASSWORD")):
            return None
        tls_port = env.get("TEST_IMAP_TLS_PORT")
        return cls(env["TEST_IMAP_HOST"], int(env["TEST_IMAP_PORT"]), env["TEST_IMAP_USER"],
                   env["TEST_IMAP_PASSWORD"], int(tls_port) if tls_port else None,
                   env.get("TEST_IMAP_CA_FILE") or None)

    def settings(self, **overrides: Any) -> ImapSettings:
        """ImapSettings for this mailbox, plain IMAP on loopback unless overridden."""
        base = ImapSettings(self.host, self.port, self.user, self.password, tls="none",
                            ca_file=self.ca_file, timeout_seconds=10)
        return replace(base, **overrides)

    @contextmanager
    def _connected(self) -> Iterator[imaplib.IMAP4]:
        with imaplib.IMAP4(self.host, self.port, timeout=10) as conn:
            conn.login(self.user, self.password)
            yield conn

    def append(self, raw: bytes, *, mailbox: str = "INBOX", flags: str = "") -> None:
        with self._connected() as conn:
            status, data = conn.append(_quoted(mailbox), f"({flags})" if flags else None,
                                       None, raw)
            assert status == "OK", data

    def flags_of_all(self, mailbox: str = "INBOX") -> list[frozenset[str]]:
        """Each message's stored flags (\\Recent left out), in UID order (oldest first)."""
        with self._connected() as conn:
            status, data = conn.select(_quoted(mailbox), readonly=True)
            assert status == "OK", data
            if int(data[0] or 0) == 0:
                return []
            status, data = conn.fetch("1:*", "(UID FLAGS)")
            assert status == "OK", data
        found: list[tuple[int, frozenset[str]]] = []
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            match = _FLAGS.search(line or b"")
            if match:
                uid = int(match["uid"] or match["uid2"])
                flags = (match["flags"] if match["flags"] is not None else match["flags2"])
                # \Recent says which session saw it first, not what was stored.
                found.append((uid, frozenset(flags.decode().split()) - {"\\Recent"}))
        return [flags for _, flags in sorted(found)]

    def count(self, mailbox: str = "INBOX") -> int:
        with self._connected() as conn:
            status, data = conn.select(_quoted(mailbox), readonly=True)
            if status != "OK":
                return 0  # no such mailbox: nothing in it
            return int(data[0] or 0)

    def empty(self) -> None:
        """Delete every message and every mailbox but INBOX."""
        with self._connected() as conn:
            status, boxes = conn.list()
            assert status == "OK", boxes
            names = [m["name"].decode() for line in boxes
                     if (m := _LIST_NAME.search(line if isinstance(line, bytes) else b""))]
            # Children before parents: a mailbox with children cannot always be deleted.
            for name in sorted(names, key=len, reverse=True):
                if name.strip('"').upper() != "INBOX":
                    status, data = conn.delete(name)
                    assert status == "OK", data
            status, data = conn.select("INBOX")
            assert status == "OK", data
            if int(data[0] or 0):
                conn.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
                conn.expunge()

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    @classmethod
    @contextmanager
    def for_test(cls) -> Iterator[ImapMailbox]:
        """The environment's mailbox, emptied; skipped only under
        AUTOTRAIN_TEST_NO_SERVICES=1, since otherwise scripts/test.sh must have started it."""
        mailbox = cls.from_env()
        if mailbox is None:
            if os.environ.get("AUTOTRAIN_TEST_NO_SERVICES") == "1":
                pytest.skip("no IMAP server: TEST_IMAP_* unset and "
                            "AUTOTRAIN_TEST_NO_SERVICES=1 (scripts/test.sh starts Dovecot)")
            pytest.fail("TEST_IMAP_HOST/PORT/USER/PASSWORD are not set: run the suite through "
                        "scripts/test.sh (it starts Dovecot), or set "
                        "AUTOTRAIN_TEST_NO_SERVICES=1 to skip the tests that need it")
        mailbox.empty()
        yield mailbox


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def imap_mailbox() -> Iterator[ImapMailbox]:
    """The test user's emptied Dovecot mailbox (see ImapMailbox.for_test); shared like
    smtp_recorder."""
    with ImapMailbox.for_test() as mailbox:
        yield mailbox
