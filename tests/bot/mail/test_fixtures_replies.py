"""Real replies from many mail clients: commands in the new text are read, quoted ones never."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import date
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

import pytest

from bot.mail.commands import ReplyCommand, read_commands
from bot.mail.parse import Ignored, InboundMail, read_mail
from tests.helpers import EMAIL_FIXTURES

FIXTURES = EMAIL_FIXTURES
TODAY = date(2026, 6, 1)

NEW_COMMANDS = "approve 1 3\nreject 2 wrong info"
NEW_EXPECTED = [ReplyCommand("approve", 1), ReplyCommand("approve", 3),
                ReplyCommand("reject", 2, reason="wrong_information")]
OLD_COMMANDS = ["approve 9", "reject 8"]  # put in the quoted history: must never be read

# Every real reply among the fixtures: plain-text bodies, HTML bodies and whole messages
# (the quotequail "*_unwrapped*" files are that project's expected outputs, not messages;
# bounces, auto-replies, a no-reply notice and a message without From are tested apart).
REPLY_GLOBS = [
    "mailgun-talon/tests/fixtures/standard_replies/*.eml",
    "mailgun-talon/tests/fixtures/reply-quotations-share-block.eml",
    "mailgun-talon/tests/fixtures/html_replies/*.html",
    "mailgun-talon/tests/fixtures/reply-separated-by-hr.html",
    "closeio-quotequail/tests/files/*.html",
    "github-email_reply_parser/test/emails/*.txt",
    "alfonsrv-mail-parser-reply/test/emails/*.txt",
    "mikel-mail/spec/fixtures/emails/multi_charset/*.eml",
    "mikel-mail/spec/fixtures/emails/plain_emails/*.eml",
    "mikel-mail/spec/fixtures/emails/error_emails/content_transfer_encoding_empty.eml",
    "mailgun-flanker/tests/fixtures/messages/8bitmime.eml",
    "mailgun-flanker/tests/fixtures/messages/bilingual-simple.eml",
    "mailgun-flanker/tests/fixtures/messages/russian-attachment-yahoo.eml",
    "mailgun-flanker/tests/fixtures/messages/no-ctype.eml",
    "sisimai-set-of-emails/maildir/not/is-not-bounce-*.eml",
]


def _reply_files() -> list[str]:
    if not FIXTURES.is_dir():
        return []
    found: list[str] = []
    for pattern in REPLY_GLOBS:
        found += sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob(pattern)
                        if "_unwrapped" not in p.name)
    return found


REPLIES = _reply_files()
needs_fixtures = pytest.mark.skipif(not REPLIES, reason=f"no email fixtures at {FIXTURES}")


# --- building a reply from a fixture ---------------------------------------------------------

# Where quoted history starts in a plain-text body, told without the parser under test:
# a separator, an Outlook-style header block, or an attribution line ending in ":".
_SEPARATOR = re.compile(r"^\s*(?:-{5,}|_{10,}).*$|^\s*begin forwarded message", re.IGNORECASE)
_HEADER_KEY = re.compile(
    r"^\s*\*?(?:from|von|fra|van|od|de|от|från|sent|date|to|subject|gesendet|an|betreff|sendt|"
    r"til|emne|verzonden|aan|onderwerp|wysłano|temat|do|cc)\*?\s*:", re.IGNORECASE)
_ATTRIBUTION_END = re.compile(r"(?:wrote|schrieb|skrev|écrit|napisał\(a\)|написал|"
                              r"[>)]|\d{4}|<[^>]*)\s*[:：]?\s*$", re.IGNORECASE)


def _history_start(lines: list[str]) -> int | None:
    """The first line of unmarked (not ">"-quoted) history, if the body has any."""
    for i, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            return None  # marked history comes first: the quoted injection covers it
        following = [ln for ln in lines[i + 1:i + 4] if ln.strip()]
        if _SEPARATOR.match(line) and (
                re.search(r"original|forward|message|meddelelse", line, re.IGNORECASE)
                or any(_HEADER_KEY.match(ln) for ln in following[:2])):
            return i
        block = [ln for ln in lines[i:i + 4] if _HEADER_KEY.match(ln)]
        if _HEADER_KEY.match(line) and len(block) >= 2:
            return i
        if re.match(r"^\W*(?:on|am|le|den|dnia|\d)", line.strip(), re.IGNORECASE):
            # An attribution, maybe wrapped: find the line that ends it.
            for end in range(i, min(i + 4, len(lines))):
                if re.search(r"(?:wrote|schrieb|skrev|napisał\(a\)|написал)\b[^:]{0,80}:\s*$",
                             lines[end]) or re.search(r"\bwrote\s*-{2,}\s*$", lines[end]):
                    after = [ln for ln in lines[end + 1:end + 6] if ln.strip()]
                    # Above a ">" block it is marked history (a bottom post may follow it).
                    return None if after and after[0].lstrip().startswith(">") else i
    return None


def inject_text(body: str) -> tuple[str, bool]:
    """The body with NEW_COMMANDS on top and OLD_COMMANDS inside its quoted history (inside
    the first ">"-quoted block, and right after an unmarked history header); whether any
    history was found to put them in."""
    lines = body.replace("\r\n", "\n").split("\n")
    quoted = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith(">")), None)
    unmarked = _history_start(lines)
    out = list(lines)
    if unmarked is not None:
        # After the header block (its first blank line), where the old message's text is.
        end = next((j for j in range(unmarked + 1, len(lines)) if not lines[j].strip()),
                   unmarked)
        out[end + 1:end + 1] = OLD_COMMANDS
    if quoted is not None:
        prefix = re.match(r"^\s*(>[> ]*)", lines[quoted])
        mark = prefix.group(1) if prefix else "> "
        at = quoted + (len(OLD_COMMANDS) if unmarked is not None and unmarked < quoted else 0)
        out[at:at] = [f"{mark}{c}" for c in OLD_COMMANDS]
    return NEW_COMMANDS + "\n\n" + "\n".join(out), quoted is not None or unmarked is not None


_QUOTE_CONTAINER = re.compile(
    r"<(?:blockquote|div)\b[^>]*(?:blockquote|gmail_quote|yahoo_quoted|moz-forward-container|"
    r"divRplyFwdMsg)[^>]*>|<blockquote\b[^>]*>", re.IGNORECASE)
_HTML_HISTORY = re.compile(r"(?:From|От|От кого|Von|De)\s*(?:</[^>]+>\s*)*:|-{5,}", re.IGNORECASE)


def inject_html(html: str) -> tuple[str, bool]:
    """The HTML with NEW_COMMANDS at the top of its body and OLD_COMMANDS inside its quoted
    block (a blockquote or a client's quote container), else at the very end when the history
    is an Outlook-style block that runs to the end."""
    new = "<div>" + NEW_COMMANDS.replace("\n", "<br>") + "</div>"
    old = "<div>" + "<br>".join(OLD_COMMANDS) + "</div>"
    body = re.search(r"<body\b[^>]*>", html, re.IGNORECASE)
    html = (html[:body.end()] + new + html[body.end():]) if body else new + html
    container = _QUOTE_CONTAINER.search(html)
    if container:
        return html[:container.end()] + old + html[container.end():], True
    if _HTML_HISTORY.search(html[len(new):]):
        end = re.search(r"</body>", html, re.IGNORECASE)
        return (html[:end.start()] + old + html[end.start():]) if end else html + old, True
    return html, False


def _message(body: bytes, ctype: str) -> bytes:
    return (b"From: Manager <manager@example.com>\r\n"
            b"To: autotrain+AbCdEfGhIjKlMnOpQr@support.example.com\r\n"
            b"Subject: Re: 3 suggestions to review\r\n"
            b"Message-ID: <reply-1@example.com>\r\n"
            b"Content-Type: " + ctype.encode() + b"; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(body))


def _first_body_part(msg: Message) -> Message | None:
    parts = [p for p in msg.walk() if not p.is_multipart()
             and str(p.get("Content-Disposition") or "").split(";")[0].strip() != "attachment"]
    for ctype in ("text/plain", "text/html"):
        for part in parts:
            if part.get_content_type() == ctype:
                return part
    return None


def _set_text(part: Message, text: str) -> None:
    charset = part.get_content_charset() or "utf-8"
    try:
        data = text.encode(charset)
    except (LookupError, UnicodeEncodeError):
        data, charset = text.encode("utf-8"), "utf-8"
    del part["Content-Transfer-Encoding"]
    part["Content-Transfer-Encoding"] = "base64"
    part.set_param("charset", charset)
    part.set_payload(base64.encodebytes(data).decode("ascii"))


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True) or b""
    for charset in (part.get_content_charset(), "utf-8", "cp949", "cp932", "latin-1"):
        try:
            return data.decode(charset or "utf-8")
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


@dataclass
class Built:
    raw: bytes
    has_history: bool


def build_reply(relative: str) -> Built:
    path = FIXTURES / relative
    data = path.read_bytes()
    if path.suffix == ".txt":
        text, history = inject_text(data.decode("utf-8"))
        return Built(_message(text.encode(), "text/plain"), history)
    if path.suffix == ".html":
        html, history = inject_html(data.decode("utf-8", "replace"))
        return Built(_message(html.encode(), "text/html"), history)
    msg = BytesParser(policy=compat32).parsebytes(re.sub(rb"\A(?:[ \t]*\r?\n)+", b"", data))
    part = _first_body_part(msg)
    assert part is not None, f"{relative} has no text part to reply in"
    if part.get_content_type() == "text/html":
        text, history = inject_html(_part_text(part))
    else:
        text, history = inject_text(_part_text(part))
    _set_text(part, text)
    return Built(msg.as_bytes(), history)


def check_reply(relative: str) -> tuple[InboundMail, list[ReplyCommand], list[str]]:
    built = build_reply(relative)
    mail = read_mail(built.raw)
    read = read_commands(mail.text, today=TODAY)
    return mail, read.commands, read.problems


# --- (a) replies -----------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("relative", REPLIES)
def test_commands_above_the_quote_are_read_and_quoted_ones_never(relative: str) -> None:
    mail, commands, problems = check_reply(relative)
    assert mail.ignored is None, (relative, mail.ignored)
    assert commands[:3] == NEW_EXPECTED, (relative, mail.text)
    assert not [c for c in commands if c.item in (8, 9)], (relative, mail.text)
    assert "approve 9" not in mail.text and "reject 8" not in mail.text, (relative, mail.text)
    assert not [p for p in problems if "9" in p or "8" in p], problems


@needs_fixtures
def test_every_fixture_reply_had_history_to_hide_commands_in_or_none_at_all() -> None:
    # The injection must have found the quoted part where there is one, or the check above
    # proves nothing for that file.
    with_history = [r for r in REPLIES if build_reply(r).has_history]
    # 59 of the 87 today; the others (signatures only, charset samples, bullets) quote nothing.
    assert len(with_history) >= 55, len(with_history)


@needs_fixtures
def test_measured_figure(capsys: pytest.CaptureFixture[str]) -> None:
    good = 0
    failed: list[str] = []
    for relative in REPLIES:
        mail, commands, _ = check_reply(relative)
        ok = (mail.ignored is None and commands[:3] == NEW_EXPECTED
              and not [c for c in commands if c.item in (8, 9)])
        good += ok
        if not ok:
            failed.append(relative)
    with capsys.disabled():
        print(f"\nfixture replies: {good}/{len(REPLIES)} had every new command read and no "
              f"quoted one ({sum(build_reply(r).has_history for r in REPLIES)} with history)")
    assert good == len(REPLIES), failed


# What the fixture's own project says the new text is (talon's *_reply_text and "Hello",
# GitHub's parse_reply expectations, mail-parser-reply's tests), as (must contain, must not).
EXPECTED_TEXT: dict[str, tuple[list[str], list[str]]] = {
    **{f"mailgun-talon/tests/fixtures/standard_replies/{name}.eml": (["Hello"], ["Hi"])
       for name in ("android", "aol", "apple_mail", "apple_mail_2", "comcast", "gmail",
                    "hotmail", "iphone", "outlook", "sparrow", "thunderbird", "yahoo")},
    **{f"mailgun-talon/tests/fixtures/html_replies/{name}.html": (
        ["Hi. I am fine."], ["Hello! How are you?", "Sasha"])
       for name in ("gmail", "hotmail", "mail_ru", "ms_outlook_2003", "ms_outlook_2007",
                    "ms_outlook_2010", "thunderbird", "windows_mail", "yandex_ru")},
    "mailgun-talon/tests/fixtures/reply-separated-by-hr.html": (["Hi", "there", "Bob"],
                                                               ["bob@example.com"]),
    "github-email_reply_parser/test/emails/email_2_1.txt": (["Outlook with a reply"],
                                                           ["Google Apps Sync"]),
    "github-email_reply_parser/test/emails/email_2_2.txt": (
        ["Outlook with a reply directly above line"], ["CRM Comments", "John Greene"]),
    "github-email_reply_parser/test/emails/email_2_3.txt": (
        ["Outlook with a reply directly above line"], ["CRM Comments", "new comment"]),
    "github-email_reply_parser/test/emails/email_iPhone.txt": (["Here is another email"],
                                                              ["Sent from my iPhone"]),
    "github-email_reply_parser/test/emails/email_BlackBerry.txt": (["Here is another email"],
                                                                  ["Sent from my BlackBerry"]),
    "github-email_reply_parser/test/emails/email_multi_word_sent_from_my_mobile_device.txt": (
        ["Here is another email"], ["Verizon"]),
    "github-email_reply_parser/test/emails/email_sent_from_my_not_signature.txt": (
        ["Here is another email", "Sent from my desk, is much easier then my mobile phone."],
        []),
    "github-email_reply_parser/test/emails/email_bullets.txt": (
        ["test 2 this should list second", "- how about bullets\n- and another"],
        ["Give us an example", "Joe Smith"]),
    "github-email_reply_parser/test/emails/email_1_1.txt": (
        ["Hi folks", "I am currently using the Java HTTP API."], ["riak-users mailing list"]),
    "github-email_reply_parser/test/emails/email_1_2.txt": (
        ["Hi,", "You can list the keys for the bucket"], ["Hi folks", "riak-users mailing list"]),
    "github-email_reply_parser/test/emails/email_1_3.txt": (
        ["Oh thanks.\n\nHaving the function would be great."], ["Russell Brown", "Hi folks"]),
    "github-email_reply_parser/test/emails/email_1_4.txt": (
        ["Awesome! I haven't had another problem with it."], ["Loader"]),
    "github-email_reply_parser/test/emails/email_1_6.txt": (
        ["I get proper rendering as well."], ["Was this caching related"]),
    "github-email_reply_parser/test/emails/email_1_7.txt": ([":+1:"], ["Steps 0-2"]),
    "github-email_reply_parser/test/emails/email_1_8.txt": (
        ["I will reply under this one", "and under this."], ["okay?", "inline responses"]),
    "github-email_reply_parser/test/emails/correct_sig.txt": (
        ["this is an email with a correct -- signature."], ["rick"]),
    "github-email_reply_parser/test/emails/email_one_is_not_on.txt": (
        ["One outstanding question I had"], ["Dave Tapley", "lastLocation"]),
    "github-email_reply_parser/test/emails/greedy_on.txt": (
        ["On your remote host you can run:"], ["George Plymale", "port forwarding"]),
    "github-email_reply_parser/test/emails/email_sig_delimiter_in_middle_of_line.txt": (
        ["And here is a fix -- this is not a signature.", "kthxbai"], []),
    "alfonsrv-mail-parser-reply/test/emails/email_danish_1.txt": (
        ["Hej Peter,", "Tak for din mail."], ["Hej Anders", "Med venlig hilsen"]),
    "alfonsrv-mail-parser-reply/test/emails/email_danish_2.txt": (
        ["Jeg har modtaget filerne."], ["Her er filerne du bad om.", "Hilsen\nSøren"]),
    "alfonsrv-mail-parser-reply/test/emails/email_danish_3.txt": (["Svar."], ["Oprindelig"]),
    "alfonsrv-mail-parser-reply/test/emails/email_danish_4.txt": (["Svar."], ["Oprindelig"]),
    "alfonsrv-mail-parser-reply/test/emails/email_danish_5.txt": (["Svar."], ["Kh\nPeter"]),
    "alfonsrv-mail-parser-reply/test/emails/email_ja_1_2.txt": (
        ["お世話になっております。織田です。", "それでは 11:00 にお待ちしております。"],
        ["かしこまりました", "明日の 11:00 でお願いいたします"]),
    "alfonsrv-mail-parser-reply/test/emails/email_nl_1_2.txt": (["Outlook met een antwoord"],
                                                               ["Google Apps Sync"]),
    "alfonsrv-mail-parser-reply/test/emails/email_sv_anon_1.txt": (
        ["Berättar gärna."], ["Kan inte se att det står något", "Jag har försökt"]),
    "alfonsrv-mail-parser-reply/test/emails/email_swedish_1.txt": (
        ["Ursäkta mitt sena svar!"], ["Hej Person B,", "Med Vänlig Hälsning"]),
    "alfonsrv-mail-parser-reply/test/emails/email_swedish_2.txt": (["Hello Anna,"],
                                                                  ["Hej John", "Project X"]),
    "alfonsrv-mail-parser-reply/test/emails/caution.txt": (
        ["Hi lads's Team,"], ["CAUTION:", "This message w/attachments"]),
    "closeio-quotequail/tests/files/outlook_forward.html": (
        ["Original message", "More text"], ["Hi Foo", "How are you doing?"]),
    "closeio-quotequail/tests/files/gmail_reply.html": (["foo", "bar"], ["This is the reply"]),
    "closeio-quotequail/tests/files/apple_reply.html": (["Foo", "Bar"], ["important"]),
    "closeio-quotequail/tests/files/yahoo_reply_unescaped_address.html": (
        ["Thanks Jane, that looks great."], ["Track lights", "Here's the updated quote"]),
    "closeio-quotequail/tests/files/ios_mail_reply_unescaped_address.html": (
        ["Sounds good, I'll be there at 2."], ["reschedule", "Sent from my iPhone"]),
}


@needs_fixtures
@pytest.mark.parametrize("relative", sorted(EXPECTED_TEXT))
def test_new_text_is_what_the_fixtures_own_project_expects(relative: str) -> None:
    must, must_not = EXPECTED_TEXT[relative]
    path = FIXTURES / relative
    data = path.read_bytes()
    if path.suffix == ".txt":
        raw = _message(data, "text/plain")
    elif path.suffix == ".html":
        raw = _message(data, "text/html")
    else:
        raw = data
    text = read_mail(raw).text
    for expected in must:
        assert expected in text, (relative, text)
    for unexpected in must_not:
        assert unexpected not in text, (relative, text)


@needs_fixtures
@pytest.mark.parametrize("name", ["iphone", "sparrow"])
def test_talon_reply_texts_without_their_signatures(name: str) -> None:
    # talon keeps the signature in its expected text; we drop it, the rest must be equal.
    expected = (FIXTURES / f"mailgun-talon/tests/fixtures/standard_replies/{name}_reply_text"
                ).read_text()
    expected = re.split(r"\n\s*(?:-- |Sent from my)", expected)[0].strip()
    mail = read_mail((FIXTURES / f"mailgun-talon/tests/fixtures/standard_replies/{name}.eml"
                      ).read_bytes())
    assert mail.text == expected


# --- (b) what needs no action ----------------------------------------------------------------

BOUNCE_GLOBS = [
    "sisimai-set-of-emails/maildir/bsd/lhost-*.eml",
    "sisimai-set-of-emails/maildir/bsd/rhost-*.eml",
    "sisimai-set-of-emails/maildir/bsd/arf-*.eml",
    "mailgun-flanker/tests/fixtures/messages/bounce/*.eml",
    "mailgun-flanker/tests/fixtures/messages/complaints/*.eml",
    "mailgun-flanker/tests/fixtures/messages/disposition-notification.eml",
    "mikel-mail/spec/fixtures/emails/multipart_report_emails/*.eml",
]


def _files(globs: list[str]) -> list[str]:
    if not FIXTURES.is_dir():
        return []
    return [str(p.relative_to(FIXTURES)) for g in globs for p in sorted(FIXTURES.glob(g))]


@needs_fixtures
@pytest.mark.parametrize("relative", _files(BOUNCE_GLOBS))
def test_bounces_and_reports_are_ignored_as_bounces(relative: str) -> None:
    mail = read_mail((FIXTURES / relative).read_bytes())
    assert mail.ignored is Ignored.bounce, (relative, mail.ignored)


@needs_fixtures
@pytest.mark.parametrize("relative", _files(["sisimai-set-of-emails/maildir/bsd/rfc3834-*.eml"]))
def test_automatic_replies_are_ignored_as_auto_replies(relative: str) -> None:
    mail = read_mail((FIXTURES / relative).read_bytes())
    assert mail.ignored is Ignored.auto_reply, (relative, mail.ignored)


@needs_fixtures
@pytest.mark.parametrize("relative", _files(["sisimai-set-of-emails/maildir/not/*.eml"]))
def test_sisimai_not_bounces_are_not_taken_for_bounces(relative: str) -> None:
    mail = read_mail((FIXTURES / relative).read_bytes())
    assert mail.ignored is not Ignored.bounce, relative
    if relative.endswith(("is-not-bounce-01.eml", "is-not-bounce-02.eml")):
        assert mail.ignored is None and mail.text, (relative, mail.ignored)


@needs_fixtures
def test_a_no_reply_notification_and_a_message_without_sender_are_ignored() -> None:
    errors = FIXTURES / "mikel-mail/spec/fixtures/emails/error_emails"
    assert read_mail((errors / "encoding_madness.eml").read_bytes()).ignored is Ignored.auto_reply
    assert read_mail((errors / "bad_encoded_subject.eml").read_bytes()).ignored is (
        Ignored.malformed)
