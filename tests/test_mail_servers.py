"""The mail test servers work: the SMTP recorder keeps what real clients send, and the Dovecot
mailbox takes APPENDs that a real IMAP client then fetches."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import aiosmtplib
import pytest
from aioimaplib import aioimaplib

from tests import mail_servers
from tests.mail_servers import ImapMailbox, SmtpRecorder

# The shared fixtures, under their own names (an import would trip ruff's F811).
smtp_recorder = mail_servers.smtp_recorder
imap_mailbox = mail_servers.imap_mailbox


def _mail(subject: str, *, to: str = "replies@autotrain.example") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Manager <manager@shop.example>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@shop.example>"
    msg.set_content("approve 1\n.a line starting with a dot\n")
    return msg


RAW = (b"From: manager@shop.example\r\nTo: replies@autotrain.example\r\n"
       b"Subject: Re: 3 suggestions\r\nMessage-ID: <raw-1@shop.example>\r\n\r\n"
       b"approve all\r\n")


# -- SMTP recorder ----------------------------------------------------------------------------

async def test_a_message_sent_with_aiosmtplib_is_recorded(smtp_recorder: SmtpRecorder) -> None:
    await aiosmtplib.send(_mail("Re: digest"), hostname=smtp_recorder.host,
                          port=smtp_recorder.port, sender="bounce@shop.example",
                          recipients=["replies@autotrain.example", "cc@autotrain.example"])

    [got] = smtp_recorder.wait_for(1)
    assert got.mail_from == "bounce@shop.example"
    assert got.rcpt_tos == ("replies@autotrain.example", "cc@autotrain.example")
    assert got.message["Subject"] == "Re: digest"
    # The exact bytes, dot-unstuffed: what a sink would be handed.
    assert b"\r\n.a line starting with a dot\r\n" in got.raw
    assert got.message.get_content().splitlines() == ["approve 1",
                                                      ".a line starting with a dot"]


def test_a_sync_client_can_send_and_wait(smtp_recorder: SmtpRecorder) -> None:
    with smtplib.SMTP(smtp_recorder.host, smtp_recorder.port, timeout=10) as client:
        client.sendmail("a@shop.example", ["replies@autotrain.example"], RAW)

    assert [m.raw for m in smtp_recorder.wait_for(1)] == [RAW]


async def test_fail_next_refuses_one_message_then_records_again(
        smtp_recorder: SmtpRecorder) -> None:
    smtp_recorder.fail_next("451 4.3.0 try again later")

    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await aiosmtplib.send(_mail("first"), hostname=smtp_recorder.host,
                              port=smtp_recorder.port)
    await aiosmtplib.send(_mail("second"), hostname=smtp_recorder.host, port=smtp_recorder.port)

    assert refused.value.code == 451
    assert [m.message["Subject"] for m in smtp_recorder.wait_for(1)] == ["second"]


def test_wait_for_fails_naming_what_arrived(smtp_recorder: SmtpRecorder) -> None:
    with pytest.raises(AssertionError, match=r"for 1 message.*got 0"):
        smtp_recorder.wait_for(1, timeout=0.2)


# -- IMAP mailbox -----------------------------------------------------------------------------

async def test_an_appended_message_is_fetched_by_a_real_client(
        imap_mailbox: ImapMailbox) -> None:
    imap_mailbox.append(RAW)

    client = aioimaplib.IMAP4(imap_mailbox.host, imap_mailbox.port, timeout=10)
    await client.wait_hello_from_server()
    assert (await client.login(imap_mailbox.user, imap_mailbox.password)).result == "OK"
    assert (await client.select("INBOX")).result == "OK"
    fetched = await client.fetch("1", "(BODY.PEEK[])")
    await client.logout()

    assert fetched.result == "OK"
    assert bytes(fetched.lines[1]) == RAW
    assert imap_mailbox.count() == 1
    assert imap_mailbox.flags_of_all() == [frozenset()]  # PEEK left it unread


def test_flags_of_all_follows_uid_order_and_shows_flags(imap_mailbox: ImapMailbox) -> None:
    imap_mailbox.append(RAW, flags="\\Seen")
    imap_mailbox.append(RAW.replace(b"raw-1", b"raw-2"))

    assert imap_mailbox.flags_of_all() == [frozenset({"\\Seen"}), frozenset()]


def test_the_fixture_starts_from_an_empty_mailbox(imap_mailbox: ImapMailbox) -> None:
    imap_mailbox.append(RAW)
    imap_mailbox.append(RAW, mailbox="INBOX")
    with imap_mailbox._connected() as conn:
        assert conn.create('"Processed replies"')[0] == "OK"
    imap_mailbox.append(RAW, mailbox="Processed replies")

    imap_mailbox.empty()

    assert imap_mailbox.count() == 0
    assert imap_mailbox.count("Processed replies") == 0  # the mailbox itself is gone
    with imap_mailbox._connected() as conn:
        status, boxes = conn.list()
    assert status == "OK" and all(b"Processed" not in line for line in boxes)


def test_without_the_servers_the_mailbox_fails_unless_services_are_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HOST", "PORT", "USER", "PASSWORD"):
        monkeypatch.delenv(f"TEST_IMAP_{key}", raising=False)
    monkeypatch.delenv("AUTOTRAIN_TEST_NO_SERVICES", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"scripts/test\.sh"):
        with ImapMailbox.for_test():
            pass

    monkeypatch.setenv("AUTOTRAIN_TEST_NO_SERVICES", "1")
    with pytest.raises(pytest.skip.Exception, match="AUTOTRAIN_TEST_NO_SERVICES=1"):
        with ImapMailbox.for_test():
            pass
