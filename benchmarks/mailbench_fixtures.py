"""Inbound mail for `benchmarks.email`: replies as mail clients write them, and what else lands.

Replies are built the way Gmail builds them (the new text, then "On … wrote:" and the digest
quoted; or HTML only, the digest in a blockquote); auto-replies and bounces are the real
samples in /work/shared/data/email-fixtures (sisimai), re-addressed to a digest's reply
address with a fresh Message-ID each, as each one of them would be a new message.
"""

from __future__ import annotations

import html
import random
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import cast

FIXTURES = Path("/work/shared/data/email-fixtures/sisimai-set-of-emails/maildir/bsd")
MANAGER = "pat.manager@shop.bench.example"
MANAGER_NAME = "Pat Manager"
FORGER = "mallory@evil.example"
OURS = "autotrain@bench.example"
REPLY_DOMAIN = "reply.bench.example"
REPLY_TO = f"autotrain+{{key}}@{REPLY_DOMAIN}"
CLIENT_DOMAIN = "shop.bench.example"
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"

_ITEM = re.compile(r"^(\d+)\. ")


def norm(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class DigestMail:
    """A digest as the manager's mail client got it: what a reply needs."""

    message_id: str  # with <>
    reply_to: str
    subject: str
    text: str
    html_body: str  # the HTML between <body> and </body>, as a reply quotes it
    items: dict[int, str]  # item number -> its question (whitespace normalised)
    size: int

    @classmethod
    def read(cls, raw: bytes) -> DigestMail:
        msg = cast(EmailMessage, message_from_bytes(raw, policy=policy.default))
        plain, rich = msg.get_body(preferencelist=("plain",)), msg.get_body(("html",))
        if plain is None or rich is None or msg["Reply-To"] is None:
            raise ValueError(f"not a digest with a reply address: {msg['Subject']}")
        text, page = str(plain.get_content()), str(rich.get_content())
        body = re.search(r"<body\b[^>]*>(.*)</body>", page, re.S | re.I)
        return cls(message_id=str(msg["Message-ID"]), reply_to=str(msg["Reply-To"]),
                   subject=str(msg["Subject"]), text=text,
                   html_body=body.group(1) if body else page, items=_numbered(text),
                   size=len(raw))


def _numbered(text: str) -> dict[int, str]:
    """Item number -> question, read from the plain-text part ("12. 🔴 CRITICAL …" then an
    indented "Q: …" wrapped over lines); announcements have no "Q:" and are left out."""
    items: dict[int, str] = {}
    number: int | None = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := _ITEM.match(line):
            number = int(m.group(1))
        elif number is not None and line.strip().startswith("Q: "):
            words = [line.strip()[3:]]
            for more in lines[i + 1:]:
                if not more.strip():
                    break
                words.append(more.strip())
            items[number] = norm(" ".join(words))
            number = None
    return items


def _base(*, sender: str, to: str, subject: str, message_id: str | None,
          headers: Mapping[str, str] = {}) -> tuple[EmailMessage, str]:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = f"{MANAGER_NAME} <{sender}>" if sender == MANAGER else sender
    msg["To"] = to
    msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    mid = message_id or make_msgid(domain=CLIENT_DOMAIN)
    msg["Message-ID"] = mid
    for name, value in headers.items():
        msg[name] = value
    return msg, mid


def reply(digest: DigestMail, new_text: str, *, sender: str = MANAGER, to: str | None = None,
          quoted: str | None = None, headers: Mapping[str, str] = {},
          message_id: str | None = None) -> tuple[str, bytes]:
    """(Message-ID, bytes) of a plain-text reply: the new text on top, the digest quoted."""
    msg, mid = _base(sender=sender, to=to or digest.reply_to, subject=digest.subject,
                     message_id=message_id, headers=headers)
    msg["In-Reply-To"] = digest.message_id
    msg["References"] = digest.message_id
    history = digest.text if quoted is None else quoted
    msg.set_content(f"{new_text}\n\nOn {format_datetime(datetime.now(UTC))}, autotrain "
                    f"<{OURS}> wrote:\n"
                    + "\n".join(f"> {line}" if line else ">" for line in history.splitlines())
                    + "\n")
    return mid, bytes(msg)


def html_reply(digest: DigestMail, new_lines: list[str], *,
               sender: str = MANAGER) -> tuple[str, bytes]:
    """An HTML-only reply (no text/plain part), as some webmail and phone clients send: the
    commands in divs, the digest's HTML in Gmail's quote container."""
    msg, mid = _base(sender=sender, to=digest.reply_to, subject=digest.subject,
                     message_id=None)
    msg["In-Reply-To"] = digest.message_id
    msg["References"] = digest.message_id
    new = "".join(f"<div>{html.escape(line)}</div>" for line in new_lines)
    page = (f'<html><body><div dir="ltr">{new}<div><br></div><div>Thanks,<br>Pat</div></div>'
            '<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On '
            f"{html.escape(format_datetime(datetime.now(UTC)))}, autotrain &lt;{OURS}&gt; "
            'wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
            f'border-left:1px solid rgb(204,204,204);padding-left:1ex">{digest.html_body}'
            "</blockquote></div></body></html>")
    msg.set_content(page, subtype="html")
    return mid, bytes(msg)


AUTO_REPLY_HEADERS: list[tuple[str, dict[str, str]]] = [
    ("Automatic reply", {"Auto-Submitted": "auto-replied"}),
    ("Out of Office", {"X-Autoreply": "yes", "Precedence": "auto_reply"}),
    ("Abwesenheitsnotiz", {"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress":
                           "All"}),
    ("Away", {"Auto-Submitted": "auto-replied", "Precedence": "bulk"}),
]


def auto_reply(digest: DigestMail, rng: random.Random) -> tuple[str, bytes]:
    """The manager's own vacation responder answering the digest; its text even says
    "approve", which must not count."""
    words, headers = rng.choice(AUTO_REPLY_HEADERS)
    msg, mid = _base(sender=MANAGER, to=digest.reply_to,
                     subject=f"{words}: {digest.subject}", message_id=None, headers=headers)
    msg.replace_header("Subject", f"{words}: {digest.subject}")
    msg["In-Reply-To"] = digest.message_id
    msg.set_content("I am out of the office until Monday and will approve 1 and 2 when I am "
                    "back.\n\nFor urgent matters contact support-leads@shop.bench.example.\n")
    return mid, bytes(msg)


def load_fixtures(directory: Path = FIXTURES) -> tuple[list[tuple[str, bytes]],
                                                       list[tuple[str, bytes]]]:
    """(auto-replies, bounces) as (file name, bytes): sisimai's rfc3834-* and its delivery
    reports and complaints (lhost-*, rhost-*, arf-*). Empty lists when they are missing."""
    if not directory.is_dir():
        return [], []
    files = sorted(directory.glob("*.eml"))
    auto = [(p.name, p.read_bytes()) for p in files if p.name.startswith("rfc3834-")]
    bounces = [(p.name, p.read_bytes()) for p in files
               if p.name.startswith(("lhost-", "rhost-", "arf-"))]
    return auto, bounces


def readdressed(raw: bytes, *, to: str, sender: str | None = None) -> tuple[str, bytes]:
    """A fixture as it would arrive at our reply address: To (and From, when given) and a
    fresh Message-ID replaced in its header, an mbox "From " line dropped; the rest as is."""
    nl = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
    if raw.startswith(b"From "):
        raw = raw.split(nl, 1)[1]
    head, sep, body = raw.partition(nl + nl)
    drop = {b"to", b"message-id", *([b"from"] if sender else [])}
    kept: list[bytes] = []
    skipping = False
    for line in head.split(nl):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() in drop
        if not skipping:
            kept.append(line)
    mid = make_msgid(domain="fixture.bench.example")
    new = [f"To: {to}".encode(), f"Message-ID: {mid}".encode()]
    if sender:
        new.append(f"From: {MANAGER_NAME} <{sender}>".encode())
    return mid, nl.join(new + kept) + (sep or nl + nl) + body


def garbage(rng: random.Random) -> bytes:
    """Bytes that are no message at all; lines kept under SMTP's 1,000, as a client sends."""
    size = rng.randrange(100, 6_000)
    data = bytes(rng.getrandbits(8) for _ in range(size))
    return b"\r\n".join(data[i:i + 76] for i in range(0, len(data), 76))


def oversized(digest: DigestMail, size: int) -> tuple[str, bytes]:
    """A reply with a big attachment (a screenshot, say): past the server's EMAIL_MAX_BYTES."""
    msg, mid = _base(sender=MANAGER, to=digest.reply_to, subject=digest.subject,
                     message_id=None)
    msg.set_content("approve 1\n\nscreenshot attached\n")
    msg.add_attachment(secrets.token_bytes(size), maintype="image", subtype="png",
                       filename="screenshot.png")
    return mid, bytes(msg)


def unknown_key_address() -> str:
    return REPLY_TO.replace("{key}", "".join(secrets.choice(BASE32) for _ in range(32)))
