"""Reading an inbound email reply: who sent it, whether it needs no action, only its new text."""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from enum import StrEnum

import lxml.html
from inscriptis import Inscriptis
from inscriptis.model.config import ParserConfig
from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES

from bot.mail.commands import starts_command

log = logging.getLogger(__name__)

MAX_BYTES = 10 * 1024 * 1024
# The new text is at the top (or between quotes near it); past this much text nothing a person
# typed as a reply is expected, and the quote-finding rules stay fast on pathological bodies.
MAX_TEXT_CHARS = 200_000
MAX_HTML_CHARS = 1_000_000
MAX_FULL_TEXT_CHARS = 1_000_000  # full_text is for logs; a bigger body is cut there
OWN_HEADER = "X-Autotrain-Mail"


class Ignored(StrEnum):
    """Why a message gets no action and no reply."""

    auto_reply = "auto_reply"
    bounce = "bounce"
    own_mail = "own_mail"
    too_large = "too_large"
    malformed = "malformed"
    no_text = "no_text"


@dataclass(frozen=True)
class InboundMail:
    message_id: str | None  # without <>
    sender: str | None  # lowercased addr-spec of From
    sender_name: str | None
    recipients: list[str]  # lowercased addr-specs: To, Cc, Delivered-To, X-Original-To, ...
    subject: str
    in_reply_to: list[str]
    references: list[str]
    date: datetime | None
    text: str  # only the new text of the reply
    full_text: str  # the whole body as text, for logs and debugging
    ignored: Ignored | None
    authentication_results: list[str] = field(default_factory=list)

    def dmarc(self, authserv_id: str) -> str | None:
        """The DMARC result ("pass", "fail", "none", ...) that our own receiving server
        (`authserv_id`) recorded; None when it recorded nothing. Authentication-Results headers
        from anyone else are ignored: a sender can write any header it likes."""
        wanted = authserv_id.strip().lower()
        if not wanted:
            return None
        for value in self.authentication_results:
            server, results = _auth_results(value)
            if server == wanted:
                # The first one is the one our server added on top; a forged copy of our
                # authserv-id further down (left by the sender) does not overrule it.
                return results.get("dmarc", "none")
        return None


def read_mail(raw: bytes, *, own_addresses: Sequence[str] = (), envelope_to: Sequence[str] = (),
              max_bytes: int = MAX_BYTES) -> InboundMail:
    """Read one inbound message. Never raises for bad input: what cannot be read comes back
    with `ignored` set (malformed, too_large, ...)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if not isinstance(raw, bytes | bytearray):
        return _empty(Ignored.malformed)
    raw = _LEADING_BLANK_LINES.sub(b"", bytes(raw), count=1)
    try:
        if len(raw) > max_bytes:
            # Only the headers are read, so logs still say who sent the oversized message.
            head = BytesHeaderParser(policy=compat32).parsebytes(raw[:256 * 1024])
            return _envelope(head, envelope_to, text="", full_text="", ignored=Ignored.too_large)
        msg = BytesParser(policy=compat32).parsebytes(raw)
        return _read(msg, own_addresses=own_addresses, envelope_to=envelope_to)
    except Exception:  # a reader that fails must not stop the inbox: say why and go on
        log.warning("unreadable inbound mail (%d bytes)", len(raw), exc_info=True)
        return _empty(Ignored.malformed)


_MESSAGE_HEADERS = {"from", "to", "subject", "date", "message-id", "content-type"}


def is_message(raw: bytes) -> bool:
    """Whether `raw` is a whole message (it starts with headers such as From, Subject or
    Content-Type) rather than just the text of a reply."""
    raw = _LEADING_BLANK_LINES.sub(b"", raw[:256 * 1024], count=1)
    first = raw.split(b"\n", 1)[0]
    if not (first.startswith(b"From ") or re.match(rb"^[!-9;-~]+:", first)):
        return False
    try:
        head = BytesHeaderParser(policy=compat32).parsebytes(raw)
    except Exception:  # whatever it is, it is not a message we could read
        return False
    return any(key.lower() in _MESSAGE_HEADERS for key in head.keys())


def _read(msg: Message, *, own_addresses: Sequence[str], envelope_to: Sequence[str]
          ) -> InboundMail:
    plain, html = _bodies(msg)
    if plain.strip() or not html:
        full_text = _tidy(_normalise(plain[:MAX_FULL_TEXT_CHARS]).split("\n"))
        text = reply_text(plain)
    else:
        full_text = _tidy(_normalise(_html_to_text(html, trim=False)).split("\n"))
        text = reply_text(_html_to_text(html, trim=True))
    ignored = _why_ignored(msg, own_addresses=own_addresses)
    if ignored is None and not text:
        ignored = Ignored.no_text
    return _envelope(msg, envelope_to, text=text, full_text=full_text, ignored=ignored)


def _empty(ignored: Ignored) -> InboundMail:
    return InboundMail(message_id=None, sender=None, sender_name=None, recipients=[], subject="",
                       in_reply_to=[], references=[], date=None, text="", full_text="",
                       ignored=ignored)


def _envelope(msg: Message, envelope_to: Sequence[str], *, text: str, full_text: str,
              ignored: Ignored | None) -> InboundMail:
    sender, name = _from(msg)
    if ignored is None and sender is None:
        ignored = Ignored.malformed
    recipients = _addresses([*(_header_values(msg, h) for h in _RECIPIENT_HEADERS), envelope_to])
    ids = _message_ids(_header_values(msg, "Message-ID"))
    return InboundMail(
        message_id=ids[0] if ids else None,
        sender=sender,
        sender_name=name,
        recipients=recipients,
        subject=_one_line(_header_values(msg, "Subject")[:1]),
        in_reply_to=_message_ids(_header_values(msg, "In-Reply-To")),
        references=_message_ids(_header_values(msg, "References")),
        date=_date(_header_values(msg, "Date")),
        text=text,
        full_text=full_text,
        ignored=ignored,
        authentication_results=[_unfold(v).strip()
                                for v in _header_values(msg, "Authentication-Results")],
    )


# --- headers ---------------------------------------------------------------------------------

_LEADING_BLANK_LINES = re.compile(rb"\A(?:[ \t]*\r?\n)+")
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
# Names mail software gives charsets that Python does not know, or knows as a smaller set.
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949", "ksc5601": "cp949", "ksc_5601": "cp949",
    "euc-kr": "cp949", "euc_kr": "cp949", "x-windows-949": "cp949",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "windows-31j": "cp932", "iso-2022-jp": "iso2022_jp_ext", "csiso2022jp": "iso2022_jp_ext",
    "unicode-1-1-utf-7": "utf-7", "iso-8859-8-i": "iso-8859-8", "big5": "big5hkscs",
    "x-mac-roman": "mac_roman", "macintosh": "mac_roman", "ansi_x3.4-1968": "ascii",
    "us-ascii": "ascii",
}


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode(data: bytes, charset: str | None) -> str:
    """Text from bytes in a declared charset, never failing: the declared one, then UTF-8; for
    unlabeled or "ascii" 8-bit text Windows-1252 (what it usually is), else the declared charset
    with replacement characters."""
    declared = _codec(charset)
    for name in (declared, "utf-8"):
        if name:
            try:
                return data.decode(name)
            except (UnicodeDecodeError, LookupError):
                pass
    if declared in (None, "ascii"):
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return data.decode(declared, errors="replace")


def _header_values(msg: Message, name: str) -> list[str]:
    out: list[str] = []
    for value in msg.get_all(name) or []:
        if isinstance(value, Header):
            # Raw 8-bit bytes in a header (no RFC 2047) arrive as an unknown-8bit Header.
            value = "".join(_decode(chunk, None if cs in (None, "unknown-8bit") else cs)
                            if isinstance(chunk, bytes) else chunk
                            for chunk, cs in decode_header(value))
        out.append(str(value))
    return out


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)


def _header_text(value: str) -> str:
    """A header's text with RFC 2047 encoded words decoded, in whatever charset they name."""
    value = _unfold(value)
    try:
        parts = decode_header(value)
    except Exception:  # broken encoded words: show them as they are rather than fail
        return value.strip()
    text = "".join(_decode(chunk, cs) if isinstance(chunk, bytes) else chunk
                   for chunk, cs in parts)
    return re.sub(r"\s+", " ", text.replace("\x00", "")).strip()


def _one_line(values: Sequence[str]) -> str:
    return _header_text(values[0]) if values else ""


def _from(msg: Message) -> tuple[str | None, str | None]:
    values = _header_values(msg, "From")
    if not values:
        return None, None
    pairs = [(n, a) for n, a in getaddresses([_unfold(values[0])]) if "@" in a]
    if not pairs:
        return None, None
    name, addr = pairs[0]
    return addr.strip().lower(), (_header_text(name) or None)


def _addresses(groups: Iterable[Iterable[str]]) -> list[str]:
    """Lowercased addr-specs, each once, in order."""
    found: dict[str, None] = {}
    for group in groups:
        for _, addr in getaddresses([_unfold(v) for v in group]):
            addr = addr.strip().strip("<>").strip().lower()
            if "@" in addr and " " not in addr:
                found.setdefault(addr, None)
    return list(found)


def _message_ids(values: Sequence[str]) -> list[str]:
    """Message ids without <> or spaces, each once, in order ("<a@b> <a@b>" is one id)."""
    out: dict[str, None] = {}
    for value in values:
        value = _unfold(value)
        found = re.findall(r"<([^<>]+)>", value) or re.split(r"[\s,]+", value)
        for ident in found:
            ident = re.sub(r"\s+", "", ident).strip("<>")
            if ident:
                out.setdefault(ident, None)
    return list(out)


def _date(values: Sequence[str]) -> datetime | None:
    if not values:
        return None
    try:
        when = parsedate_to_datetime(_unfold(values[0]).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --- what needs no action --------------------------------------------------------------------

_REPORT_TYPES = {"delivery-status", "feedback-report", "disposition-notification"}
_REPORT_PARTS = {"message/delivery-status", "message/global-delivery-status",
                 "message/feedback-report", "message/disposition-notification"}
_DAEMON = re.compile(r"^(?:mailer[-_.]?daemon|postmaster|mail[-_.]?delivery[-_.]?(?:system|"
                     r"subsystem)?)(?:@|$)", re.IGNORECASE)
_NO_REPLY = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply)[^@]*@", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:able|ed)|delivery\s+(?:status\s+notification|failure|has\s+failed)|"
    r"mail\s+delivery\s+failed|returned\s+mail|failure\s+notice|delivery\s+notification|"
    r"non[-\s]?delivery|unzustellbar|nicht\s+zustellbar|non\s+remis|no\s+se\s+puede\s+entregar)",
    re.IGNORECASE)
# Header names that mark machine-made mail (as Discourse's receiver looks for them); the values
# "no"/"false" say the opposite. X-Auto-Response-Suppress is handled apart: only All/OOF count.
_AUTO_HEADER_NAME = re.compile(r"auto[-_]?(?:response|submitted|replied|reply|generated|respond"
                               r"|responder)|holidayreply|machinegenerated", re.IGNORECASE)
_OOO_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:"
    r"auto(?:matic|matische|matisch|matisk|matiskt|matyczna|matická|matikus)?[\s_-]*(?:reply|"
    r"response|respons\w*|antwort|antwoord|svar|odpowiedź|odpověď|válasz)\b"
    r"|auto\s*:|autoreply|autorespon\w*|out\s+of\s+(?:the\s+)?office|o\.?o\.?o\b|away\s+from\s+"
    r"(?:the\s+)?office|on\s+vacation|vacation\s+(?:reply|response|message|notice)|on\s+leave\b"
    r"|abwesenheit\w*|abwesend|nicht\s+im\s+büro|außer\s+haus|automatische\s+antwort"
    r"|réponse\s+automatique|r[ée]ponse\s+auto\b|absence\b|absent\w*\s+du\s+bureau"
    r"|message\s+d'absence|respuesta\s+autom[áa]tica|fuera\s+de\s+(?:la\s+)?oficina|ausente\b"
    r"|risposta\s+automatica|fuori\s+(?:sede|ufficio)|non\s+in\s+ufficio"
    r"|automatisch\s+antwoord|afwezig\w*|buiten\s+kantoor|niet\s+aanwezig"
    r"|resposta\s+autom[áa]tica|fora\s+do\s+escrit[óo]rio|ausência"
    r"|autosvar|automatiskt\s+svar|frånvaro\w*|inte\s+på\s+kontoret"
    r"|automatisk\s+svar|fraværende|fravær\b|ikke\s+på\s+kontoret|ikke\s+til\s+stede"
    r"|automatyczna\s+odpowiedź|odpowiedź\s+automatyczna|nieobecno\w+|poza\s+biurem"
    r"|自動応答|自動返信|自動送信|不在|休暇"
    r"|автоответ\w*|автоматический\s+ответ|вне\s+офиса|нет\s+на\s+месте"
    r"|automatická\s+odpověď|mimo\s+kancelář"
    r")", re.IGNORECASE)


def _why_ignored(msg: Message, *, own_addresses: Sequence[str]) -> Ignored | None:
    if _is_report(msg):
        return Ignored.bounce
    sender, _ = _from(msg)
    if sender is None:
        return Ignored.malformed
    if msg.get(OWN_HEADER) is not None or _plain_address(sender) in {
            _plain_address(a) for a in _addresses([own_addresses])}:
        return Ignored.own_mail
    # Auto-Submitted & co. before the sender: a notice from postmaster without a delivery report
    # is an automatic reply, not a bounce (sisimai's "not a bounce" samples).
    if _auto_headers(msg):
        return Ignored.auto_reply
    null_sender = any(v.strip() == "<>" for v in _header_values(msg, "Return-Path"))
    subject = _one_line(_header_values(msg, "Subject")[:1])
    if _DAEMON.match(sender) or (null_sender and _BOUNCE_SUBJECT.match(subject)):
        return Ignored.bounce
    # A null return path is what machines send with (RFC 3834, 5321): people never do.
    if null_sender or _NO_REPLY.match(sender) or _OOO_SUBJECT.match(subject):
        return Ignored.auto_reply
    return None


def _is_report(msg: Message) -> bool:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in _REPORT_PARTS:
            return True
        if ctype == "multipart/report" and (part.get_param("report-type") or "").lower().strip(
                "\"'") in _REPORT_TYPES:
            return True
    return False


def _auto_headers(msg: Message) -> bool:
    for name in msg.keys():
        key = name.lower()
        value = _one_line(_header_values(msg, name)[:1]).lower()
        if key == "auto-submitted":
            if value.split(";")[0].strip() not in ("", "no"):
                return True
        elif key in ("precedence", "x-precedence"):
            if re.search(r"\b(?:bulk|list|junk|auto[-_]?reply)\b", value):
                return True
        elif key == "x-auto-response-suppress":
            if {t.strip() for t in value.split(",")} & {"all", "oof"}:
                return True
        elif key in ("x-autoreply", "x-autorespond", "x-autogenerated", "x-mail-autoreply",
                     "x-autoreply-from", "x-ms-exchange-generated-message-source",
                     "x-fc-machinegenerated"):
            if value not in ("no", "false", "0"):
                return True
        elif key == "x-post-messageclass" and "autoresponder" in value:
            return True
        elif key == "delivered-to" and value == "autoresponder":
            return True
        elif _AUTO_HEADER_NAME.search(key) and value not in ("no", "false", "0"):
            return True
    return False


def _plain_address(address: str) -> str:
    """An address without its +tag, lowercased: our own reply+key@ address is still ours."""
    local, _, domain = address.lower().partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


# --- bodies ----------------------------------------------------------------------------------


def _bodies(msg: Message) -> tuple[str, str]:
    """The message's own plain text and HTML, not attachments or attached messages."""
    plains: list[str] = []
    htmls: list[str] = []
    _collect(msg, plains, htmls)
    return "\n".join(plains), "\n".join(htmls)


def _collect(part: Message, plains: list[str], htmls: list[str]) -> None:
    ctype = part.get_content_type()
    if ctype == "message/rfc822" or _is_attachment(part):
        return
    if part.is_multipart():
        subparts = part.get_payload()
        if not isinstance(subparts, list):
            return
        if ctype == "multipart/alternative":
            # The same content in several forms: the first plain one that says something.
            best: tuple[list[str], list[str]] | None = None
            for sub in subparts:
                p: list[str] = []
                h: list[str] = []
                _collect(sub, p, h)
                if "".join(p).strip():
                    best = (p, h)
                    break
                if best is None and "".join(h).strip():
                    best = ([], h)
            if best:
                plains.extend(best[0])
                htmls.extend(best[1])
            return
        for sub in subparts:
            _collect(sub, plains, htmls)
        return
    if ctype not in ("text/plain", "text/html"):
        return
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return
    text = _decode(payload, part.get_content_charset())
    if ctype == "text/html":
        htmls.append(text)
        return
    if (part.get_param("format") or "").lower() == "flowed":
        text = _unflow(text, delsp=(part.get_param("delsp") or "").lower() == "yes")
    plains.append(text)


def _is_attachment(part: Message) -> bool:
    values = _header_values(part, "Content-Disposition")
    disposition = values[0].split(";")[0].strip().lower() if values else ""
    return disposition == "attachment"


def _unflow(text: str, *, delsp: bool) -> str:
    """Join format=flowed soft line breaks (RFC 3676) so a long line reads as one line."""
    out: list[str] = []
    buf = ""
    depth: int | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        quote = len(line) - len(line.lstrip(">"))
        content = line[quote:]
        if content.startswith(" "):
            content = content[1:]
        if depth is not None and quote != depth:
            out.append(">" * depth + (" " if depth else "") + buf)
            buf, depth = "", None
        soft = content.endswith(" ") and content.rstrip() != "--"
        if soft and delsp:
            content = content[:-1]
        buf += content
        if soft:
            depth = quote
            continue
        out.append(">" * quote + (" " if quote else "") + buf)
        buf, depth = "", None
    if buf:
        out.append(">" * (depth or 0) + (" " if depth else "") + buf)
    return "\n".join(out)


# --- HTML ------------------------------------------------------------------------------------

# Stand-ins left in the HTML where quoted history was taken out, read again by `reply_text`:
# private-use characters, which no mail client writes.
QUOTE_MARK = "\ue000"  # a quoted block was here; what follows it may be new (a bottom post)
CUT_MARK = "\ue001"  # history starts here and runs to the end

# Elements after which everything is history (Outlook, Exchange, Zimbra, Thunderbird forwards).
# Outlook prefixes the ids with "x_" when a message it quotes is quoted again.
_HTML_CUT = (
    "//*[contains(@id, 'divRplyFwdMsg') or contains(@id, 'appendonsend')"
    " or contains(@id, 'OLK_SRC_BODY_SECTION')"
    " or @id='mail-editor-reference-message-container' or @id='isForwardContent'"
    " or @name='messageReplySection' or @data-marker='__QUOTED_TEXT__'"
    " or @data-marker='__HEADERS__']"
    " | //hr[@id='stopSpelling']"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' moz-forward-container ')]"
    " | //*[contains(@class, 'zmail_extra')]"
)
# Quoted blocks a person may write below (Gmail, Apple Mail, Thunderbird, Yahoo, Proton).
_HTML_QUOTE = (
    "//blockquote"
    " | //*[contains(@class, 'gmail_quote')]"
    " | //*[contains(@class, 'yahoo_quoted')]"
    " | //*[contains(@class, 'protonmail_quote')]"
    " | //div[@name='quote']"
)
# Attribution lines and signatures: dropped, they are neither new text nor a quote boundary.
_HTML_DROP = (
    "//*[contains(@class, 'moz-cite-prefix') or contains(@class, 'gmail_attr')"
    " or contains(@class, 'gmail_signature') or contains(@class, 'moz-signature')"
    " or @id='Signature' or @data-smartmail='gmail_signature']"
)
_HTML_NOISE = "//head | //style | //script | //title"
# Outlook's "From: … Sent: …" box is a div with a top border.
_BORDER_TOP = re.compile(r"border-top\s*(?::[^;]*solid|-style\s*:\s*solid)", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_INSCRIPTIS = ParserConfig(display_links=False, display_images=False)


def _html_to_text(html: str, *, trim: bool) -> str:
    """Plain text of an HTML body; with `trim`, quoted history is replaced by QUOTE_MARK and
    CUT_MARK lines first, so `reply_text` can tell it from the new text."""
    # The new text is at the top; megabytes of HTML below it only cost time (seconds).
    html = _XML_DECLARATION.sub("", html[:MAX_HTML_CHARS], count=1).strip()
    if not html:
        return ""
    try:
        tree = lxml.html.document_fromstring(html)
    except Exception:  # nothing lxml can build a tree from: its text without the tags
        return re.sub(r"<[^>]*>", " ", html)
    for el in tree.xpath(_HTML_NOISE):
        _replace(el, None)
    if trim:
        for el in tree.xpath(_HTML_DROP):
            _replace(el, None)
        for el in tree.xpath(_HTML_CUT):
            _replace(el, CUT_MARK)
        boxes = [el for el in tree.iter("div", "p") if _BORDER_TOP.search(el.get("style") or "")]
        for el in boxes:
            m = _HEADER_LINE.match(el.text_content().strip())
            if m and m.group("from"):
                _replace(el, CUT_MARK)
        for el in tree.xpath(_HTML_QUOTE):
            _replace(el, QUOTE_MARK)
    for el in list(tree.iter("hr")):
        # A rule is a line of its own: without this the text before it and the "From:" after it
        # would run together on one line.
        el.tag, el.text = "div", "-" * 10
    try:
        return Inscriptis(tree, _INSCRIPTIS).get_text()
    except Exception:  # the text of the tree is still better than nothing
        return tree.text_content()


def _replace(el: lxml.html.HtmlElement, mark: str | None) -> None:
    parent = el.getparent()
    if parent is None:
        return
    if mark is not None:
        stand_in = lxml.html.Element("div")
        stand_in.text = mark
        stand_in.tail = el.tail
        parent.replace(el, stand_in)
        return
    # Keep the text that followed the element, which belongs to its parent.
    prev = el.getprevious()
    if el.tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


# --- the new text ----------------------------------------------------------------------------

_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile("[\u00a0\u2007\u202f\u3000\t ]+")

# Keys of the header block a client writes above the message it quotes or forwards
# ("From: … Sent: … To: … Subject: …"), in the languages managers are likely to use.
_FROM_KEYS = ("from|von|de|de la|da|van|fra|från|od|от|от кого|від|feladó|lähettäjä|kimden|"
              "afzender|remitente|mittente|expéditeur|šalje|dari|từ|από|αποστολέας|מאת|من|"
              "发件人|寄件者|差出人|보낸 사람|보낸사람")
_SENT_KEYS = ("sent|date|gesendet|datum|envoyé|enviado|enviada|enviat|inviato|verzonden|sendt|"
              "skickat|wysłano|wysłane|data|дата|отправлено|надіслано|fecha|gönderildi|tarih|"
              "lähetetty|päivämäärä|elküldve|dátum|odesláno|odoslané|trimis|poslano|dikirim|"
              "đã gửi|στάλθηκε|ημερομηνία|נשלח|تم الإرسال|"
              "发送时间|日期|送信日時|日時|보낸 날짜|날짜")
_TO_KEYS = ("to|an|à|a|para|per a|aan|til|till|do|кому|收件人|宛先|받는 사람|címzett|"
            "vastaanottaja|kime|komu|către|prima|kepada|đến|προς|אל|إلى|per")
_SUBJECT_KEYS = ("subject|betreff|objet|asunto|assumpte|oggetto|onderwerp|emne|ämne|temat|тема|"
                 "主题|件名|제목|tárgy|aihe|konu|předmět|predmet|assunto|subiect|subjek|chủ đề|"
                 "θέμα|נושא|الموضوع")
_CC_KEYS = "cc|kopie|kopi|kopia|copie|dw|копия|抄送|参照|참조"
_KEY_KINDS = {"from": _FROM_KEYS, "sent": _SENT_KEYS, "to": _TO_KEYS, "subject": _SUBJECT_KEYS,
              "cc": _CC_KEYS}
_HEADER_LINE = re.compile(
    r"^\s*[*_]*\s*(?:" + "|".join(f"(?P<{k}>{v})" for k, v in _KEY_KINDS.items())
    + r")\s*[*_]*\s*[:：]", re.IGNORECASE | re.MULTILINE)

# "-----Original Message-----" and its kin: the phrase between dashes, so a person's own line
# "Original message" is not one.
_ORIGINAL = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:original\s+message|forwarded\s+message|ursprüngliche\s+nachricht"
    r"|weitergeleitete\s+nachricht|original-nachricht|message\s+d'origine|message\s+transféré"
    r"|message\s+original|mensaje\s+original|mensaje\s+reenviado|messaggio\s+originale"
    r"|messaggio\s+inoltrato|oorspronkelijk\s+bericht|doorgestuurd\s+bericht"
    r"|oprindelig\s+meddelelse|videresendt\s+meddelelse|ursprungligt\s+meddelande"
    r"|vidarebefordrat\s+meddelande|opprinnelig\s+melding|videresendt\s+melding"
    r"|wiadomość\s+oryginalna|oryginalna\s+wiadomość|przekazana\s+wiadomość"
    r"|mensagem\s+original|mensagem\s+encaminhada|исходное\s+сообщение|пересылаемое\s+сообщение"
    r"|пересланное\s+сообщение|alkuperäinen\s+viesti|välitetty\s+viesti|eredeti\s+üzenet"
    r"|továbbított\s+üzenet|původní\s+zpráva|přeposlaná\s+zpráva|orijinal\s+mesaj"
    r"|原始邮件|转发邮件|元のメッセージ|転送されたメッセージ|원본\s*메시지|전달된\s*메시지)"
    r"\s*[-_=*:]*\s*$"
    r"|^\s*(?:begin\s+forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht"
    r"|début\s+du\s+message\s+(?:réexpédié|transféré)|inicio\s+del\s+mensaje\s+reenviado"
    r"|comienzo\s+del\s+mensaje\s+reenviado|inizio\s+messaggio\s+inoltrato"
    r"|begin\s+doorgestuurd\s+bericht|videresendt\s+besked|vidarebefordrat\s+brev"
    r"|początek\s+przekazywanej\s+wiadomości|início\s+da\s+mensagem\s+(?:re)?encaminhada"
    r"|転送されたメッセージ)\s*[:：]\s*$", re.IGNORECASE)
# A long rule: what Outlook and webmails draw above the quoted message (an HTML <hr> becomes one).
_RULE = re.compile(r"^\s*(?:-{10,}|_{10,}|={10,})\s*$")
_SIG_DASHES = re.compile(r"^\s*--\s*$")
_SENT_FROM = re.compile(
    r"^\s*(?:sent\s+(?:from|with|via|using)|get\s+outlook\s+for|envoyé\s+(?:de|depuis|avec)"
    r"|von\s+meinem|gesendet\s+(?:von|mit)|enviado\s+(?:desde|do|de)|inviato\s+da"
    r"|verzonden\s+(?:met|vanaf|van)|skickat\s+från|sendt\s+fra|wysłane\s+z|odesláno\s+z"
    r"|отправлено\s+с|lähetetty|iphoneから送信|ipadから送信)\b[\w\s.'’&()/-]{0,60}"
    r"(?:\s*<[^>\s]*>)?\s*$", re.IGNORECASE)
# A top banner some mail gateways add ("CAUTION: This email originated from outside ..."): the
# line goes, the message goes on.
_BANNER = re.compile(
    r"originated\s+(?:from\s+)?outside|external\s+(?:sender|email|e-mail|message)|"
    r"^\s*\[?(?:external|ext)\]?\s*[:\]]?\s*$|do\s+not\s+click\s+links|"
    r"unless\s+you\s+recognize|von\s+außerhalb\s+(?:ihrer|der)\s+organisation", re.IGNORECASE)
_DISCLAIMER = re.compile(
    r"^\s*[*\[]*\s*(?:disclaimer|confidentiality\s+notice|confidential(?:ity)?|"
    r"legal\s+notice|haftungsausschluss|avis\s+de\s+confidentialité)\s*[*\]]*\s*(?::|$)"
    r"|(?:confidential|privileged).{0,200}(?:intended\s+(?:solely\s+)?(?:for\s+the\s+)?"
    r"(?:recipient|addressee)|if\s+you\s+(?:are\s+not|have\s+received))",
    re.IGNORECASE)

# "On <date>, <name> wrote:" in many languages. The forms that start with a word of their own
# ("On", "Am", "Le", ...) may be wrapped over several lines; the others must be one line that
# names an address or a date, so "… as Anna wrote:" in a sentence is not a header.
_WROTE_START = re.compile(
    r"^[\s-]*(?:"
    r"on\b.{0,300}\b(?:wrote|writes)"
    r"|am\b.{0,300}\bschrieb\b.{0,300}"
    r"|le\b.{0,300}\b(?:a\s+écrit|écrivait)"
    r"|el\b.{0,300}\bescribió"
    r"|il\b.{0,300}\bha\s+scritto"
    r"|op\b.{0,300}\bschreef\b.{0,300}"
    r"|(?:em|no\s+dia)\b.{0,300}\bescreveu"
    r"|(?:den|d\.)\b.{0,300}\bskrev\b.{0,300}"
    r"|(?:dnia|w\s+dniu)\b.{0,300}\b(?:napisał(?:a|\(a\))?|nadesłał|pisze)"
    r"|dne\b.{0,300}\bnapsal(?:a|\(a\))?"
    r"|\d{4}年\d{1,2}月\d{1,2}日.{0,300}"
    r")\s*(?:[:：]|-{2,})\s*$", re.IGNORECASE)  # Zoho ends it "wrote ----"
# How a wrapped header's first line starts: a word of its own or a date (Gmail's
# "2016-03-03 17:21 GMT+01:00 Name <a@b>:").
_HEADER_OPENER = re.compile(
    r"^[\s-]*(?:(?:on|am|le|el|il|op|em|den|dnia|dne)\b|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"
    r"|\d{1,2}[./]\d{1,2}[./]\d{2,4}\b)", re.IGNORECASE)
_WROTE_ANY = re.compile(
    r"^.{0,300}(?:(?:\bwrote|\ba\s+écrit|\bescribió|\bha\s+scritto|\bescreveu|\bkirjoitti|"
    r"\bírta|\byazdı|\bнаписал(?:а|\(а\))?|\bпишет|\bnapsal(?:a|\(a\))?|"
    r"\bnapisał(?:a|\(a\))?|\bnapísal(?:a|\(a\))?|\bnapisao|\bnapisala|\bнаписав|\bпише|"
    r"\ba\s+scris|\bva\s+escriure|\bmenulis|đã\s+viết|\brašė|\bkirjutas|\brakstīja|"
    r"\bskrifaði|έγραψε|כתב|كتب)\s*|(?:\bskrev|\bschrieb|\bschreef|\bwrote\s+on)\b.{0,200}|"
    r"(?:写道|のメッセージ|님이\s*작성\w*))[:：]\s*$", re.IGNORECASE)
# What a header line has that a sentence rarely does: an address, a time or a date. A line ending
# in ":" with one of them right above a quoted block is that block's header whatever the language
# (Yandex's '26.06.2014, 14:41, "Name" <a@b>:', Mail.ru's '... от Name <a@b>:').
_NAMES_SOMEONE = re.compile(r"@|\d{1,2}:\d{2}|\d{4}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")

# mail-parser-reply's reply-header patterns in every language it knows (one compiled regex): a
# second opinion that finds "wrote:" headers our own rules may not.
_LIBRARY_HEADERS = EmailMessage(text="", languages=[lang for lang in MAIL_LANGUAGES
                                                    if lang != "david"]).HEADER_REGEX


def reply_text(body: str) -> str:
    """Only what the sender wrote in this reply: quoted history ("> …", "On … wrote:",
    "From: … Sent: …" blocks, "-----Original Message-----", forwards), signatures ("-- ",
    "Sent from my iPhone") and disclaimers removed; whitespace normalised. Text a person wrote
    below or between quoted blocks (bottom posting, inline answers) is kept; nothing after
    unmarked history (an Outlook header block, a forward) ever is."""
    lines = _normalise(body[:MAX_TEXT_CHARS]).split("\n")
    headers = _library_headers(lines)
    keep: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if _is_quoted(line):
            i = _skip_quote(lines, i)
            continue
        if _is_cut(lines, i):
            break
        span = _wrote_header(lines, i) or headers.get(i, 0)
        if span:
            if not _HEADER_OPENER.match(line):
                _drop_wrapped_attribution(keep)
            j = _skip_blank(lines, i + span)
            if j < n and _is_quoted(lines[j]):
                i = _skip_quote(lines, j)
                continue
            break  # unmarked history follows the header: the rest is old
        if (_looks_like_attribution(line) and (j := _skip_blank(lines, i + 1)) < n
                and _is_quoted(lines[j])):
            _drop_wrapped_attribution(keep)
            i = _skip_quote(lines, j)
            continue
        # A gateway's banner sits above what the person wrote; it goes, a command never does.
        if not (_BANNER.search(line) and not any(keep) and not starts_command(line)):
            keep.append(line)
        i += 1
    return _tidy(_without_closing_signature(keep))


def _looks_like_attribution(line: str) -> bool:
    """A line that may head the quoted block right below it in any language: it ends in ":"
    and names an address, a time or a date, or it starts with a date and names an address."""
    if len(line) > 400 or starts_command(line):
        return False
    if line.endswith((":", "：")):
        return bool(_NAMES_SOMEONE.search(line))
    return bool(_HEADER_OPENER.match(line) and re.search(r"\d", line) and "@" in line)


def _drop_wrapped_attribution(keep: list[str]) -> None:
    """Drop the first part of a header wrapped onto the lines right above it ("Name <a@b>
    schrieb am Fr., 28." above "Apr. 2017 um 11:53 Uhr:")."""
    above = 0
    while (above < 2 and len(keep) > above and keep[-1 - above]
           and len(keep[-1 - above]) <= 200 and not keep[-1 - above].endswith(("!", "?"))
           and not starts_command(keep[-1 - above])):
        above += 1
    if above and re.search(r"[\d@<]", keep[-above]):
        del keep[-above:]


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))


def _tidy(lines: Sequence[str]) -> str:
    out: list[str] = []
    for line in lines:
        line = line.strip()
        if line or (out and out[-1]):
            out.append(line)
    # A separator line left at the end (what stood above a cut-off quote) says nothing.
    while out and (not out[-1] or _ONLY_RULE.match(out[-1])):
        out.pop()
    return "\n".join(out).strip()


_ONLY_RULE = re.compile(r"^[-_=*~#.+ᐧ]+$")  # ᐧ: a mail tracker's invisible-looking mark


# ">" and what some clients quote with instead: "|" and Supercite's initials ("JS> ").
_QUOTE_PREFIX = re.compile(r"^\s*(?:>|\||[A-Za-z]{1,3}>)")


def _is_quoted(line: str) -> bool:
    return bool(_QUOTE_PREFIX.match(line)) or QUOTE_MARK in line


def _skip_blank(lines: Sequence[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _skip_quote(lines: Sequence[str], i: int) -> int:
    """Past a quoted block: its quoted lines and the blank lines among them."""
    while i < len(lines) and (_is_quoted(lines[i]) or not lines[i].strip()):
        i += 1
    return i


def _is_cut(lines: Sequence[str], i: int) -> bool:
    """Whether history (or the signature) starts at line i and runs to the end."""
    line = lines[i]
    if not line:
        return False
    if CUT_MARK in line:
        return True
    if starts_command(line):  # history never starts with one; a command is never cut off
        return False
    return (bool(_SIG_DASHES.match(line)) or bool(_RULE.match(line))
            or bool(_ORIGINAL.match(line)) or bool(_SENT_FROM.match(line))
            or bool(_DISCLAIMER.search(line)) or _header_block(lines, i) > 0)


def _header_block(lines: Sequence[str], i: int) -> int:
    """Length of a "From: … Sent: … To: … Subject: …" block starting at line i (0 if none). It
    must name a sender and a date or subject (or an address), so an answer that says
    "From: 9am / To: 5pm" is not taken for one."""
    kinds: set[str] = set()
    j, loose, has_at = i, 0, False
    while j < len(lines) and j < i + 12 and lines[j].strip():
        m = _HEADER_LINE.match(lines[j])
        if m:
            kinds.add(next(k for k, v in m.groupdict().items() if v))
            loose = 0
        elif j == i:
            return 0
        else:
            loose += 1  # a wrapped value (a long To: list)
            if loose > 1:
                break
        has_at = has_at or "@" in lines[j]
        j += 1
    if "from" in kinds and len(kinds) >= 2 and ({"sent", "subject"} & kinds or has_at):
        return j - i
    return 0


def _wrote_header(lines: Sequence[str], i: int) -> int:
    """Number of lines of an "On … wrote:" header starting at line i (0 if none). A header
    wrapped over several lines (even with blank lines or a "> " in it, as some clients break
    them) counts when its first line starts like one and carries a date, and no line of it
    reads like a sentence or a command."""
    first = lines[i]
    if not first or len(first) > 400 or _is_quoted(first) or starts_command(first):
        return 0
    if _WROTE_START.match(first) or (_WROTE_ANY.match(first) and _NAMES_SOMEONE.search(first)):
        return 1
    if (not re.search(r"\d", first) or first.endswith((".", "!", "?"))
            or not _HEADER_OPENER.match(first)):
        return 0
    joined = first
    for k in range(i + 1, min(i + 8, len(lines))):
        line = lines[k].lstrip("> ").strip()
        if not line:
            continue
        if len(line) > 200 or line.endswith((".", "!", "?")) or starts_command(line):
            break
        joined = f"{joined} {line}"
        if len(joined) > 400:
            break
        if _WROTE_START.match(joined) or (_WROTE_ANY.match(joined)
                                          and _NAMES_SOMEONE.search(joined)):
            return k - i + 1
    return 0


def _library_headers(lines: Sequence[str]) -> dict[int, int]:
    """Line numbers where mail-parser-reply finds a reply header ("wrote:" lines in the
    languages it knows), with how many lines each takes. Its Outlook-style "From:" blocks are
    not taken from it: `_header_block` reads those with stricter rules."""
    # Its patterns crawl over very long lines (a 700 kB line takes a second); no header is one.
    # Quoted lines are skipped by the reader whatever they say, so they are not searched: a
    # reply quoting a whole digest costs a few ms instead of sixty.
    text = "\n".join("" if len(line) > 1000 or _is_quoted(line) else line for line in lines)
    found: dict[int, int] = {}
    try:
        for m in _LIBRARY_HEADERS.finditer(text):
            k = next((k for k, g in enumerate(m.groups(), start=1) if g and g.strip()), None)
            if k is None:
                continue
            header = m.group(k)
            at = m.start(k) + len(header) - len(header.lstrip())
            header = header.strip()
            line_no = text.count("\n", 0, at)
            if _HEADER_LINE.match(header.lstrip("> ")) or starts_command(lines[line_no]):
                continue
            found.setdefault(line_no, header.count("\n") + 1)
    except Exception:  # a second opinion only: our own rules still run
        log.debug("mail-parser-reply's header patterns failed", exc_info=True)
    return found


_CLOSING_LINE = re.compile(
    r"^(?:thanks|thank\s+you|many\s+thanks|thx|cheers|best|best\s+regards|kind\s+regards|"
    r"warm\s+regards|regards|br|sincerely|all\s+the\s+best|mit\s+freundlichen\s+grüßen|"
    r"viele\s+grüße|beste\s+grüße|grüße|gruß|lg|cordialement|bien\s+à\s+vous|salutations|"
    r"saludos|un\s+saludo|atentamente|cordiali\s+saluti|saluti|met\s+vriendelijke\s+groet|"
    r"groeten|atenciosamente|abraços|med\s+venlig\s+hilsen|venlig\s+hilsen|hilsen|mvh|"
    r"kh|knus|med\s+vänliga\s+hälsningar|vänliga\s+hälsningar|hälsningar|z\s+poważaniem|"
    r"pozdrawiam|"
    r"pozdrowienia|с\s+уважением|よろしくお願いします|よろしくお願いいたします)[\s,.!]*$",
    re.IGNORECASE)


def _without_closing_signature(lines: list[str]) -> list[str]:
    """Drop a trailing "Best regards,\\nAnna\\nHead of Support" when nothing after the closing
    line looks like a command, so a command is never taken for a signature."""
    filled = [k for k, line in enumerate(lines) if line.strip()]
    for k in reversed(filled[-6:]):
        if k == filled[0]:
            break  # a reply that is only "Thank you." keeps it: that is what was written
        if _CLOSING_LINE.match(lines[k].strip()):
            tail = [line for line in lines[k + 1:] if line.strip()]
            if len(tail) <= 4 and all(len(t) <= 60 and not starts_command(t) for t in tail):
                return lines[:k]
            break
    return lines


# --- authentication results and reply keys ---------------------------------------------------


def _auth_results(value: str) -> tuple[str, dict[str, str]]:
    """(authserv-id, {method: result}) of one Authentication-Results value (RFC 8601)."""
    text = _unfold(value)
    previous = None
    while previous != text:  # comments may nest
        previous = text
        text = re.sub(r"\([^()]*\)", " ", text)
    parts = [p.strip() for p in text.split(";")]
    server = parts[0].split()[0].strip('"').lower() if parts and parts[0].split() else ""
    results: dict[str, str] = {}
    for part in parts[1:]:
        m = re.match(r"([A-Za-z0-9-]+)\s*(?:/\s*\d+)?\s*=\s*([A-Za-z0-9-]+)", part)
        if m:
            results.setdefault(m.group(1).lower(), m.group(2).lower())
    return server, results


_KEY = r"([A-Za-z0-9_-]{16,64})"


def reply_key(addresses: Sequence[str], template: str) -> str | None:
    """The key in the first address that fits `template` ("autotrain+{key}@support.example.com",
    from EMAIL_REPLY_TO): the text around the key matches case-insensitively, the key keeps its
    case. None when the template has no single {key} or no address fits."""
    if template.count("{key}") != 1:
        return None
    before, after = template.strip().split("{key}")
    pattern = re.compile(f"(?i:{re.escape(before)}){_KEY}(?i:{re.escape(after)})")
    for address in addresses:
        _, addr = parseaddr(address)
        m = pattern.fullmatch((addr or address).strip())
        if m:
            return m.group(1)
    return None
