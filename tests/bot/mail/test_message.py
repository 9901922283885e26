"""The MIME message as a mail client reads it back: parts, inline chart, threading, headers."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from bot.mail.message import build_message, make_message_id
from bot.mail.render import EmailContent, render_digest
from tests.bot.mail.test_render import PNG, digest

WHEN = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DOMAIN = "mail.shop.example"


def parsed(content: EmailContent, **kw: Any) -> EmailMessage:
    """Built, flattened to bytes as the mailer sends them, and parsed like a client would."""
    args: dict[str, Any] = {
        "sender": "Autotrain <autotrain@mail.shop.example>", "to": "manager@shop.example",
        "content": content, "when": WHEN,
        "message_id": make_message_id(kind="digest", bot_slug="voltcart", ref="dg1.0",
                                      domain=DOMAIN)}
    msg = build_message(**(args | kw))
    back = email.message_from_bytes(bytes(msg), policy=policy.default)
    assert isinstance(back, EmailMessage)
    return back


def test_text_then_html_with_the_chart_inline_by_content_id() -> None:
    content = render_digest(digest())
    msg = parsed(content)
    assert msg.get_content_type() == "multipart/alternative"
    text, related = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html, image = related.iter_parts()
    assert html.get_content_type() == "text/html" and image.get_content_type() == "image/png"
    assert text.get_content().rstrip("\n") == content.text.rstrip("\n")
    assert html.get_content().rstrip("\n") == content.html.rstrip("\n")
    for part in (text, html):
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content_charset() == "utf-8"
    cid = re.search(r'src="cid:([^"]+)"', html.get_content())
    assert cid is not None and image["Content-ID"] == f"<{cid.group(1)}>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG


def test_without_images_there_is_no_related_part() -> None:
    msg = parsed(render_digest(digest(chart_png=None)))
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_headers_thread_the_reply_and_keep_auto_responders_away() -> None:
    msg = parsed(render_digest(digest()), reply_to="reply+k3y@mail.shop.example",
                 in_reply_to="CAF=abc@mail.gmail.com",
                 references=["<first@x.example>", "CAF=abc@mail.gmail.com"],
                 kind="confirmation")
    assert msg["Reply-To"] == "reply+k3y@mail.shop.example"
    assert msg["In-Reply-To"] == "<CAF=abc@mail.gmail.com>"
    # The parent closes References once, whether or not the caller listed it.
    assert msg["References"] == "<first@x.example> <CAF=abc@mail.gmail.com>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Autotrain-Mail"] == "confirmation"
    assert "Precedence" not in msg
    assert msg["Date"].datetime == WHEN
    assert msg["To"] == "manager@shop.example"


def test_a_digest_has_no_reply_to_or_threading_unless_given() -> None:
    msg = parsed(render_digest(digest()))
    for header in ("Reply-To", "In-Reply-To", "References"):
        assert header not in msg
    assert msg["X-Autotrain-Mail"] == "digest"


def test_a_foreign_id_that_cannot_be_written_back_is_left_out_not_fatal() -> None:
    msg = parsed(render_digest(digest()), in_reply_to="<broken id>",
                 references=["<ok@x.example>", "not ascii ✓"])
    assert "In-Reply-To" not in msg and msg["References"] == "<ok@x.example>"
    with pytest.raises(ValueError):
        parsed(render_digest(digest()), kind="Digest Mail")


def test_message_id_names_bot_and_digest_and_differs_per_recipient() -> None:
    first = make_message_id(kind="digest", bot_slug="voltcart", ref="dg_20261201.0",
                            domain="Mail.Shop.Example")
    second = make_message_id(kind="digest", bot_slug="voltcart", ref="dg_20261201.1",
                             domain="mail.shop.example")
    assert first == "<autotrain.digest.voltcart.dg_20261201.0@mail.shop.example>"
    assert first != second
    odd = make_message_id(kind="confirmation", bot_slug="volt cart", ref="a b/<c>..d",
                          domain=DOMAIN)
    assert re.fullmatch(r"<autotrain\.confirmation\.volt-cart\.[A-Za-z0-9._-]+@"
                        r"mail\.shop\.example>", odd)
    assert ".." not in odd
    msg = parsed(render_digest(digest()), message_id=first.strip("<>"))
    assert msg["Message-ID"] == first
    for bad in ({"domain": "no domain"}, {"domain": ""}, {"ref": "///"}):
        with pytest.raises(ValueError):
            make_message_id(**({"kind": "digest", "bot_slug": "voltcart", "ref": "r",
                                "domain": DOMAIN} | bad))


def test_non_ascii_subject_names_and_text_survive() -> None:
    content = render_digest(digest(bot_name="Café Łódź 東京"))
    msg = parsed(content, to="Zoë Ørsted <zoe@shop.example>")
    assert msg["Subject"] == content.subject
    assert msg["Subject"].startswith("[autotrain] Café Łódź 東京: 3 to review")
    assert msg["To"].addresses[0].display_name == "Zoë Ørsted"
    body = msg.get_body(("plain",))
    assert body is not None and "Café Łódź 東京" in body.get_content()
    # Every header line on the wire is ASCII (RFC 2047 encoded words).
    raw = bytes(build_message(sender="a@b.example", to="c@d.example", content=content,
                              message_id="<x@b.example>", when=WHEN))
    head = raw.split(b"\n\n", 1)[0]
    assert head.isascii()
