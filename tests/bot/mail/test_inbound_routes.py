"""Inbound mail routes feed the pipeline's sink: the built-in SMTP listener (real aiosmtplib
clients) and IMAP polling (a real Dovecot, started by scripts/test.sh)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from bot.mail.imap import PROCESSED_KEYWORD, ImapError, poll_forever, poll_once
from bot.mail.smtp_listener import SmtpListener, start_smtp_listener
from tests import mail_servers
from tests.mail_servers import ImapMailbox

imap_mailbox = mail_servers.imap_mailbox  # the shared fixture (an import would trip F811)

DOMAIN = "replies.autotrain.example"
MAX_BYTES = 64 * 1024
PROCESSED = frozenset({"\\Seen", PROCESSED_KEYWORD})


@dataclass
class RecordingSink:
    """A MailSink that keeps what it is handed; `fail_on` makes chosen calls (1-based) raise."""

    got: list[tuple[bytes, tuple[str, ...], str]] = field(default_factory=list)
    fail_on: set[int] = field(default_factory=set)
    calls: int = 0

    async def __call__(self, raw: bytes, *, envelope_to: Sequence[str] = (),
                       source: str) -> Any:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("the pipeline has a bug")
        self.got.append((raw, tuple(envelope_to), source))
        return None


def reply(n: int, *, body: str = "approve\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Manager <manager@shop.example>"
    msg["To"] = f"digest+{n}@{DOMAIN}"
    msg["Subject"] = f"Re: your digest {n}"
    msg["Message-ID"] = f"<reply-{n}@shop.example>"
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


# -- SMTP listener ------------------------------------------------------------------------------

@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def listener(sink: RecordingSink) -> AsyncIterator[SmtpListener]:
    server = await start_smtp_listener(sink, host="127.0.0.1", port=0, max_bytes=MAX_BYTES,
                                       accept_domains=[DOMAIN])
    yield server
    await server.stop()


async def send(listener: SmtpListener, raw: bytes, *recipients: str) -> Any:
    return await aiosmtplib.send(raw, sender="manager@shop.example",
                                 recipients=list(recipients) or [f"digest+1@{DOMAIN}"],
                                 hostname="127.0.0.1", port=listener.port, timeout=10)


async def test_a_sent_reply_reaches_the_sink_before_the_sender_hears_250(
        listener: SmtpListener, sink: RecordingSink) -> None:
    raw = reply(1, body="approve 1\n.dots are unstuffed\n")
    _, status = await send(listener, raw, f"digest+1@{DOMAIN}", f"Other@{DOMAIN.upper()}")

    assert status.startswith("OK")
    # No waiting: the 250 came only once the sink had the message.
    assert sink.got == [(raw, (f"digest+1@{DOMAIN}", f"Other@{DOMAIN.upper()}"), "smtp")]


async def test_the_listener_binds_loopback_on_a_free_port(listener: SmtpListener) -> None:
    assert listener.host == "127.0.0.1"
    assert listener.port > 0
    assert listener.server is not None
    assert listener.server.sockets[0].getsockname() == ("127.0.0.1", listener.port)


async def test_an_oversize_message_is_refused_with_552_and_never_reaches_the_sink(
        listener: SmtpListener, sink: RecordingSink) -> None:
    big = reply(2) + (b"y" * 76 + b"\r\n") * 1000
    assert len(big) > MAX_BYTES

    # aiosmtplib announces SIZE, so the refusal comes at MAIL FROM ...
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as at_mail:
        await send(listener, big)
    # ... and a client that does not is refused after DATA.
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, timeout=10) as smtp:
        await smtp.mail("manager@shop.example")
        await smtp.rcpt(f"digest+2@{DOMAIN}")
        with pytest.raises(aiosmtplib.SMTPDataError) as at_data:
            await smtp.data(big)

    assert at_mail.value.code == 552
    assert at_data.value.code == 552
    assert sink.got == []


async def test_a_recipient_of_another_domain_is_refused(
        listener: SmtpListener, sink: RecordingSink) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(listener, reply(3), "someone@elsewhere.example")
    # With one good recipient the message goes on, for that recipient only.
    errors, _ = await send(listener, reply(4), "victim@elsewhere.example", f"digest+4@{DOMAIN}")

    assert [r.code for r in refused.value.recipients] == [550]
    assert errors["victim@elsewhere.example"].code == 550
    assert sink.got == [(reply(4), (f"digest+4@{DOMAIN}",), "smtp")]


async def test_a_sink_that_raises_gives_451_and_the_next_message_goes_through(
        listener: SmtpListener, sink: RecordingSink, caplog: pytest.LogCaptureFixture) -> None:
    sink.fail_on = {1}
    caplog.set_level(logging.ERROR, logger="bot.mail.smtp_listener")

    with pytest.raises(aiosmtplib.SMTPDataError) as failed:
        await send(listener, reply(5))
    await send(listener, reply(6))

    assert failed.value.code == 451  # temporary: the sender's MTA retries
    ref = failed.value.message.rsplit("ref ", 1)[1].rstrip(")")
    assert ref in caplog.text and "the pipeline has a bug" in caplog.text
    assert [raw for raw, _, _ in sink.got] == [reply(6)]


async def test_without_accept_domains_every_recipient_is_taken(sink: RecordingSink) -> None:
    async with SmtpListener(sink, port=0, max_bytes=MAX_BYTES) as open_listener:
        await send(open_listener, reply(7), "anyone@anywhere.example")

    assert sink.got == [(reply(7), ("anyone@anywhere.example",), "smtp")]


async def test_stop_lets_a_message_being_handed_over_finish(sink: RecordingSink) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_sink(raw: bytes, *, envelope_to: Sequence[str] = (), source: str) -> Any:
        entered.set()
        await release.wait()
        await sink(raw, envelope_to=envelope_to, source=source)

    slow = await start_smtp_listener(slow_sink, port=0, max_bytes=MAX_BYTES)
    sending = asyncio.create_task(send(slow, reply(8)))
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(slow.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the hand-over, not dropping it
    release.set()
    await asyncio.wait_for(stopping, 5)
    await asyncio.wait_for(sending, 5)

    assert [raw for raw, _, _ in sink.got] == [reply(8)]


# -- IMAP polling -------------------------------------------------------------------------------

async def test_poll_hands_over_every_new_message_and_marks_it(imap_mailbox: ImapMailbox,
                                                              sink: RecordingSink) -> None:
    for n in (1, 2, 3):
        imap_mailbox.append(reply(n))

    first = await poll_once(imap_mailbox.settings(), sink)
    second = await poll_once(imap_mailbox.settings(), sink)

    assert (first, second) == (3, 0)
    assert sink.got == [(reply(n), (), "imap") for n in (1, 2, 3)]
    assert imap_mailbox.flags_of_all() == [PROCESSED] * 3


async def test_a_sink_failure_leaves_that_message_for_the_next_poll(
        imap_mailbox: ImapMailbox, sink: RecordingSink,
        caplog: pytest.LogCaptureFixture) -> None:
    for n in (1, 2, 3):
        imap_mailbox.append(reply(n))
    sink.fail_on = {2}
    caplog.set_level(logging.ERROR, logger="bot.mail.imap")

    handed = await poll_once(imap_mailbox.settings(), sink)
    flags_after_failure = imap_mailbox.flags_of_all()
    again = await poll_once(imap_mailbox.settings(), sink)

    assert handed == 2
    assert flags_after_failure == [PROCESSED, frozenset(), PROCESSED]
    assert "ref " in caplog.text and "the pipeline has a bug" in caplog.text
    assert again == 1
    assert [raw for raw, _, _ in sink.got] == [reply(1), reply(3), reply(2)]
    assert imap_mailbox.flags_of_all() == [PROCESSED] * 3


async def test_a_message_read_by_a_person_is_still_handed_over(imap_mailbox: ImapMailbox,
                                                                sink: RecordingSink) -> None:
    imap_mailbox.append(reply(1), flags="\\Seen")  # someone opened the box in a mail client

    assert await poll_once(imap_mailbox.settings(), sink) == 1
    assert imap_mailbox.flags_of_all() == [PROCESSED]


async def test_without_a_keyword_seen_alone_marks_work_done(imap_mailbox: ImapMailbox,
                                                            sink: RecordingSink) -> None:
    imap_mailbox.append(reply(1))
    imap_mailbox.append(reply(2), flags="\\Seen")
    settings = imap_mailbox.settings(processed_flag=None)

    assert await poll_once(settings, sink) == 1
    assert await poll_once(settings, sink) == 0
    assert imap_mailbox.flags_of_all() == [frozenset({"\\Seen"})] * 2


async def test_limit_caps_one_poll_and_the_rest_wait(imap_mailbox: ImapMailbox,
                                                     sink: RecordingSink) -> None:
    for n in (1, 2, 3):
        imap_mailbox.append(reply(n))

    assert await poll_once(imap_mailbox.settings(), sink, limit=2) == 2
    assert await poll_once(imap_mailbox.settings(), sink, limit=2) == 1
    assert [raw for raw, _, _ in sink.got] == [reply(1), reply(2), reply(3)]


async def test_move_to_moves_processed_messages_into_a_created_mailbox(
        imap_mailbox: ImapMailbox, sink: RecordingSink) -> None:
    imap_mailbox.append(reply(1))
    imap_mailbox.append(reply(2))

    handed = await poll_once(imap_mailbox.settings(move_to="Réponses traitées"), sink)

    assert handed == 2
    assert imap_mailbox.count() == 0
    # Modified UTF-7, as RFC 3501 spells "Réponses traitées".
    moved = "R&AOk-ponses trait&AOk-es"
    assert imap_mailbox.count(moved) == 2
    assert imap_mailbox.flags_of_all(moved) == [PROCESSED] * 2


async def test_a_wrong_password_raises_imap_error_naming_the_host_not_the_password(
        imap_mailbox: ImapMailbox, sink: RecordingSink,
        caplog: pytest.LogCaptureFixture) -> None:
    imap_mailbox.append(reply(1))
    caplog.set_level(logging.DEBUG)
    password = "Wrong-Secret-4242"
    settings = imap_mailbox.settings(password=password)

    with pytest.raises(ImapError) as failed:
        await poll_once(settings, sink)

    text = str(failed.value)
    assert f"{imap_mailbox.host}:{imap_mailbox.port}" in text
    assert "refused the login" in text
    assert password not in text and password not in repr(failed.value)
    assert failed.value.__cause__ is None and password not in caplog.text
    assert password not in repr(settings)
    assert sink.got == [] and imap_mailbox.flags_of_all() == [frozenset()]


async def test_an_unreachable_server_raises_imap_error_naming_it(sink: RecordingSink) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens there now
    settings = ImapMailbox("127.0.0.1", port, "u", "p").settings(timeout_seconds=5)

    with pytest.raises(ImapError, match=rf"could not connect to IMAP server 127\.0\.0\.1:{port}"):
        await poll_once(settings, sink)


async def test_implicit_tls_and_starttls_verify_the_server_and_poll(
        imap_mailbox: ImapMailbox, sink: RecordingSink) -> None:
    if imap_mailbox.tls_port is None or imap_mailbox.ca_file is None:
        pytest.skip("TEST_IMAP_TLS_PORT/TEST_IMAP_CA_FILE not set (scripts/test.sh sets them)")
    imap_mailbox.append(reply(1))
    imap_mailbox.append(reply(2))

    over_tls = await poll_once(imap_mailbox.settings(tls="tls", port=imap_mailbox.tls_port),
                               sink, limit=1)
    over_starttls = await poll_once(imap_mailbox.settings(tls="starttls"), sink)
    with pytest.raises(ImapError, match="certificate verify failed"):
        await poll_once(imap_mailbox.settings(tls="tls", port=imap_mailbox.tls_port,
                                              ca_file=None), sink)

    assert (over_tls, over_starttls) == (1, 1)
    assert [raw for raw, _, _ in sink.got] == [reply(1), reply(2)]


async def test_poll_forever_rides_out_a_server_outage_and_stops_when_cancelled(
        imap_mailbox: ImapMailbox, sink: RecordingSink,
        caplog: pytest.LogCaptureFixture) -> None:
    imap_mailbox.append(reply(1))
    # A TCP proxy to Dovecot that hangs up on the first two connections: a server that
    # is down, then back.
    attempts = 0
    # Every socket the proxy holds, closed at the end: Server.wait_closed() waits for the
    # proxy's open connections (Python 3.11.7+), and a poll cancelled mid-session leaves its
    # pipe to Dovecot open.
    held: list[asyncio.StreamWriter] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        held.append(writer)
        if attempts <= 2:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(imap_mailbox.host,
                                                             imap_mailbox.port)
        held.append(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    caplog.set_level(logging.WARNING, logger="bot.mail.imap")
    polling = asyncio.create_task(poll_forever(imap_mailbox.settings(port=port), sink,
                                               every_seconds=0.02))
    try:
        for _ in range(200):
            if sink.got:
                break
            await asyncio.sleep(0.02)
        assert not polling.done()
    finally:
        polling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await polling
        server.close()
        for w in held:
            w.close()
        await server.wait_closed()

    assert [raw for raw, _, _ in sink.got] == [reply(1)]
    assert caplog.text.count("poll failed") == 2
    assert "closed the connection before greeting" in caplog.text
    assert imap_mailbox.flags_of_all() == [PROCESSED]
