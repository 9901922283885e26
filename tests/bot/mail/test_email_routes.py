"""A reply reaches the decisions through each inbound route: the app's own SMTP listener, the
worker's IMAP poll of a real Dovecot, and the webhook with real replies from mail clients
(plain, HTML-only, and in charsets other than UTF-8)."""

from __future__ import annotations

import quopri
import smtplib
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import make_msgid

import pytest

import worker
from bot.mail.imap import PROCESSED_KEYWORD
from core.status import SuggestionStatus
from tests import mail_servers
from tests.bot.mail.conftest import (
    FIXTURES,
    MANAGER,
    MailWorld,
    MakeMailWorld,
    imap_settings,
    readdress,
    reply_to,
    text_of,
)
from tests.mail_servers import ImapMailbox

imap_mailbox = mail_servers.imap_mailbox  # the shared fixture (an import would trip F811)

QUESTION = "Do you ship to Canada?"
ANSWER = "Yes, we ship to Canada in 5 to 8 business days."
PROCESSED = frozenset({"\\Seen", PROCESSED_KEYWORD})
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(),
                                    reason=f"no email fixtures at {FIXTURES}")


def message_id_of(raw: bytes) -> str:
    value = BytesParser(policy=compat32).parsebytes(raw)["Message-ID"]
    return str(value).strip()


# -- the app's SMTP listener ------------------------------------------------------------------

def test_a_reply_sent_to_the_apps_smtp_listener_is_applied_and_confirmed(
        make_mail_world: MakeMailWorld) -> None:
    world = make_mail_world(AUTOTRAIN_SMTP_LISTEN_PORT=0)
    first, second = world.two_items()
    digest = world.digest()
    raw = reply_to(digest, "approve 1")

    refused = world.smtp_send(raw, to=[str(digest["Reply-To"])])

    assert refused == {}
    # The listener answers 250 only once the reply is applied.
    assert world.status(first) == SuggestionStatus.approved
    assert world.status(second) == SuggestionStatus.pending
    assert world.answer(QUESTION) == ANSWER
    [audit] = world.svc.review.audit(world.bot, action="suggestion.approved")
    assert (audit.actor, audit.channel) == (MANAGER, "email")
    confirmation = world.answered(2)
    assert str(confirmation["In-Reply-To"]).strip() == message_id_of(raw)
    assert QUESTION in text_of(confirmation)


def test_the_apps_smtp_listener_refuses_a_recipient_of_another_domain(
        make_mail_world: MakeMailWorld) -> None:
    world = make_mail_world(AUTOTRAIN_SMTP_LISTEN_PORT=0)
    first, _ = world.two_items()
    digest = world.digest()
    # The To header holds a valid reply address; the envelope is what the listener judges.
    raw = reply_to(digest, "approve 1")

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        world.smtp_send(raw, to=["someone@elsewhere.example"])

    assert refused.value.recipients["someone@elsewhere.example"][0] == 550
    assert world.status(first) == SuggestionStatus.pending
    assert len(world.settle()) == 1  # the digest only: nothing answered


# -- IMAP -------------------------------------------------------------------------------------

async def test_a_reply_in_the_imap_mailbox_is_applied_once_by_the_workers_poll(
        make_mail_world: MakeMailWorld, imap_mailbox: ImapMailbox) -> None:
    world = make_mail_world(**imap_settings(imap_mailbox))
    first, second = world.two_items()
    digest = world.digest()
    raw = reply_to(digest, "approve 1\nreject 2 tone")
    imap_mailbox.append(raw)
    ctx = {"services": world.svc, "mail": world.mail}

    polled = await worker.imap_poll(ctx)
    flags = imap_mailbox.flags_of_all()
    nothing_new = await worker.imap_poll(ctx)
    imap_mailbox.append(raw)  # the same reply delivered twice (a sender's retry)
    redelivered = await worker.imap_poll(ctx)
    await world.mail.inbound.drain()  # confirmations go out on this loop, after the poll

    assert (polled, nothing_new, redelivered) == ({"received": 1}, {"received": 0},
                                                  {"received": 1})
    assert flags == [PROCESSED]
    assert world.status(first) == SuggestionStatus.approved
    assert world.svc.review.card(second, bot=world.bot).reject_reason == "tone"
    assert world.answer(QUESTION) == ANSWER
    assert len(world.svc.review.audit(world.bot, action="suggestion.approved")) == 1
    confirmation = world.answered(2)  # one confirmation, not one per delivery
    assert str(confirmation["In-Reply-To"]).strip() == message_id_of(raw)
    assert imap_mailbox.flags_of_all() == [PROCESSED, PROCESSED]


# -- the webhook, with real replies -----------------------------------------------------------

def fixture_with(relative: str, *edits: tuple[bytes, bytes]) -> bytes:
    """A fixture's bytes with each `old` replaced once by `new` (each must be there)."""
    data = (FIXTURES / relative).read_bytes()
    for old, new in edits:
        assert old in data, (relative, old)
        data = data.replace(old, new, 1)
    return data


def html_only_reply(digest: EmailMessage, html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Pat Manager <{MANAGER}>"
    msg["To"] = str(digest["Reply-To"])
    msg["Subject"] = f"Re: {digest['Subject']}"
    msg["Message-ID"] = make_msgid(domain="shop.example")
    msg["In-Reply-To"] = str(digest["Message-ID"])
    msg.set_content(html, subtype="html")
    return bytes(msg)


# The client's new text becomes "approve 1"; "reject 2 ..." goes into its quoted history,
# where it must never be read. Whole messages (.eml) are re-addressed as they are; the HTML
# files are bodies, sent as an HTML-only reply.
CLIENT_REPLIES: dict[str, list[tuple[bytes, bytes]]] = {
    "mailgun-talon/tests/fixtures/standard_replies/outlook.eml": [
        (b"\nHello\n", b"\napprove 1\n"),
        (b"Allo! Follow up MIME!", b"approve 1"),
        (b"\nWe will be in touch", b"\nreject 2 wrong info\nWe will be in touch")],
    "mailgun-talon/tests/fixtures/standard_replies/apple_mail.eml": [
        # The part is ISO-8859-1: a reply in French keeps its accents.
        (b"\nHello\n", b"\napprove 1\n\nMerci, tr\xe8s bien.\n"),
        (b"\n> Hi", b"\n> reject 2 wrong info\n> Hi")],
    "mailgun-talon/tests/fixtures/standard_replies/gmail.eml": [
        (b"\nHello\n", b"\napprove 1\n"),
        (b"\nHello<br><br>", b"\napprove 1<br><br>"),
        (b"\n> Hi", b"\n> reject 2 wrong info\n> Hi"),
        (b"\nHi\n\n</blockquote>", b"\nreject 2 wrong info\n\n</blockquote>")],
    "closeio-quotequail/tests/files/gmail_reply.html": [
        (b">foo<div>", b">approve 1<div>"), (b"<div>bar</div>", b"<div>Thanks!</div>"),
        (b"This is the reply", b"reject 2 wrong info")],
    "closeio-quotequail/tests/files/apple_reply.html": [
        (b">Foo<div", b">approve 1<div"),
        (b'Some <b class="">important</b> email', b"reject 2 wrong info")],
    "mailgun-talon/tests/fixtures/html_replies/ms_outlook_2010.html": [
        (b"Hi. I am fine.", b"approve 1"),
        (b"Hello! How are you?", b"reject 2 wrong info")],
}


@needs_fixtures
@pytest.mark.parametrize("relative", sorted(CLIENT_REPLIES))
def test_a_real_client_reply_to_the_webhook_is_applied(mail_world: MailWorld,
                                                       relative: str) -> None:
    world = mail_world
    first, second = world.two_items()
    digest = world.digest()
    edited = fixture_with(relative, *CLIENT_REPLIES[relative])
    raw = html_only_reply(digest, edited.decode("utf-8")) if relative.endswith(".html") \
        else readdress(edited, to=str(digest["Reply-To"]), sender=MANAGER,
                       message_id=make_msgid(domain="shop.example"))

    r = world.post_inbound(raw)

    assert r.status_code == 200, r.text
    assert (r.json()["outcome"], r.json()["applied"], r.json()["refused"]) == ("applied", 1, 0)
    assert world.status(first) == SuggestionStatus.approved
    assert world.status(second) == SuggestionStatus.pending
    assert QUESTION in text_of(world.answered(2))


def with_plain_text(raw: bytes, text: str, *, encode: str) -> bytes:
    """The message with its first text/plain part's body replaced by `text`, written in the
    part's own charset and transfer encoding (`encode`: "7bit" or "quoted-printable")."""
    msg = BytesParser(policy=compat32).parsebytes(raw)
    part: Message = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    charset = part.get_content_charset()
    assert charset is not None
    data = text.replace("\n", "\r\n").encode(charset)
    assert str(part.get("Content-Transfer-Encoding", "7bit")).lower() == encode
    # compat32 writes a str payload as it is: bytes for 7bit are kept by surrogateescape.
    part.set_payload(quopri.encodestring(data).decode("ascii") if encode == "quoted-printable"
                     else data.decode("ascii", "surrogateescape"))
    return msg.as_bytes()


CHARSET_REPLIES: dict[str, tuple[str, str, str]] = {
    # fixture, transfer encoding, the new answer written in that charset's language
    "iso-2022-jp": ("mikel-mail/spec/fixtures/emails/multi_charset/japanese_iso_2022.eml",
                    "7bit", "はい、カナダへは5から8営業日でお届けします。"),
    "windows-1251": ("mikel-mail/spec/fixtures/emails/plain_emails/raw_email_bad_time.eml",
                     "quoted-printable", "Да, мы доставляем в Канаду за 5–8 рабочих дней."),
}


@needs_fixtures
@pytest.mark.parametrize("charset", sorted(CHARSET_REPLIES))
def test_a_reply_in_another_charset_publishes_its_answer_as_written(mail_world: MailWorld,
                                                                    charset: str) -> None:
    world = mail_world
    first, _ = world.two_items()
    digest = world.digest()
    relative, encoding, answer = CHARSET_REPLIES[charset]
    edited = with_plain_text((FIXTURES / relative).read_bytes(), f"edit 1: {answer}\n",
                             encode=encoding)
    raw = readdress(edited, to=str(digest["Reply-To"]), sender=MANAGER,
                    message_id=make_msgid(domain="shop.example"))
    assert answer.encode("utf-8") not in raw  # really sent in that charset

    r = world.post_inbound(raw)

    assert (r.json()["outcome"], r.json()["applied"]) == ("applied", 1), r.json()
    assert world.status(first) == SuggestionStatus.approved
    # Decoded right, or the customers would be served mojibake.
    assert world.answer(QUESTION) == answer
    assert QUESTION in text_of(world.answered(2))
