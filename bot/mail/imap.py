"""IMAP polling: new messages in a mailbox are handed to the inbound pipeline, then marked."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

from aioimaplib import aioimaplib

from bot.mail.smtp_listener import MailSink

log = logging.getLogger(__name__)

__all__ = ["PROCESSED_KEYWORD", "ImapError", "ImapSettings", "poll_forever", "poll_once"]

PROCESSED_KEYWORD = "$AutotrainProcessed"

TlsMode = Literal["tls", "starttls", "none"]


@dataclass(frozen=True)
class ImapSettings:
    """Where to read replies from. `tls`: "tls" (implicit, usually port 993), "starttls"
    (upgrade on port 143; refused if the server does not offer it) or "none" (loopback or a
    trusted network only).

    A handed-over message gets \\Seen and `processed_flag` (None: \\Seen only); with
    `move_to`, it is then moved to that mailbox (created if missing). `ca_file` trusts a
    private CA (PEM) besides the system's."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    mailbox: str = "INBOX"
    tls: TlsMode = "tls"
    processed_flag: str | None = PROCESSED_KEYWORD
    move_to: str | None = None
    ca_file: str | None = None
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.tls not in ("tls", "starttls", "none"):
            raise ValueError(f"tls must be 'tls', 'starttls' or 'none', not {self.tls!r}")
        if self.processed_flag is not None and not _ATOM.fullmatch(self.processed_flag):
            raise ValueError(f"processed_flag {self.processed_flag!r} is not an IMAP keyword")


class ImapError(Exception):
    """The IMAP server could not be reached, refused us, or would not do what polling needs.
    The message names the server, never the password."""


# A keyword is an IMAP atom (RFC 3501 section 9): no spaces, parentheses, quotes, wildcards.
_ATOM = re.compile(r"\$?[A-Za-z0-9_.\-+]+")
# aioimaplib strips "* SEARCH " and keeps the numbers only.
_SEARCH_UIDS = re.compile(rb"\d+(?: \d+)*")
_FETCH_UID = re.compile(rb"UID (\d+)")
_PERMANENT_FLAGS = re.compile(rb"\[PERMANENTFLAGS \((?P<flags>[^)]*)\)\]")
_warned_no_keywords: set[str] = set()


async def poll_once(settings: ImapSettings, sink: MailSink, *, limit: int = 200) -> int:
    """Hand every new message (oldest first, at most `limit`) to the sink with
    source="imap", and return how many it accepted.

    A message is marked processed only after the sink returned, so a crash in between
    delivers it again on the next poll (the sink de-duplicates by Message-ID). A sink that
    raises is logged with a reference and its message left for the next poll; the others go
    on. Raises ImapError when the server cannot be used."""
    async with _session(settings) as imap:
        uids = await imap.new_uids()
        handed = 0
        for uid in uids[:limit]:
            raw = await imap.fetch(uid)
            if raw is None:
                continue  # expunged by another client since the search
            try:
                await sink(raw, source="imap")
            except Exception:
                ref = uuid.uuid4().hex[:12]
                # Only the uid and size: the message holds customer text.
                log.exception("inbound IMAP: the mail sink failed on uid %d (%d bytes) in %s "
                              "on %s; left unmarked for the next poll (ref %s)", uid,
                              len(raw), settings.mailbox, settings.host, ref)
                continue
            handed += 1
            await imap.mark_processed(uid)
        if len(uids) > limit:
            log.info("inbound IMAP: %d more messages wait on %s for the next poll",
                     len(uids) - limit, settings.host)
        return handed


async def poll_forever(settings: ImapSettings, sink: MailSink, *, every_seconds: float,
                       max_backoff_seconds: float = 300.0) -> None:
    """Poll every `every_seconds` until cancelled. Errors are logged and retried with a
    growing, jittered delay (up to `max_backoff_seconds`), so a mail server that is down for
    an hour costs a few log lines, not a crash."""
    failures = 0
    while True:
        try:
            handed = await poll_once(settings, sink)
        except Exception as exc:  # CancelledError is no Exception: cancelling still stops it
            failures += 1
            delay = min(max_backoff_seconds, every_seconds * 2 ** min(failures, 10))
            delay *= random.uniform(0.8, 1.2)  # pollers of one server do not retry in step
            if isinstance(exc, ImapError):
                log.warning("inbound IMAP: poll failed (%d in a row), retrying in %.1f s: %s",
                            failures, delay, exc)
            else:
                log.exception("inbound IMAP: poll failed (%d in a row), retrying in %.1f s",
                              failures, delay)
        else:
            if failures:
                log.info("inbound IMAP: %s reachable again", settings.host)
            failures = 0
            delay = every_seconds
            if handed:
                log.info("inbound IMAP: %d message(s) from %s", handed, settings.host)
        await asyncio.sleep(delay)


# -- the session ----------------------------------------------------------------------------

class _Session:
    """One logged-in connection with the mailbox selected."""

    def __init__(self, client: aioimaplib.IMAP4, settings: ImapSettings,
                 permanent_flags: set[str]) -> None:
        self._client = client
        self._settings = settings
        self._where = _where(settings)
        flag = settings.processed_flag
        # Servers without user keywords (\* missing) get \Seen only, and UNSEEN finds work.
        self._keyword = flag if flag and ("\\*" in permanent_flags
                                          or flag in permanent_flags) else None
        if flag and self._keyword is None and self._where not in _warned_no_keywords:
            _warned_no_keywords.add(self._where)  # once per server, not once per poll
            log.warning("inbound IMAP: %s does not keep the keyword %s; marking \\Seen only",
                        self._where, flag)

    async def _run(self, what: str, command: str, *args: str) -> aioimaplib.Response:
        try:
            response = await asyncio.wait_for(self._client.uid(command, *args),
                                              self._settings.timeout_seconds)
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapError(f"IMAP server {self._where}: {what} failed "
                            f"({_describe(exc)})") from exc
        return response

    async def new_uids(self) -> list[int]:
        criteria = (("UNDELETED", "UNKEYWORD", self._keyword) if self._keyword
                    else ("UNDELETED", "UNSEEN"))
        try:
            response = await asyncio.wait_for(
                self._client.uid_search(*criteria, charset=None), self._settings.timeout_seconds)
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapError(f"IMAP server {self._where}: SEARCH failed "
                            f"({_describe(exc)})") from exc
        _expect_ok(response, f"IMAP server {self._where}: SEARCH")
        uids: list[int] = []
        for line in response.lines[:-1]:  # the last one is the tagged "OK Search completed"
            if _SEARCH_UIDS.fullmatch(bytes(line).strip()):
                uids.extend(int(u) for u in line.split())
        return sorted(set(uids))

    async def fetch(self, uid: int) -> bytes | None:
        # BODY.PEEK leaves \Seen alone: the message is marked only once the sink has it.
        response = await self._run(f"FETCH of uid {uid}", "fetch", str(uid), "(BODY.PEEK[])")
        _expect_ok(response, f"IMAP server {self._where}: FETCH of uid {uid}")
        lines = response.lines
        for i, line in enumerate(lines):
            if not isinstance(line, bytearray):
                continue
            # Unsolicited FETCH responses (another client's flag change) may be mixed in; the
            # literal belongs to us when the UID around it is ours (or none is given).
            around = b" ".join(bytes(x) for x in (lines[i - 1] if i else b"",
                                                  lines[i + 1] if i + 1 < len(lines) else b"")
                               if not isinstance(x, bytearray))
            found = _FETCH_UID.search(around)
            if found is None or int(found[1]) == uid:
                return bytes(line)
        return None

    async def mark_processed(self, uid: int) -> None:
        flags = "\\Seen" + (f" {self._keyword}" if self._keyword else "")
        response = await self._run(f"STORE on uid {uid}", "store", str(uid), "+FLAGS.SILENT",
                                   f"({flags})")
        _expect_ok(response, f"IMAP server {self._where}: marking uid {uid} processed")
        if self._settings.move_to:
            await self._move(uid, self._settings.move_to)

    async def _move(self, uid: int, target: str) -> None:
        # The message is already marked, so a failed move only leaves it where it is.
        mailbox = _quote_mailbox(target)
        try:
            if self._client.has_capability("MOVE"):
                response = await self._run(f"MOVE of uid {uid}", "move", str(uid), mailbox)
                _expect_ok(response, "MOVE")
                return
            response = await self._run(f"COPY of uid {uid}", "copy", str(uid), mailbox)
            _expect_ok(response, "COPY")
            response = await self._run(f"STORE on uid {uid}", "store", str(uid),
                                       "+FLAGS.SILENT", "(\\Deleted)")
            _expect_ok(response, "STORE \\Deleted")
            # A plain EXPUNGE would also remove what others marked \Deleted; without UIDPLUS
            # the copy stays flagged \Deleted (and is skipped) until someone expunges.
            if self._client.has_capability("UIDPLUS"):
                await self._run(f"EXPUNGE of uid {uid}", "expunge", str(uid))
        except ImapError as exc:
            log.warning("inbound IMAP: uid %d is processed but could not be moved to %s: %s",
                        uid, target, exc)

    async def prepare_move_target(self) -> None:
        target = self._settings.move_to
        if not target:
            return
        # Already there is the usual case; the server answers NO and nothing changes.
        with suppress(TimeoutError, aioimaplib.AioImapException):
            await asyncio.wait_for(self._client.create(_quote_mailbox(target)),
                                   self._settings.timeout_seconds)


@asynccontextmanager
async def _session(settings: ImapSettings) -> AsyncIterator[_Session]:
    where = _where(settings)
    client = await _connect(settings)
    try:
        await _login(client, settings)
        try:
            response = await client.select(_quote_mailbox(settings.mailbox))
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            raise ImapError(f"IMAP server {where}: SELECT {settings.mailbox!r} failed "
                            f"({_describe(exc)})") from exc
        _expect_ok(response, f"IMAP server {where}: SELECT {settings.mailbox!r}")
        text = b" ".join(bytes(line) for line in response.lines)
        if b"[READ-ONLY]" in text:
            raise ImapError(f"IMAP server {where}: mailbox {settings.mailbox!r} is read-only, "
                            "and polling must mark what it has handed over")
        found = _PERMANENT_FLAGS.search(text)
        permanent = set(found["flags"].decode(errors="replace").split()) if found else set()
        session = _Session(client, settings, permanent)
        await session.prepare_move_target()
        yield session
    finally:
        await _close(client)


async def _connect(settings: ImapSettings) -> aioimaplib.IMAP4:
    where = _where(settings)
    loop = asyncio.get_running_loop()
    # aioimaplib waits for a greeting until its timeout even when the server has already
    # hung up (a proxy whose backend is down does that); the callback ends the wait at once.
    lost: asyncio.Future[Exception | None] = loop.create_future()

    def on_lost(exc: Exception | None) -> None:
        if not lost.done():
            lost.set_result(exc)

    client = aioimaplib.IMAP4(host=settings.host, port=settings.port, loop=loop,
                              timeout=settings.timeout_seconds, conn_lost_cb=on_lost,
                              ssl_context=_ssl_context(settings) if settings.tls == "tls"
                              else None)
    hello = asyncio.ensure_future(client.wait_hello_from_server())
    try:
        await asyncio.wait({hello, lost}, return_when=asyncio.FIRST_COMPLETED)
        if not hello.done():
            hello.cancel()
            raise ImapError(f"IMAP server {where} closed the connection before greeting"
                            + (f" ({_describe(exc)})" if (exc := lost.result()) else ""))
        hello.result()
        if settings.tls == "starttls":
            await _starttls(client, settings)
    except ImapError:
        await _close(client)
        raise
    except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
        await _close(client)
        raise ImapError(f"could not connect to IMAP server {where} "
                        f"({_describe(exc)})") from exc
    except asyncio.CancelledError:
        hello.cancel()
        await _close(client)
        raise
    return client


async def _starttls(client: aioimaplib.IMAP4, settings: ImapSettings) -> None:
    # aioimaplib has no STARTTLS, so its protocol object is upgraded in place: asyncio's
    # start_tls swaps the transport under the same protocol, then capabilities are asked
    # again, as RFC 3501 requires (the ones sent in clear text are not to be trusted).
    where = _where(settings)
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise ImapError(f"IMAP server {where} does not offer STARTTLS (tls='starttls')")
    response = await asyncio.wait_for(
        protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(),
                                            loop=protocol.loop)),
        settings.timeout_seconds)
    _expect_ok(response, f"IMAP server {where}: STARTTLS")
    loop = asyncio.get_running_loop()
    transport = await asyncio.wait_for(
        loop.start_tls(protocol.transport, protocol, _ssl_context(settings),
                       server_hostname=settings.host),
        settings.timeout_seconds)
    if transport is None:
        raise ImapError(f"IMAP server {where}: the TLS handshake after STARTTLS failed")
    protocol.transport = transport
    await asyncio.wait_for(protocol.capability(), settings.timeout_seconds)


async def _login(client: aioimaplib.IMAP4, settings: ImapSettings) -> None:
    where = _where(settings)
    try:
        response = await client.login(settings.username, settings.password)
    except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
        # Not chained: aioimaplib's LOGIN command (password included) rides on its errors.
        raise ImapError(f"IMAP server {where}: login as {settings.username!r} failed "
                        f"({_scrub(_describe(exc), settings.password)})") from None
    if response.result != "OK":
        said = b" ".join(bytes(line) for line in response.lines).decode(errors="replace")
        raise ImapError(f"IMAP server {where} refused the login as {settings.username!r}: "
                        f"{_scrub(said, settings.password)}")


async def _close(client: aioimaplib.IMAP4) -> None:
    # A polite LOGOUT when the session still works; either way the socket is closed.
    with suppress(Exception):
        if client.protocol.state in (aioimaplib.AUTH, aioimaplib.SELECTED,
                                     aioimaplib.NONAUTH):
            await asyncio.wait_for(client.logout(), 5)
    transport = client.protocol.transport
    if transport is not None:
        transport.close()


# -- helpers --------------------------------------------------------------------------------

def _where(settings: ImapSettings) -> str:
    return f"{settings.host}:{settings.port}"


def _ssl_context(settings: ImapSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.ca_file:
        context.load_verify_locations(cafile=settings.ca_file)
    return context


def _expect_ok(response: aioimaplib.Response, what: str) -> None:
    if response.result != "OK":
        said = b" ".join(bytes(line) for line in response.lines
                         if not isinstance(line, bytearray)).decode(errors="replace")
        raise ImapError(f"{what} answered {response.result}: {said[:300]}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _quote_mailbox(name: str) -> str:
    """A mailbox name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501
    section 5.1.3), so "Processed replies" or "Réponses" work as written."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode()
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return aioimaplib.quoted("".join(out))
