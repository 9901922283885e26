"""Reading inbound replies: headers, what needs no action, charsets, HTML, quotes, DMARC, keys."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from bot.mail.commands import ReplyCommand, read_commands
from bot.mail.parse import MAX_BYTES, Ignored, is_message, read_mail, reply_key, reply_text
from cli import app as cli_app

TODAY = date(2026, 6, 1)
NEW = "approve 1 3\nreject 2 wrong info"
NEW_EXPECTED = [ReplyCommand("approve", 1), ReplyCommand("approve", 3),
                ReplyCommand("reject", 2, reason="wrong_information")]
# What a digest looks like once quoted: numbered items and the very commands it explains.
DIGEST = """Acme bot - 3 suggestions to review

1. [CRITICAL] New answer - confidence 91/100
   Question: How do I reset my password?
2. [MEDIUM] Improve answer - confidence 74/100
approve 9
reject 8 wrong info

Reply with e.g. "approve 9, reject 8 wrong info"."""


def message(body: str | bytes = NEW, *, headers: str = "", ctype: str = "text/plain",
            charset: str | None = "utf-8", cte: str = "8bit",
            sender: str = "Manager <manager@example.com>") -> bytes:
    head = "".join([
        f"From: {sender}\r\n" if sender else "",
        "To: Autotrain <autotrain+AbCdEfGhIjKlMnOpQr@support.example.com>\r\n",
        "Subject: Re: Acme bot - 3 suggestions to review\r\n",
        "Message-ID: <reply-1@mail.example.com>\r\n",
        "Date: Mon, 01 Jun 2026 09:30:00 +0200\r\n",
        headers,
        f"Content-Type: {ctype}" + (f"; charset={charset}" if charset else "") + "\r\n",
        f"Content-Transfer-Encoding: {cte}\r\n",
    ])
    data = body.encode(charset or "utf-8") if isinstance(body, str) else body
    return head.encode("utf-8") + b"\r\n" + data


def commands_of(raw: bytes) -> list[ReplyCommand]:
    return read_commands(read_mail(raw).text, today=TODAY).commands


def quoted(text: str, mark: str = "> ") -> str:
    return "\n".join(f"{mark}{line}".rstrip() for line in text.split("\n"))


# --- headers ---------------------------------------------------------------------------------


def test_headers_are_read_into_plain_values() -> None:
    raw = message(headers=(
        "Cc: =?utf-8?q?J=C3=BCrgen?= <Juergen@Example.COM>, ops@example.com\r\n"
        "Delivered-To: autotrain+AbCdEfGhIjKlMnOpQr@support.example.com\r\n"
        "X-Original-To: alias@support.example.com\r\n"
        "In-Reply-To: <digest-7@support.example.com>\r\n"
        "References: <digest-6@support.example.com>\r\n <digest-7@support.example.com>\r\n"
    ), sender="=?utf-8?b?QW5uYSBNw7xsbGVy?= <Anna.Mueller@Example.com>")
    mail = read_mail(raw, envelope_to=["Envelope@Support.Example.com"])
    assert mail.sender == "anna.mueller@example.com"
    assert mail.sender_name == "Anna Müller"
    assert mail.subject == "Re: Acme bot - 3 suggestions to review"
    assert mail.message_id == "reply-1@mail.example.com"
    assert mail.in_reply_to == ["digest-7@support.example.com"]
    assert mail.references == ["digest-6@support.example.com", "digest-7@support.example.com"]
    assert mail.date == datetime(2026, 6, 1, 7, 30, tzinfo=UTC)
    assert mail.recipients == ["autotrain+abcdefghijklmnopqr@support.example.com",
                               "juergen@example.com", "ops@example.com",
                               "alias@support.example.com", "envelope@support.example.com"]
    assert mail.ignored is None
    assert mail.text == NEW


def test_duplicate_looking_message_ids_are_one_id_without_brackets() -> None:
    raw = message(headers=(
        "In-Reply-To: <digest-7@support.example.com> (sent by autotrain)\r\n"
        "References: <digest-7@support.example.com>  <digest-7@support.example.com>\r\n"
        " < digest-8@support.example.com >\r\n"
    )).replace(b"Message-ID: <reply-1@mail.example.com>",
               b"Message-ID:   <reply-1@mail.example.com> ")
    mail = read_mail(raw)
    assert mail.message_id == "reply-1@mail.example.com"
    assert mail.in_reply_to == ["digest-7@support.example.com"]
    assert mail.references == ["digest-7@support.example.com", "digest-8@support.example.com"]


def test_missing_or_broken_header_values_are_none_not_errors() -> None:
    raw = message().replace(b"Message-ID: <reply-1@mail.example.com>\r\n", b"").replace(
        b"Date: Mon, 01 Jun 2026 09:30:00 +0200", b"Date: Mon, 30 Jun 3609 99:99:99 +0600")
    mail = read_mail(raw)
    assert mail.message_id is None
    assert mail.date is None
    assert mail.text == NEW


def test_a_date_without_zone_is_taken_as_utc() -> None:
    raw = message().replace(b"+0200", b"-0000")
    assert read_mail(raw).date == datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


def test_a_date_keeps_its_offset() -> None:
    when = read_mail(message()).date
    assert when is not None and when.utcoffset() == timezone(timedelta(hours=2)).utcoffset(None)


# --- what needs no action --------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    "Auto-Submitted: auto-replied",
    "Auto-Submitted: auto-generated (failure)",
    "Precedence: bulk",
    "Precedence: list",
    "Precedence: junk",
    "Precedence: auto_reply",
    "X-Autoreply: yes",
    "X-Autorespond: Vacation",
    "X-Auto-Response-Suppress: All",
    "X-Auto-Response-Suppress: OOF, DR",
    "X-Autogenerated: Reply",
    "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
    "X-FC-MachineGenerated: true",
    "Return-Path: <>",
])
def test_automatic_replies_by_header_get_no_action(header: str) -> None:
    mail = read_mail(message(headers=header + "\r\n"))
    assert mail.ignored is Ignored.auto_reply
    assert mail.text == NEW  # still read, for the log; it is just never applied


@pytest.mark.parametrize("header", [
    "Auto-Submitted: no",
    "X-Auto-Response-Suppress: DR, RN, NRN",
    "Precedence: first-class",
])
def test_headers_that_do_not_mark_automatic_mail_are_not_ignored(header: str) -> None:
    assert read_mail(message(headers=header + "\r\n")).ignored is None


@pytest.mark.parametrize("subject", [
    "Automatic reply: Acme bot - 3 suggestions to review",
    "Auto reply: Acme bot",
    "AutoReply: Acme bot",
    "Out of Office: Acme bot",
    "Out of the office until Monday",
    "Abwesenheitsnotiz: Acme bot",
    "Automatische Antwort: Acme bot",
    "Réponse automatique : Acme bot",
    "Absence du bureau : Acme bot",
    "Respuesta automática: Acme bot",
    "Fuera de la oficina: Acme bot",
    "Risposta automatica: Acme bot",
    "Fuori sede: Acme bot",
    "Automatisch antwoord: Acme bot",
    "Afwezig: Acme bot",
    "Resposta automática: Acme bot",
    "Automatiskt svar: Acme bot",
    "Frånvaro: Acme bot",
    "Automatisk svar: Acme bot",
    "Autosvar: Acme bot",
    "Odpowiedź automatyczna: Acme bot",
    "Automatyczna odpowiedź: Acme bot",
    "自動応答: Acme bot",
    "不在: Acme bot",
    "[EXTERNAL] Out of Office: Acme bot",
])
def test_out_of_office_subjects_in_many_languages_get_no_action(subject: str) -> None:
    raw = message().replace(b"Subject: Re: Acme bot - 3 suggestions to review",
                            f"Subject: {subject}".encode())
    assert read_mail(raw).ignored is Ignored.auto_reply


def test_a_person_writing_about_an_absence_in_a_reply_is_not_an_auto_reply() -> None:
    raw = message().replace(b"Subject: Re: Acme bot - 3 suggestions to review",
                            b"Subject: Re: Out of office answers need review")
    assert read_mail(raw).ignored is None


def test_mail_from_a_no_reply_address_gets_no_action() -> None:
    raw = message(sender="Service <no-reply@vendor.example>")
    assert read_mail(raw).ignored is Ignored.auto_reply


def _report(report_type: str, part: str) -> bytes:
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\napprove 1\r\n"
        f"--b\r\nContent-Type: {part}\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        "--b--\r\n"
    )
    return message(body, ctype=f'multipart/report; report-type={report_type}; boundary="b"',
                   charset=None, cte="7bit")


@pytest.mark.parametrize(("report_type", "part"), [
    ("delivery-status", "message/delivery-status"),
    ("feedback-report", "message/feedback-report"),
    ("disposition-notification", "message/disposition-notification"),
])
def test_delivery_reports_complaints_and_read_receipts_are_bounces(report_type: str,
                                                                     part: str) -> None:
    assert read_mail(_report(report_type, part)).ignored is Ignored.bounce


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx.example.com",
                                    "Mail Delivery System <mailer-daemon@example.com>",
                                    "postmaster@example.org"])
def test_mail_from_mailer_daemons_is_a_bounce(sender: str) -> None:
    assert read_mail(message(sender=sender)).ignored is Ignored.bounce


def test_a_null_sender_with_an_undeliverable_subject_is_a_bounce() -> None:
    raw = message(headers="Return-Path: <>\r\n").replace(
        b"Subject: Re: Acme bot - 3 suggestions to review", b"Subject: Undeliverable: Acme bot")
    assert read_mail(raw).ignored is Ignored.bounce


def test_our_own_mail_coming_back_is_ignored() -> None:
    own = ["Autotrain <Autotrain@Support.Example.com>"]
    assert read_mail(message(sender="autotrain@support.example.com"),
                     own_addresses=own).ignored is Ignored.own_mail
    # Our reply address with its key is ours too.
    assert read_mail(message(sender="autotrain+AbCdEfGhIjKlMnOpQr@support.example.com"),
                     own_addresses=own).ignored is Ignored.own_mail
    assert read_mail(message(headers="X-Autotrain-Mail: digest\r\n")).ignored is (
        Ignored.own_mail)
    assert read_mail(message(), own_addresses=own).ignored is None


def test_a_message_larger_than_the_limit_is_not_read_but_its_sender_is_known() -> None:
    raw = message(NEW + "\n" + "x" * 2000)
    mail = read_mail(raw, max_bytes=1000)
    assert mail.ignored is Ignored.too_large
    assert mail.sender == "manager@example.com"
    assert mail.text == ""
    assert MAX_BYTES == 10 * 1024 * 1024
    assert read_mail(raw).ignored is None


def test_a_message_without_a_sender_is_malformed() -> None:
    mail = read_mail(message(sender=""))
    assert mail.ignored is Ignored.malformed
    assert mail.sender is None


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe garbage \x80\x81",
    b"not an email at all",
    b"From: \r\n\r\n",
    b"From: <@>\r\nContent-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
    b"From: a@b.c\r\nContent-Type: text/plain; charset=\"\r\n\r\n\xff\xfe",
    b"From: a@b.c\r\nSubject: =?utf-8?b?!!!?= =?x-nonsense?q?=ZZ?=\r\n\r\napprove 1",
])
def test_bad_input_never_raises(raw: bytes) -> None:
    mail = read_mail(raw)
    assert mail.ignored in set(Ignored) or mail.ignored is None


def test_random_bytes_never_raise() -> None:
    rng = random.Random(7)
    base = message(quoted(DIGEST))
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 40)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        mail = read_mail(bytes(data))
        assert isinstance(mail.text, str)


def test_a_reply_with_only_the_quote_has_no_text() -> None:
    body = f"On Mon, 1 Jun 2026 at 09:00, Autotrain <autotrain@support.example.com> wrote:\n\n" \
           f"{quoted(DIGEST)}\n"
    mail = read_mail(message(body))
    assert mail.ignored is Ignored.no_text
    assert mail.text == ""
    assert "approve 9" in mail.full_text  # kept for the log only


# --- charsets and encodings ------------------------------------------------------------------


@pytest.mark.parametrize(("charset", "greeting"), [
    ("iso-2022-jp", "よろしくお願いします"),
    ("shift_jis", "確認しました"),
    ("windows-1251", "Спасибо, всё верно"),
    ("ks_c_5601-1987", "확인했습니다"),
    ("euc-kr", "확인했습니다"),
    ("iso-8859-1", "Grüße aus Köln"),
    ("big5", "謝謝"),
    ("gb2312", "谢谢"),
])
def test_replies_in_other_charsets_are_decoded(charset: str, greeting: str) -> None:
    python_codec = {"ks_c_5601-1987": "cp949"}.get(charset, charset)
    body = f"{greeting}\n{NEW}\n\n> approve 9\n".encode(python_codec)
    mail = read_mail(message(body, charset=charset))
    assert mail.text == f"{greeting}\n{NEW}"
    assert commands_of(message(body, charset=charset)) == NEW_EXPECTED


def test_an_encoded_subject_in_a_japanese_charset_is_decoded() -> None:
    subject = "Re: 確認".encode("iso-2022-jp")
    raw = message().replace(b"Subject: Re: Acme bot - 3 suggestions to review",
                            b"Subject: =?iso-2022-jp?b?" + base64.b64encode(subject) + b"?=")
    assert read_mail(raw).subject == "Re: 確認"


def test_an_unknown_charset_is_read_as_utf8_or_windows_1252_without_failing() -> None:
    body = NEW.encode() + b"\n\xe9t\xe9\n"
    mail = read_mail(message(body, charset="x-made-up"))
    assert mail.ignored is None
    assert mail.text == NEW + "\nété"
    assert commands_of(message(body, charset="x-made-up")) == NEW_EXPECTED


def test_undecodable_bytes_in_a_known_charset_become_replacement_characters() -> None:
    mail = read_mail(message(NEW.encode() + b"\n\x85\x40 ok\n", charset="shift_jis"))
    assert mail.text.startswith(NEW + "\n") and "\ufffd" in mail.text


def test_eight_bit_text_without_a_charset_is_read_as_windows_1252() -> None:
    mail = read_mail(message(b"Merci \xe0 vous\n" + NEW.encode(), charset=None))
    assert mail.text.startswith("Merci à vous")


def test_quoted_printable_and_base64_bodies_are_decoded() -> None:
    qp = message(b"Gr=C3=BC=C3=9Fe,\r\napprove 1 3\r\nreject 2 wrong =\r\ninfo\r\n",
                 cte="quoted-printable")
    assert read_mail(qp).text == "Grüße,\n" + NEW
    b64 = message(base64.encodebytes(("Grüße,\n" + NEW).encode("latin-1")),
                  charset="iso-8859-1", cte="base64")
    assert read_mail(b64).text == "Grüße,\n" + NEW


def test_a_flowed_long_line_is_read_as_one_line() -> None:
    body = ("reject 2 because the price changed last week and the new \r\n"
            "one is on the website\r\n\r\n> approve 9\r\n")
    raw = message(body, ctype="text/plain; format=flowed").replace(
        b"; format=flowed; charset=utf-8", b"; charset=utf-8; format=flowed")
    [command] = commands_of(raw)
    assert command.comment == ("because the price changed last week and the new one is on the "
                               "website")


def test_attachments_and_attached_messages_are_not_read() -> None:
    body = (
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\napprove 1\r\n"
        "--b\r\nContent-Type: text/plain; name=notes.txt\r\n"
        "Content-Disposition: attachment; filename=notes.txt\r\n\r\napprove 5\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y.z\r\nSubject: old\r\n\r\n"
        "approve 6\r\n--b--\r\n"
    )
    raw = message(body, ctype='multipart/mixed; boundary="b"', charset=None, cte="7bit")
    assert commands_of(raw) == [ReplyCommand("approve", 1)]


# --- HTML-only replies -----------------------------------------------------------------------

HTML_NEW = "<div>approve 1 3</div><div>reject 2 wrong info</div>"
HTML_DIGEST = "<div>1. [CRITICAL] Reset password</div><div>approve 9</div><div>reject 8</div>"

HTML_REPLIES = {
    "gmail": f"""<div dir="ltr">{HTML_NEW}</div><br><div class="gmail_quote"><div dir="ltr"
        class="gmail_attr">On Mon, Jun 1, 2026 at 9:00 AM Autotrain &lt;a@support.example.com&gt;
        wrote:<br></div><blockquote class="gmail_quote" style="margin:0 0 0 .8ex">{HTML_DIGEST}
        </blockquote></div>""",
    "outlook": f"""<html><body><div>{HTML_NEW}</div><div id="appendonsend"></div>
        <hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr"><b>From:</b>
        Autotrain &lt;a@support.example.com&gt;<br><b>Sent:</b> Monday, June 1, 2026 9:00<br>
        <b>To:</b> Manager<br><b>Subject:</b> digest</div><div>{HTML_DIGEST}</div></body></html>""",
    "outlook-desktop": f"""<div class="WordSection1"><p class="MsoNormal">approve 1 3</p>
        <p class="MsoNormal">reject 2 wrong info</p><div style="border:none;border-top:solid
        #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>Von:</b> Autotrain
        <br><b>Gesendet:</b> Montag, 1. Juni 2026 09:00<br><b>An:</b> Manager<br>
        <b>Betreff:</b> Digest</p></div><p>{HTML_DIGEST}</p></div>""",
    "thunderbird": f"""<html><body><p>{HTML_NEW}</p><div class="moz-cite-prefix">On 01/06/2026
        09:00, Autotrain wrote:<br></div><blockquote type="cite" cite="mid:x@y">{HTML_DIGEST}
        </blockquote></body></html>""",
    "apple": f"""<html><body>{HTML_NEW}<div><br><blockquote type="cite"><div>On 1 Jun 2026,
        at 09:00, Autotrain &lt;a@support.example.com&gt; wrote:</div>{HTML_DIGEST}</blockquote>
        </div></body></html>""",
    "yahoo": f"""<html><body><div>{HTML_NEW}</div><div class="ydp3f5yahoo_quoted"
        id="ydp3f5yahoo_quoted_1"><div>On Monday, June 1, 2026, 09:00:00 AM GMT+2, Autotrain
        &lt;a@support.example.com&gt; wrote:</div>{HTML_DIGEST}</div></body></html>""",
    "gmx": f"""<html><body><div>{HTML_NEW}</div><div name="quote"><b>Gesendet:</b> Montag<br>
        <b>Von:</b> Autotrain<br>{HTML_DIGEST}</div></body></html>""",
    "zimbra": f"""<html><body><div>{HTML_NEW}</div><hr id="zwchr" data-marker="__DIVIDER__">
        <div data-marker="__HEADERS__"><b>From: </b>Autotrain<br><b>Sent: </b>Monday</div>
        <div data-marker="__QUOTED_TEXT__">{HTML_DIGEST}</div></body></html>""",
    "hotmail": f"""<html><body><div>{HTML_NEW}<hr id="stopSpelling">Date: Mon, 1 Jun 2026<br>
        Subject: digest<br>From: a@support.example.com<br>{HTML_DIGEST}</div></body></html>""",
}


@pytest.mark.parametrize("client", sorted(HTML_REPLIES))
def test_html_only_replies_are_read_without_their_quote(client: str) -> None:
    raw = message(HTML_REPLIES[client], ctype="text/html")
    mail = read_mail(raw)
    assert mail.ignored is None
    # Paragraphs may come out with a blank line between them; the lines are the same.
    assert [line for line in mail.text.split("\n") if line] == NEW.split("\n")
    assert commands_of(raw) == NEW_EXPECTED


def test_html_text_below_a_quote_is_new_text() -> None:
    html = (f"<div>Hi,</div><blockquote type='cite'>{HTML_DIGEST}</blockquote>"
            "<div>approve 1</div><style>.x{color:red}</style><script>approve(5)</script>")
    assert commands_of(message(html, ctype="text/html")) == [ReplyCommand("approve", 1)]


def test_the_plain_part_is_preferred_over_html() -> None:
    body = ("--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\napprove 1\r\n"
            "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>approve 2</p>\r\n--b--\r\n")
    raw = message(body, ctype='multipart/alternative; boundary="b"', charset=None, cte="7bit")
    assert commands_of(raw) == [ReplyCommand("approve", 1)]


def test_an_empty_plain_part_falls_back_to_html() -> None:
    body = ("--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n \r\n"
            "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>approve 2</p>\r\n--b--\r\n")
    raw = message(body, ctype='multipart/alternative; boundary="b"', charset=None, cte="7bit")
    assert commands_of(raw) == [ReplyCommand("approve", 2)]


# --- plain-text replies from common clients --------------------------------------------------

D = quoted(DIGEST)
PLAIN_REPLIES = {
    "gmail": f"{NEW}\n\nOn Mon, Jun 1, 2026 at 9:00 AM Autotrain <a@support.example.com> "
             f"wrote:\n\n{D}",
    "gmail wrapped header": f"{NEW}\n\nOn Mon, Jun 1, 2026 at 9:00 AM Autotrain Support <\n"
                            f"autotrain+AbCdEfGhIjKlMnOpQr@support.example.com> wrote:\n\n{D}",
    "header on three lines": f"{NEW}\n\nOn Mon, Jun 1, 2026 at 9:00 AM, Autotrain\n"
                             f"<a@support.example.com>\nwrote:\n\n{D}",
    "outlook": f"{NEW}\n\n________________________________\nFrom: Autotrain "
               f"<a@support.example.com>\nSent: Monday, June 1, 2026 9:00 AM\nTo: Manager\n"
               f"Subject: digest\n\n{DIGEST}",
    "outlook without rule": f"{NEW}\n\nFrom: Autotrain [mailto:a@support.example.com]\n"
                            f"Sent: Monday, June 1, 2026 9:00 AM\nTo: Manager\nSubject: digest"
                            f"\n\n{DIGEST}",
    "outlook bold": f"{NEW}\n\n*From:* Autotrain <a@support.example.com>\n*Sent:* Monday\n"
                    f"*To:* Manager\n*Subject:* digest\n\n{DIGEST}",
    "outlook german": f"{NEW}\n\nVon: Autotrain <a@support.example.com>\nGesendet: Montag, 1. "
                      f"Juni 2026 09:00\nAn: Manager\nBetreff: Digest\n\n{DIGEST}",
    "outlook french": f"{NEW}\n\nDe : Autotrain <a@support.example.com>\nEnvoyé : lundi 1 juin"
                      f" 2026 09:00\nÀ : Manager\nObjet : Digest\n\n{DIGEST}",
    "outlook spanish": f"{NEW}\n\nDe: Autotrain <a@support.example.com>\nEnviado: lunes, 1 de "
                       f"junio de 2026 9:00\nPara: Manager\nAsunto: Digest\n\n{DIGEST}",
    "outlook dutch": f"{NEW}\n\nVan: Autotrain <a@support.example.com>\nVerzonden: maandag 1 "
                     f"juni 2026 09:00\nAan: Manager\nOnderwerp: Digest\n\n{DIGEST}",
    "outlook polish": f"{NEW}\n\nOd: Autotrain <a@support.example.com>\nWysłano: poniedziałek, "
                      f"1 czerwca 2026 09:00\nDo: Manager\nTemat: Digest\n\n{DIGEST}",
    "outlook swedish": f"{NEW}\n\nFrån: Autotrain <a@support.example.com>\nSkickat: den 1 juni"
                       f" 2026 09:00\nTill: Manager\nÄmne: Digest\n\n{DIGEST}",
    "original message": f"{NEW}\n\n-----Original Message-----\nFrom: Autotrain\n\n{DIGEST}",
    "samsung": f"{NEW}\n\n-------- Original message --------\nFrom: Autotrain "
               f"<a@support.example.com>\nDate: 01/06/2026 09:00 (GMT+01:00)\n\n{DIGEST}",
    "gmail forward": f"{NEW}\n\n---------- Forwarded message ---------\nFrom: Autotrain\n"
                     f"\n{DIGEST}",
    "apple forward": f"{NEW}\n\nBegin forwarded message:\n\n{DIGEST}",
    "apple": f"{NEW}\n\n> On 1 Jun 2026, at 09:00, Autotrain <a@support.example.com> wrote:\n"
             f">\n{D}",
    "iphone": f"{NEW}\n\nSent from my iPhone\n\n{DIGEST}",
    "outlook mobile": f"{NEW}\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n{DIGEST}",
    "signature": f"{NEW}\n\n-- \nAnna Müller\nHead of Support\n\n{DIGEST}",
    "yahoo unmarked": f"{NEW}\n\n\n    On Monday, June 1, 2026, 09:00:00 AM GMT+2, Autotrain "
                      f"<a@support.example.com> wrote:\n\n\n{DIGEST}",
    "yahoo dashes": f"{NEW}\n\n--- On Mon, 6/1/26, Autotrain <a@support.example.com> wrote:\n"
                    f"\n{DIGEST}",
    "thunderbird name only": f"{NEW}\n\nOn 01/06/2026 09:00, Autotrain wrote:\n{D}",
    "german": f"{NEW}\n\nAm Mo., 1. Juni 2026 um 09:00 Uhr schrieb Autotrain <a@b.example>:\n\n"
              f"{D}",
    "german unmarked": f"{NEW}\n\nAm 01.06.2026 um 09:00 schrieb Autotrain:\n{DIGEST}",
    "french": f"{NEW}\n\nLe lun. 1 juin 2026 à 09:00, Autotrain <a@b.example> a écrit :\n\n{D}",
    "spanish": f"{NEW}\n\nEl lun, 1 jun 2026 a las 9:00, Autotrain (<a@b.example>) escribió:\n"
               f"\n{D}",
    "italian": f"{NEW}\n\nIl giorno lun 1 giu 2026 alle ore 09:00 Autotrain <a@b.example> ha "
               f"scritto:\n\n{D}",
    "dutch": f"{NEW}\n\nOp ma 1 jun 2026 om 09:00 schreef Autotrain <a@b.example>:\n\n{D}",
    "portuguese": f"{NEW}\n\nEm seg., 1 de jun. de 2026 às 09:00, Autotrain <a@b.example> "
                  f"escreveu:\n\n{D}",
    "swedish": f"{NEW}\n\nDen mån 1 juni 2026 kl 09:00 skrev Autotrain <a@b.example>:\n\n{D}",
    "danish": f"{NEW}\n\nDen man. 1. jun. 2026 kl. 09.00 skrev Autotrain <a@b.example>:\n\n{D}",
    "polish": f"{NEW}\n\npon., 1 cze 2026 o 09:00 Autotrain <a@b.example> napisał(a):\n\n{D}",
    "japanese": f"{NEW}\n\n2026年6月1日(月) 9:00 Autotrain <a@b.example>:\n\n{D}",
    "russian": f"{NEW}\n\nпн, 1 июн. 2026 г. в 09:00, Autotrain <a@b.example>:\n\n{D}",
    "chinese": f"{NEW}\n\nAutotrain <a@b.example> 于2026年6月1日周一 09:00写道：\n\n{D}",
    "korean": f"{NEW}\n\n2026년 6월 1일 (월) 오전 9:00, Autotrain <a@b.example>님이 작성:\n\n{D}",
    "lotus notes": f"{NEW}\n\nAutotrain <a@b.example> wrote on 01/06/2026 09:00:00:\n\n{DIGEST}",
    "deeply quoted": f"{NEW}\n\n{quoted(quoted(DIGEST), '>')}",
    "quote without header": f"{NEW}\n{D}",
    "caution banner": f"CAUTION: This email originated from outside of the organization.\n\n"
                      f"{NEW}\n\n{D}",
    "zoho": f"{NEW}\n\n---- On Mon, 01 Jun 2026 09:00:00 +0200 Autotrain <a@b.example> wrote "
            f"----\n\n{DIGEST}",
    "header broken over blank lines": f"{NEW}\n\nOn Mon, 1 Jun 2026 at 09:00 Autotrain\n\n<\n"
                                      f"mailto:Autotrain <a@b.example>\n> wrote:\n\n\n{DIGEST}",
    "german wrapped": f"{NEW}\n\nAutotrain <a@b.example> schrieb am Mo., 1.\nJuni 2026 um "
                      f"09:00 Uhr:\n\n{D}",
    "russian wrapped": f"{NEW}\n\n1 июн. 2026 г. 9:00 пользователь \"Autotrain\" <\n"
                       f"a@b.example> написал:\n\n{D}",
    "pipe quoted": f"{NEW}\n\n2026/6/1 Autotrain <a@b.example>\n\n{quoted(DIGEST, '| ')}",
    "supercite": f"{NEW}\n\n{quoted(DIGEST, 'AT> ')}",
}


@pytest.mark.parametrize("client", sorted(PLAIN_REPLIES))
def test_plain_replies_from_common_clients_are_read_without_their_quote(client: str) -> None:
    raw = message(PLAIN_REPLIES[client])
    mail = read_mail(raw)
    assert mail.ignored is None
    assert commands_of(raw) == NEW_EXPECTED, mail.text
    assert mail.text == NEW, mail.text


def test_text_written_below_and_between_quotes_is_new() -> None:
    body = ("On Mon, Jun 1, 2026 at 9:00 AM Autotrain <a@support.example.com> wrote:\n"
            "> 1. [CRITICAL] Reset password\n\napprove 1\n\n> 2. [MEDIUM] Opening hours\n"
            "> approve 9\n\nreject 2 wrong info\n")
    raw = message(body)
    assert commands_of(raw) == [ReplyCommand("approve", 1),
                                ReplyCommand("reject", 2, reason="wrong_information")]


def test_nothing_after_an_unmarked_header_is_read_even_below_a_quote() -> None:
    body = ("approve 1\n\n> quoted\n\nFrom: Autotrain <a@support.example.com>\n"
            "Sent: Monday\nTo: Manager\nSubject: digest\n\napprove 9\n")
    assert commands_of(message(body)) == [ReplyCommand("approve", 1)]


def test_an_answer_with_from_and_to_lines_is_not_taken_for_a_header() -> None:
    body = "edit 4: Our hours\nFrom: 9am\nTo: 5pm\n\n> approve 9\n"
    [command] = commands_of(message(body))
    assert command.answer == "Our hours\nFrom: 9am\nTo: 5pm"


def test_a_sentence_mentioning_what_someone_wrote_is_not_a_header() -> None:
    body = "reject 2 as Anna wrote:\nthe price changed\n"
    assert reply_text(body) == "reject 2 as Anna wrote:\nthe price changed"


def test_signatures_and_closings_are_not_new_text() -> None:
    body = f"Hi team,\n\n{NEW}\n\nBest regards,\nAnna Müller\nHead of Support\n+49 30 1234567"
    assert reply_text(body) == f"Hi team,\n\n{NEW}"


def test_a_command_after_thanks_is_not_taken_for_a_signature() -> None:
    body = "Thanks!\napprove 1\n\n> approve 9"
    assert reply_text(body) == "Thanks!\napprove 1"


def test_a_reply_that_is_only_thanks_keeps_it() -> None:
    mail = read_mail(message(f"Thank you.\n\n{D}"))
    assert (mail.text, mail.ignored) == ("Thank you.", None)


def test_a_disclaimer_below_the_reply_is_not_new_text() -> None:
    body = (f"{NEW}\n\nThis e-mail is confidential and may be privileged. If you are not the "
            f"intended recipient, please delete it.\n")
    assert reply_text(body) == NEW


def test_a_body_that_starts_with_a_quoted_header_block_has_no_new_text() -> None:
    body = "From: Autotrain <a@support.example.com>\nSent: Monday\nSubject: digest\n\napprove 9"
    assert reply_text(body) == ""


# --- DMARC from our own server only ----------------------------------------------------------

OURS = "mx.support.example.com"


def _with_auth(*values: str) -> bytes:
    return message(headers="".join(f"Authentication-Results: {v}\r\n" for v in values))


def test_dmarc_is_taken_from_our_own_servers_header() -> None:
    mail = read_mail(_with_auth(
        f"{OURS}; dkim=pass header.d=example.com; spf=pass smtp.mailfrom=example.com;\r\n"
        "\tdmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com"))
    assert mail.dmarc(OURS) == "pass"
    assert mail.dmarc(OURS.upper()) == "pass"


def test_a_forged_header_from_another_server_is_not_trusted() -> None:
    mail = read_mail(_with_auth("evil.example; dmarc=pass header.from=example.com",
                                f"{OURS}; dmarc=fail (p=REJECT) header.from=example.com"))
    assert mail.dmarc(OURS) == "fail"
    assert read_mail(_with_auth("evil.example; dmarc=pass")).dmarc(OURS) is None
    assert read_mail(message()).dmarc(OURS) is None


def test_our_servers_topmost_header_wins_over_a_forged_copy_below() -> None:
    # Our server adds its header on top; a sender can only have put one further down.
    mail = read_mail(_with_auth(f"{OURS}; dmarc=fail header.from=example.com",
                                f"{OURS}; dmarc=pass header.from=example.com"))
    assert mail.dmarc(OURS) == "fail"
    assert len(mail.authentication_results) == 2


def test_our_header_without_a_dmarc_result_says_none() -> None:
    mail = read_mail(_with_auth(f"{OURS} 1; spf=pass smtp.mailfrom=example.com"))
    assert mail.dmarc(OURS) == "none"


def test_comments_in_authentication_results_do_not_confuse_the_reader() -> None:
    mail = read_mail(_with_auth(
        f"{OURS} (dmarc=pass is what evil wanted); spf=fail (dmarc=pass); dmarc=fail"))
    assert mail.dmarc(OURS) == "fail"


# --- reply keys ------------------------------------------------------------------------------

TEMPLATE = "autotrain+{key}@support.example.com"
KEY = "AbCdEfGhIjKlMnOp_-12"


def test_the_reply_key_is_read_from_the_address_that_fits_the_template() -> None:
    assert reply_key(["ops@example.com", f"autotrain+{KEY}@support.example.com"], TEMPLATE) == KEY


def test_the_text_around_the_key_matches_in_any_case_and_the_key_keeps_its_case() -> None:
    assert reply_key([f"AutoTrain+{KEY}@Support.EXAMPLE.com"], TEMPLATE) == KEY
    assert reply_key([f'"Autotrain" <autotrain+{KEY}@support.example.com>'], TEMPLATE) == KEY


@pytest.mark.parametrize("addresses", [
    ["autotrain+short@support.example.com"],
    [f"autotrain+{KEY}@support.example.com.evil.example"],
    [f"other+{KEY}@support.example.com"],
    [f"autotrain+{KEY}!@support.example.com"],
    [f"autotrain+{'a' * 65}@support.example.com"],
    [],
])
def test_addresses_that_do_not_fit_give_no_key(addresses: list[str]) -> None:
    assert reply_key(addresses, TEMPLATE) is None


@pytest.mark.parametrize("template", ["autotrain@support.example.com",
                                      "{key}+{key}@support.example.com", ""])
def test_a_template_without_one_key_gives_no_key(template: str) -> None:
    assert reply_key([f"autotrain+{KEY}@support.example.com"], template) is None


def test_the_first_fitting_address_wins() -> None:
    other = "ZyXwVuTsRqPoNmLkJiHg"
    assert reply_key([f"autotrain+{other}@support.example.com",
                      f"autotrain+{KEY}@support.example.com"], TEMPLATE) == other


# --- autotrain email parse -------------------------------------------------------------------


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli_app, ["email", "parse", *args])


def test_cli_prints_what_a_message_would_do(tmp_path: Path) -> None:
    eml = tmp_path / "reply.eml"
    # "approve x" below the quote is new text too (a bottom post), and cannot be read.
    eml.write_bytes(message(PLAIN_REPLIES["gmail"] + "\napprove x"))
    result = _cli(str(eml))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out == {
        "text": NEW + "\n\napprove x",
        "commands": [{"action": "approve", "item": 1}, {"action": "approve", "item": 3},
                     {"action": "reject", "item": 2, "reason": "wrong_information"}],
        "problems": ['"approve x": x is not an item number'], "ignored": None,
        "sender": "manager@example.com",
        "message_id": "reply-1@mail.example.com",
        "subject": "Re: Acme bot - 3 suggestions to review"}


def test_cli_reads_a_plain_text_reply_without_headers(tmp_path: Path) -> None:
    body = tmp_path / "reply.txt"
    body.write_text("Grüße,\napprove 2\napprove zwei\n\n> approve 9\n", encoding="utf-8")
    out = json.loads(_cli(str(body)).stdout)
    assert out["text"] == "Grüße,\napprove 2\napprove zwei"
    assert out["commands"] == [{"action": "approve", "item": 2}]
    assert out["problems"] == ['"approve zwei": zwei is not an item number']
    assert (out["ignored"], out["sender"], out["message_id"]) == (None, None, None)


def test_cli_shows_no_commands_for_a_message_that_gets_no_action(tmp_path: Path) -> None:
    eml = tmp_path / "ooo.eml"
    eml.write_bytes(message(headers="Auto-Submitted: auto-replied\r\n"))
    out = json.loads(_cli(str(eml)).stdout)
    assert out["ignored"] == "auto_reply"
    assert out["commands"] == [] and out["text"] == NEW


def test_cli_says_why_a_file_cannot_be_read(tmp_path: Path) -> None:
    result = _cli(str(tmp_path / "missing.eml"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr and "missing.eml" in result.stderr
    assert _cli(str(tmp_path)).exit_code == 2


def test_headers_at_the_top_make_a_message_and_text_does_not() -> None:
    assert is_message(message())
    assert is_message(b"\r\nSubject: hi\r\n\r\napprove 1")
    assert not is_message(b"approve 1\n\nFrom: Autotrain <a@b.example>\nSent: Monday\n")
    assert not is_message("Grüße: approve 1".encode())
    assert not is_message(b"")


@pytest.mark.parametrize("line", [
    "reject 2 confidential: not for the intended recipient of the answer",
    "reject 2 as Anna wrote on 2026-05-30:",
    "approve 3 -- thanks",
])
def test_a_command_line_is_never_taken_for_history(line: str) -> None:
    assert reply_text(f"{line}\n\n> approve 9\n") == line
