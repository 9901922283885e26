"""MIME messages for autotrain mail (no sending): text and HTML with inline images, and the
headers that thread replies and keep other systems' auto-responders from answering us."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only the type: render.py imports `atom` from here.
    from bot.mail.render import EmailContent

# Our own header: a message carrying it that comes back in (a bounce, a forward to the
# inbound address, a loop) is recognised as ours and never read as a manager's reply.
KIND_HEADER = "X-Autotrain-Mail"
_KIND = re.compile(r"[a-z][a-z0-9_-]*")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")


def atom(text: str) -> str:
    """`text` made safe for the left part of a Message-ID or Content-ID (RFC 5322 dot-atom):
    other characters become "-", dots never lead, trail or double. "" when nothing is left."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    return re.sub(r"\.{2,}", ".", cleaned).strip(".-")


def make_message_id(*, kind: str, bot_slug: str, ref: str, domain: str) -> str:
    """"<autotrain.digest.voltcart.<ref>@domain>": which bot and which mail, readable in any
    client's headers; `ref` must make it unique per recipient (the caller puts a
    recipient-specific part in it), because a reply names the message it answers."""
    parts = [atom(p) for p in (kind, bot_slug, ref)]
    if not all(parts):
        raise ValueError(f"message id needs a kind, a bot and a ref: {kind!r} {bot_slug!r} "
                         f"{ref!r}")
    host = domain.strip().lower()
    if not _DOMAIN.fullmatch(host):
        raise ValueError(f"not a domain for a message id: {domain!r}")
    return f"<autotrain.{'.'.join(parts)}@{host}>"


def build_message(*, sender: str, to: str, content: EmailContent, message_id: str,
                  reply_to: str | None = None, in_reply_to: str | None = None,
                  references: Sequence[str] = (), kind: str = "digest",
                  when: datetime | None = None) -> EmailMessage:
    """multipart/alternative: text/plain, then the HTML — inside multipart/related with its
    inline PNGs when it has images. The order matters: clients show the last part they can."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"mail kind must be a lowercase token: {kind!r}")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = content.subject
    msg["Date"] = format_datetime(when or datetime.now(UTC))
    msg["Message-ID"] = _angle(message_id)
    if reply_to:
        msg["Reply-To"] = reply_to
    # Threading ids come from other people's mail: one we cannot write back is left out
    # (the thread may break in a client) rather than the answer not being sent.
    parent = _foreign_id(in_reply_to) if in_reply_to else None
    refs = list(dict.fromkeys(r for r in map(_foreign_id, references) if r))
    if parent:
        msg["In-Reply-To"] = parent
        # RFC 5322: References ends with the parent, so threading holds when only one of the
        # two headers survives a client.
        if parent in refs:
            refs.remove(parent)
        refs.append(parent)
    if refs:
        msg["References"] = " ".join(refs)
    # RFC 3834: vacation replies and ticket systems must not answer automatic mail.
    msg["Auto-Submitted"] = "auto-generated"
    # Exchange and Outlook honour this one instead (out-of-office, read receipts, ...).
    msg["X-Auto-Response-Suppress"] = "All"
    msg[KIND_HEADER] = kind
    msg.set_content(content.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(content.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if content.images:
        html = msg.get_payload()[1]
        for cid, png in content.images.items():
            # add_related turns the HTML part into multipart/related around it.
            html.add_related(png, maintype="image", subtype="png", cid=_angle(cid),
                             disposition="inline", filename=f"{atom(cid.split('@')[0])}.png")
    return msg


def _angle(message_id: str) -> str:
    """A Message-ID or Content-ID between angle brackets, as the headers carry them."""
    bare = message_id.strip().strip("<>")
    if not bare or any(c.isspace() or c in "<>" for c in bare) or not bare.isascii():
        raise ValueError(f"not a message id: {message_id!r}")
    return f"<{bare}>"


def _foreign_id(message_id: str) -> str | None:
    try:
        return _angle(message_id)
    except ValueError:
        return None
