"""The digest email: both parts rendered, generated text escaped in HTML only, written as .eml."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from pathlib import Path

from bot.email import DigestItem, DigestView, FileMailer, render_digest


def _view() -> DigestView:
    return DigestView(
        bot_name="Voltcart", bot_slug="voltcart", generated_at=datetime(2026, 11, 20, tzinfo=UTC),
        review_url="http://127.0.0.1:8000/api/v1/bots/voltcart/suggestions",
        items=[DigestItem(
            id="s1", priority="critical", kind="new_answer", confidence=88,
            question="Does the charger work with iPhone 15?",
            answer="Yes, it's compatible <script>alert(1)</script>",
            variants=["charger for iphone 15?"], reason="12 customers in 7 days", warning=None)],
    )


def test_digest_escapes_generated_text_in_html_but_not_in_text() -> None:
    content = render_digest(_view())
    assert "1 suggestion to review (1 critical)" in content.subject
    assert "<script>" not in content.html and "&lt;script&gt;" in content.html
    assert "it's compatible <script>" in content.text
    assert "12 customers in 7 days" in content.text and "charger for iphone 15?" in content.text


def test_file_mailer_writes_a_readable_eml(tmp_path: Path) -> None:
    path = FileMailer(tmp_path / "outbox", sender="autotrain@example.com").send(
        to=["manager@example.com"], content=render_digest(_view()))
    msg = email.message_from_bytes(Path(path).read_bytes(), policy=policy.default)
    assert msg["To"] == "manager@example.com"
    assert msg.get_body(("plain",)).get_content().startswith("Voltcart")  # type: ignore[union-attr]
    assert "&lt;script&gt;" in msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_digest_tells_what_happened_without_a_person() -> None:
    from dataclasses import replace

    view = replace(_view(), announcements=[
        'Published automatically (confidence 95 is above the moderate threshold of 90): '
        '"Do you ship to <Canada>?". Undo by deactivating or reverting the entry.',
        "Auto-training paused by alice (slack)."])
    content = render_digest(view)
    assert content.subject.endswith("(1 critical), 2 updates")
    assert "Since the last digest:" in content.text
    assert 'Published automatically (confidence 95' in content.text
    assert "Do you ship to <Canada>?" in content.text
    assert "&lt;Canada&gt;" in content.html and "<Canada>" not in content.html
    assert "Auto-training paused by alice (slack)." in content.html
    # Without announcements the digest has no such section.
    assert "Since the last digest" not in render_digest(_view()).text
