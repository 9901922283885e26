"""The digest and confirmation emails: what a manager reads in either part, and how to answer."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.mail.render import (
    Confirmation,
    ConfirmationLine,
    Digest,
    DigestAnnouncement,
    DigestItem,
    render_confirmation,
    render_digest,
)
from core.review.views import AnnouncementView
from tests.bot.test_blocks import card, stats

AT = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already 1 December in Berlin
PNG = b"\x89PNG\r\n\x1a\nfake chart"
LINK = "https://autotrain.example.com/l/"
HOSTILE = '<script>alert("x")</script> & <b>bold</b>'


def item(number: int, **changes: Any) -> DigestItem:
    changes.setdefault("question", f"Question number {number}?")
    view = card(id=f"sug_{number:04d}", **changes)
    return DigestItem(number=number, view=view, approve_url=f"{LINK}approve/{number}",
                      reject_url=f"{LINK}reject/{number}")


def announcement(number: int, *, kind: str = "auto_published",
                 suggestion_id: str | None = "sug_auto", text: str | None = None
                 ) -> DigestAnnouncement:
    view = AnnouncementView(
        id=number, kind=kind, suggestion_id=suggestion_id, entry_id="ent_1", payload={},
        text=text or f"Published automatically: announcement {number}", created_at=AT,
        delivered={})
    undoable = kind == "auto_published" and suggestion_id is not None
    return DigestAnnouncement(number=number, view=view,
                              undo_url=f"{LINK}undo/{number}" if undoable else None)


def digest(**changes: Any) -> Digest:
    base = Digest(
        digest_id="dg_voltcart_20261201", bot_name="Voltcart", bot_slug="voltcart",
        timezone="Europe/Berlin", generated_at=AT, stats=stats(),
        items=[item(1), item(2, priority="medium"), item(3, priority="low")],
        announcements=[announcement(4), announcement(5, kind="paused", suggestion_id=None,
                                                     text="Auto-training paused by alice.")],
        more=0, chart_png=PNG, reply_enabled=True)
    return replace(base, **changes)


def numbered(text: str) -> list[int]:
    """The numbers at the start of the plain text's lines, in order."""
    return [int(m) for m in re.findall(r"^(\d+)\. ", text, flags=re.MULTILINE)]


# -- the digest --------------------------------------------------------------------------


def test_subject_names_the_bot_what_waits_and_the_digest_day_in_the_bots_timezone() -> None:
    items = [item(n, priority="critical" if n <= 2 else "medium") for n in range(1, 11)]
    # The third critical one is past the digest's limit: the stats count it.
    d = digest(items=items, more=2, stats=stats(critical_pending=3),
               announcements=[announcement(11), announcement(12)])
    assert render_digest(d).subject == \
        "[autotrain] Voltcart: 12 to review (3 critical), 2 updates — digest 2026-12-01"
    quiet = render_digest(digest(items=[], announcements=[], stats=stats(critical_pending=0)))
    assert quiet.subject == "[autotrain] Voltcart: nothing to review — digest 2026-12-01"


def test_reply_instructions_come_first_in_both_parts_and_only_with_a_reply_address() -> None:
    content = render_digest(digest())
    commands = "approve 1 3 · reject 2 wrong info · edit 4: new answer · defer 5 1w · undo 7"
    assert commands in content.text
    assert content.text.index(commands) < content.text.index("Question number 1?")
    assert "Reject reasons: wrong info · not a gap · sensitive" in content.text
    html = content.html
    assert html.index("Reply to this email") < html.index("Question number 1?")
    assert ">reject 2 wrong info</code>" in html and "not a gap · sensitive" in html

    silent = render_digest(digest(reply_enabled=False))
    for part in (silent.text, silent.html):
        assert "Reply to this email" not in part
        assert "undo 4" not in part and "approve 1 ·" not in part
    # The one-click links still work without a reply address.
    assert f'href="{LINK}approve/1"' in silent.html


def test_items_then_announcements_are_numbered_in_the_order_given() -> None:
    d = digest(items=[item(1, priority="critical"), item(2, priority="critical"),
                      item(3, priority="medium")],
               announcements=[announcement(4), announcement(5)])
    content = render_digest(d)
    assert numbered(content.text) == [1, 2, 3, 4, 5]
    assert content.text.index("Question number 3?") < content.text.index("announcement 4")
    html_numbers = [int(n) for n in re.findall(r">(\d+)\.</(?:span|strong)>", content.html)]
    assert html_numbers == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="numbers repeat"):
        render_digest(digest(announcements=[announcement(3)]))


def test_only_changes_published_automatically_can_be_undone() -> None:
    d = digest(items=[item(1)], announcements=[
        announcement(2),
        announcement(3, kind="paused", suggestion_id=None, text="Paused by alice."),
        announcement(4, kind="auto_rolled_back", text="Rolled back the shipping entry."),
        announcement(5, suggestion_id=None, text="Published without a suggestion."),
    ])
    content = render_digest(d)
    assert 'Reply "undo 2" to take it back.' in content.text
    assert f"Undo: {LINK}undo/2" in content.text
    assert "<code>undo 2</code>" in content.html and f'href="{LINK}undo/2"' in content.html
    for n in (3, 4, 5):
        assert f"undo {n}" not in content.text and f"undo {n}" not in content.html
    assert "Paused by alice." in content.text and "Rolled back the shipping entry." in content.html


def test_an_item_shows_everything_a_reviewer_decides_on() -> None:
    view = card(priority="critical", kind="improve_answer", confidence=87,
                question="Do you ship to Canada?", entry_question="Shipping abroad",
                answer="Yes, in 5-7 business days.\nDuties are included.",
                variants=[f"phrasing {n}" for n in range(10)],
                reason="asked 7 times this week; unanswered",
                samples=["do u ship to canada", "Toronto delivery?", "canada??", "fourth one"],
                replay="Would have answered 6 of the 7 customers who asked.",
                category="shipping", autonomy="Not published automatically: confidence 87")
    content = render_digest(digest(items=[DigestItem(1, view, None, None)], announcements=[]))
    for part in (content.text, content.html):
        assert "Improve an answer" in part and "87/100" in part
        assert "Do you ship to Canada?" in part and "Shipping abroad" in part
        assert "Yes, in 5-7 business days." in part and "Duties are included." in part
        assert "phrasing 7" in part and "phrasing 8" not in part and "and 2 more" in part
        assert "asked 7 times this week; unanswered" in part
        assert "“do u ship to canada” · “Toronto delivery?” · “canada??”" in part
        assert "fourth one" not in part
        assert "Would have answered 6 of the 7 customers who asked." in part
        assert "shipping" in part and "Not published automatically: confidence 87" in part
        assert "Confidence under 60" not in part
    assert "CRITICAL" in content.text and "Critical" in content.html
    # The answer's own line break survives in both parts.
    assert "Yes, in 5-7 business days.<br>Duties are included." in content.html
    assert re.search(r"business days\.\n +Duties are included\.", content.text)


def test_confidence_under_60_and_the_views_warning_are_shown() -> None:
    content = render_digest(digest(items=[item(1, confidence=59, warning="Contradicts #12"),
                                          item(2, confidence=60)], announcements=[]))
    for part in (content.text, content.html):
        assert part.count("Confidence under 60") == 1
        assert "Contradicts #12" in part
    assert "Confidence under 60" in content.text.split("Question number 2?")[0]


def test_buttons_are_table_cells_with_links_and_a_draft_without_answer_has_no_approve() -> None:
    content = render_digest(digest(items=[item(1), item(2, needs_answer=True, answer="")],
                                   announcements=[]))
    html = content.html
    approve = re.search(r'<td[^>]*bgcolor="#2eb67d"[^>]*>\s*<a href="([^"]+)"[^>]*>Approve</a>',
                        html)
    assert approve is not None and approve.group(1) == f"{LINK}approve/1"
    assert f'href="{LINK}reject/1"' in html and f'href="{LINK}reject/2"' in html
    assert f"{LINK}approve/2" not in html and f"{LINK}approve/2" not in content.text
    assert f"Approve: {LINK}approve/1" in content.text
    assert 'reply "edit 2: your answer"' in content.text
    assert "approve 2" not in content.text
    # Links off: no buttons at all.
    off = render_digest(digest(items=[replace(item(1), approve_url=None, reject_url=None)],
                               announcements=[]))
    assert "<a href=" not in off.html and LINK not in off.text


def test_generated_text_is_escaped_in_html_and_readable_in_text() -> None:
    content = render_digest(digest(
        items=[item(1, answer=HOSTILE, variants=[HOSTILE], samples=[HOSTILE], reason=HOSTILE)],
        announcements=[announcement(2, text=HOSTILE)]))
    assert "<script>" not in content.html and "<b>bold</b>" not in content.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" \
        in content.html
    assert HOSTILE in content.text
    assert "&lt;" not in content.text and "&#34;" not in content.text


def test_html_is_a_600px_table_layout_with_a_preheader() -> None:
    html = render_digest(digest()).html
    # The <style> block's breakpoint is no width; everything drawn is.
    body = re.sub(r"<style>.*?</style>", "", html, flags=re.DOTALL)
    widths = [int(w) for w in re.findall(r'width="(\d+)"', body)]
    widths += [int(w) for w in re.findall(r"width:\s*(\d+)px", body)]
    assert widths and max(widths) <= 600
    assert "max-width: 600px" in html
    for layout in ("display: flex", "display: grid", "display:flex", "display:grid"):
        assert layout not in html
    assert 'role="presentation"' in html
    preheader = re.search(r'<div style="display: none;[^"]*">([^<&]+)', html)
    assert preheader is not None
    assert preheader.group(1) == "3 to review (3 critical), 2 updates · 62% resolved by the " \
                                 "bot (▲ 4 pts)"


def test_the_chart_is_an_inline_image_referenced_by_content_id() -> None:
    content = render_digest(digest())
    [(cid, png)] = content.images.items()
    assert png == PNG and not cid.startswith("<")
    img = re.search(r"<img [^>]*>", content.html)
    assert img is not None
    assert f'src="cid:{cid}"' in img.group(0)
    assert 'width="560"' in img.group(0) and 'alt="' in img.group(0)
    without = render_digest(digest(chart_png=None))
    assert without.images == {} and "cid:" not in without.html and "<img" not in without.html


def test_the_weeks_numbers_each_with_its_change() -> None:
    content = render_digest(digest())
    text = content.text
    assert "THE LAST 7 DAYS (changes compare with the 7 days before)" in text
    rows = {re.split(r"\s{2,}", line.strip())[0]: " ".join(line.split()) for line in
            text.splitlines() if line.startswith("  ") and not line.startswith("   ")}
    assert rows["Resolved by the bot"] == "Resolved by the bot 62% ▲ 4 pts"
    assert rows["Escalations"] == "Escalations 31 (16%) ▼ 5"
    assert rows["CSAT"] == "CSAT 4.3/5 ▲ 0.2"
    assert rows["Negative feedback"] == "Negative feedback 7 no change"
    assert rows["Suggestions decided"] == "Suggestions decided 12 ▲ 3"
    assert rows["Published automatically"] == "Published automatically 4 no change"
    assert rows["Asked once (not proposed)"] == "Asked once (not proposed) 0 no change"
    # In HTML a drop in escalations is good news (green), a rise in resolution too.
    assert re.search(r'color: #1e7d53;">▼ 5<', content.html)
    assert re.search(r'color: #1e7d53;">▲ 4 pts<', content.html)


def test_and_n_more_waiting_only_when_some_are_left_out() -> None:
    content = render_digest(digest(more=5))
    assert "And 5 more waiting" in content.text and "And 5 more waiting" in content.html
    assert "more waiting" not in render_digest(digest(more=0)).text


def test_a_50_item_digest_renders_and_its_text_stays_within_78_columns() -> None:
    long = "word " * 60 + "https://docs.example.com/" + "x" * 90
    items = [item(n, answer=long + "\n\n" + long, question=long, reason=long,
                  variants=[long], samples=[long]) for n in range(1, 51)]
    d = digest(items=items, announcements=[announcement(51, text=long)], more=12)
    content = render_digest(d)
    assert numbered(content.text) == list(range(1, 52))
    assert content.html.count(f"{LINK}approve/") == 50
    for line in content.text.splitlines():
        # Only a URL too long for any line may overflow, never split (it stays clickable).
        assert len(line) <= 78 or re.search(r"https://\S{50,}$", line), line


# -- the confirmation --------------------------------------------------------------------


def confirmation(**changes: Any) -> Confirmation:
    base = Confirmation(
        bot_name="Voltcart", bot_slug="voltcart",
        subject="[autotrain] Voltcart: 12 to review — digest 2026-12-01",
        lines=[ConfirmationLine("approve 1", True, "Approved: Do you ship to Canada? — live now"),
               ConfirmationLine("reject 9", False, "There is no 9 in that digest"),
               ConfirmationLine("edit 2: Yes", False, "Already rejected by bob@shop.example")],
        problems=["aprove 3"], pending=11)
    return replace(base, **changes)


def test_confirmation_says_what_each_command_did_in_order() -> None:
    content = render_confirmation(confirmation())
    assert content.subject == "Re: [autotrain] Voltcart: 12 to review — digest 2026-12-01"
    lines = content.text.splitlines()
    done = [line for line in lines if line[:2] in ("✓ ", "✗ ")]
    assert done == ["✓ approve 1 — Approved: Do you ship to Canada? — live now",
                    "✗ reject 9 — There is no 9 in that digest",
                    "✗ edit 2: Yes — Already rejected by bob@shop.example",
                    "✗ aprove 3"]
    assert "Not understood" in content.text and "11 still waiting for review." in content.text
    assert "Reply to this email with commands such as:" in content.text
    html = content.html
    assert html.index("approve 1") < html.index("reject 9") < html.index("edit 2: Yes")
    assert html.count(">✓<") == 1 and html.count(">✗<") == 2
    assert "aprove 3" in html and "11 still waiting for review." in html
    assert "1 done · 2 not done · 1 not understood" in html  # the preheader


def test_confirmation_keeps_one_re_and_escapes_what_was_written() -> None:
    content = render_confirmation(confirmation(
        subject="RE: [autotrain] Voltcart", problems=[HOSTILE], pending=0))
    assert content.subject == "RE: [autotrain] Voltcart"
    assert "<script>" not in content.html and "&lt;script&gt;" in content.html
    assert "Nothing else waits for review." in content.text


def test_a_refused_reply_gets_the_notice_alone() -> None:
    notice = "This reply came after the digest key expired; reply to the newest digest."
    content = render_confirmation(confirmation(lines=[], problems=[], pending=4,
                                               notice=notice))
    for part in (content.text, content.html):
        assert notice in part
        assert "✓" not in part and "✗" not in part
        assert "Reply to this email with commands" not in part
        assert "4 still waiting for review." in part
