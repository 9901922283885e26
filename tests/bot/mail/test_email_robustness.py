"""Replies that must not do what they say (DMARC failures, oversized mail, real bounces and
auto-replies, another bot's key), replies that do more than one item at a time, a reply to
an older digest, and refusal notices kept to one a day."""

from __future__ import annotations

import logging
import smtplib
from datetime import UTC, date, datetime, time, timedelta
from email.utils import make_msgid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

import worker
from core.db import session_scope
from core.models import MailNotice, as_utc
from core.policy.commands import Actor, Approve, Channel
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

AUTHSERV = "mx.support.example"
QUESTION = "Do you ship to Canada?"
ANSWER = "Yes, we ship to Canada in 5 to 8 business days."
EDITOR = "editor@blog.example"
SLACK_ALICE = Actor("U0ALICE1", Channel.slack)
BERLIN = ZoneInfo("Europe/Berlin")


def only_the_digest_was_sent(world: MailWorld) -> bool:
    return len(world.settle()) == 1


# -- DMARC --------------------------------------------------------------------------------------

def test_a_reply_our_server_found_failing_dmarc_is_not_applied_and_the_manager_is_told(
        make_mail_world: MakeMailWorld) -> None:
    world = make_mail_world(EMAIL_DMARC_AUTHSERV_ID=AUTHSERV)
    first, _ = world.two_items()
    digest = world.digest()
    ours = (f"{AUTHSERV}; spf=fail smtp.mailfrom=shop.example; dkim=none; "
            "dmarc=fail (p=reject dis=none) header.from=shop.example")

    failed = world.post_inbound(reply_to(digest, "approve 1",
                                         headers={"Authentication-Results": ours}))
    # A forger who also writes our authserv-id with "pass" further down: our server's
    # header is the one on top.
    forged_pass = reply_to(digest, "approve 1", headers={
        "Authentication-Results": f"{AUTHSERV}; dmarc=pass header.from=shop.example"})
    on_top = world.post_inbound(f"Authentication-Results: {ours}\r\n".encode() + forged_pass)

    assert failed.json()["outcome"] == "dmarc_fail" and on_top.json()["outcome"] == "dmarc_fail"
    assert world.status(first) == SuggestionStatus.pending
    assert world.answer(QUESTION) is None
    notice = text_of(world.answered(2))
    assert "DMARC" in notice and "nothing was changed" in notice


def test_a_dmarc_failure_recorded_by_another_server_is_not_evidence(
        make_mail_world: MakeMailWorld) -> None:
    world = make_mail_world(EMAIL_DMARC_AUTHSERV_ID=AUTHSERV)
    first, _ = world.two_items()
    digest = world.digest()

    r = world.post_inbound(reply_to(digest, "approve 1", headers={
        "Authentication-Results": "mx.elsewhere.example; dmarc=fail header.from=shop.example"}))

    assert (r.json()["outcome"], r.json()["applied"]) == ("applied", 1)
    assert world.status(first) == SuggestionStatus.approved


# -- size ---------------------------------------------------------------------------------------

def test_a_reply_over_email_max_bytes_is_refused_with_a_log_line_and_nothing_else(
        make_mail_world: MakeMailWorld, caplog: pytest.LogCaptureFixture) -> None:
    world = make_mail_world(EMAIL_MAX_BYTES=20_000)
    first, _ = world.two_items()
    digest = world.digest()
    caplog.set_level(logging.WARNING, logger="bot.mail.inbound")
    big = reply_to(digest, "approve 1",
                   quoted=text_of(digest) + "\n" + ("forwarded log line " * 4 + "\n") * 400)
    assert len(big) > 20_000

    r = world.post_inbound(big)

    assert r.status_code == 200 and r.json()["outcome"] == "too_large"
    assert "too_large" in caplog.text and f"{len(big)} bytes" in caplog.text
    assert world.status(first) == SuggestionStatus.pending
    assert only_the_digest_was_sent(world)
    # The pipeline goes on: the manager's next, normal reply is applied.
    assert world.post_inbound(reply_to(digest, "approve 1")).json()["applied"] == 1


# -- mail no person wrote -----------------------------------------------------------------------

def _fixtures(*globs: str) -> list[str]:
    if not FIXTURES.is_dir():
        return []
    return [str(p.relative_to(FIXTURES)) for g in globs for p in sorted(FIXTURES.glob(g))]


AUTO_REPLIES = _fixtures("sisimai-set-of-emails/maildir/bsd/rfc3834-*.eml")
BOUNCES = _fixtures("mailgun-flanker/tests/fixtures/messages/bounce/*.eml",
                    "mikel-mail/spec/fixtures/emails/multipart_report_emails/*.eml")


@pytest.mark.skipif(not AUTO_REPLIES or not BOUNCES, reason=f"no email fixtures at {FIXTURES}")
@pytest.mark.parametrize(("relative", "outcome"),
                         [(r, "auto_reply") for r in AUTO_REPLIES] +
                         [(r, "bounce") for r in BOUNCES])
def test_real_auto_replies_and_bounces_to_the_reply_address_get_no_action_and_no_answer(
        mail_world: MailWorld, relative: str, outcome: str) -> None:
    world = mail_world
    first, _ = world.two_items()
    digest = world.digest()
    raw = (FIXTURES / relative).read_bytes()
    # An out-of-office comes from the manager's own mailbox; a bounce from the mail system.
    raw = readdress(raw, to=str(digest["Reply-To"]),
                    sender=MANAGER if outcome == "auto_reply" else None,
                    message_id=make_msgid(domain="mail.example"))

    r = world.post_inbound(raw)

    assert r.json()["outcome"] == outcome, (relative, r.json())
    assert world.status(first) == SuggestionStatus.pending
    assert only_the_digest_was_sent(world), relative  # answering them is how loops start


# -- several items, edits, deferrals ------------------------------------------------------------

def test_approve_all_critical_approves_the_critical_items_only(mail_world: MailWorld) -> None:
    world = mail_world
    canada, gift_wrap = world.two_items()
    warranty = world.suggestion(question="Is there a warranty?",
                                answer="Two years on everything.", score=6.0)
    digest = world.digest()

    r = world.post_inbound(reply_to(digest, "approve all critical"))

    assert (r.json()["applied"], r.json()["refused"]) == (2, 0)
    assert world.status(canada) == world.status(warranty) == SuggestionStatus.approved
    assert world.status(gift_wrap) == SuggestionStatus.pending
    confirmation = text_of(world.answered(2))
    assert QUESTION in confirmation and "Is there a warranty?" in confirmation
    assert "Do you gift wrap?" not in confirmation


def test_edit_with_a_multi_line_answer_publishes_that_answer(mail_world: MailWorld) -> None:
    world = mail_world
    first, second = world.two_items()
    digest = world.digest()
    new_answer = ("Yes, we ship to Canada.\n"
                  "Delivery takes 5 to 8 business days.\n"
                  "\n"
                  "Import duties are paid on delivery.")

    r = world.post_inbound(reply_to(digest, f"edit 1: {new_answer}\n\nThanks,\nPat"))

    assert (r.json()["applied"], r.json()["refused"]) == (1, 0)
    assert world.status(first) == SuggestionStatus.approved
    assert world.status(second) == SuggestionStatus.pending
    assert world.answer(QUESTION) == new_answer  # its lines, without the sign-off


def test_defer_to_a_date_defers_until_that_morning_in_the_bots_timezone(
        mail_world: MailWorld) -> None:
    world = mail_world
    world.configure(timezone="Europe/Berlin")
    first, second = world.two_items()
    digest = world.digest()
    today = datetime.now(BERLIN).date()
    christmas_eve = date(today.year, 12, 24)
    if christmas_eve <= today:
        christmas_eve = date(today.year + 1, 12, 24)

    r = world.post_inbound(reply_to(digest, f"defer 2 {christmas_eve.isoformat()}"))

    assert (r.json()["applied"], r.json()["refused"]) == (1, 0)
    card = world.svc.review.card(second, bot=world.bot)
    assert card.status == SuggestionStatus.deferred
    assert card.defer_until is not None
    # 09:00 in Berlin (08:00 UTC in winter), not 09:00 UTC.
    assert as_utc(card.defer_until) == datetime.combine(christmas_eve, time(9),
                                                        tzinfo=BERLIN).astimezone(UTC)
    assert world.status(first) == SuggestionStatus.pending


# -- an older digest ----------------------------------------------------------------------------

def test_a_reply_to_an_older_digest_uses_its_numbers_and_explains_what_was_decided_since(
        mail_world: MailWorld) -> None:
    world = mail_world
    canada, gift_wrap = world.two_items()
    older = world.digest()  # 1: Canada, 2: gift wrap
    world.svc.review.execute(Approve(suggestion_id=canada, actor=SLACK_ALICE), bot=world.bot)
    warranty = world.suggestion(question="Is there a warranty?",
                                answer="Two years on everything.")
    world.digest()  # 1: warranty, 2: gift wrap

    r = world.post_inbound(reply_to(older, "approve 1 2"))

    assert (r.json()["applied"], r.json()["refused"]) == (1, 1)
    assert world.status(gift_wrap) == SuggestionStatus.approved
    assert world.status(warranty) == SuggestionStatus.pending  # item 1 of the newer digest
    [by_slack] = world.svc.review.audit(world.bot, action="suggestion.approved",
                                        suggestion_id=canada)
    assert by_slack.channel == "slack"
    confirmation = text_of(world.answered(3))
    assert "already approved" in confirmation.lower() and QUESTION in confirmation


# -- refusal notices ----------------------------------------------------------------------------

def test_a_refusal_notice_goes_at_most_once_a_day_to_a_sender(mail_world: MailWorld) -> None:
    world = mail_world
    first, _ = world.two_items()
    digest = world.digest()

    bad = [world.post_inbound(reply_to(digest, text)).json()
           for text in ("Thanks, I will look at these tomorrow.", "Sounds good to me.")]
    good = world.post_inbound(reply_to(digest, "approve 1")).json()
    # Answers are sent after the reply is taken: wait for them, then make sure no more come.
    world.client.portal.call(world.mail.inbound.drain)  # type: ignore[union-attr]
    after_two_bad = len(world.settle())
    with session_scope(world.svc.engine) as session:  # as if the notice went yesterday
        yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        session.execute(update(MailNotice).values(day=yesterday))
    next_day = world.post_inbound(reply_to(digest, "Will do.")).json()

    assert [b["outcome"] for b in bad] == ["no_commands", "no_commands"]
    assert [b["replied"] for b in bad] == [True, False]
    # Confirmations are not notices: a good reply is always answered.
    assert good["outcome"] == "applied" and good["replied"] is True
    assert after_two_bad == 3  # the digest, one notice, the confirmation
    assert next_day["replied"] is True
    assert "found no command" in text_of(world.answered(4))
    assert world.status(first) == SuggestionStatus.approved


# -- another bot's key --------------------------------------------------------------------------

def test_another_bots_reply_key_decides_nothing_for_a_manager_it_was_not_sent_to(
        mail_world: MailWorld) -> None:
    world = mail_world
    blog = world.add_bot("blog", recipients=[EDITOR])
    shop_item, _ = world.two_items()
    blog_item = world.suggestion(bot=blog, question="Do you accept guest posts?",
                                 answer="Yes, send a pitch to the editor.")
    shop_digest, blog_digest = world.digest(), world.digest(blog)

    # Each reviewer answers their own digest with the other bot's reply address.
    from_shop = world.post_inbound(reply_to(shop_digest, "approve 1",
                                            to=str(blog_digest["Reply-To"])))
    from_blog = world.post_inbound(reply_to(blog_digest, "approve 1", sender=EDITOR,
                                            to=str(shop_digest["Reply-To"])))

    assert [from_shop.json()["outcome"], from_blog.json()["outcome"]] == ["wrong_sender"] * 2
    assert world.status(shop_item) == SuggestionStatus.pending
    assert world.status(blog_item, bot=blog) == SuggestionStatus.pending
    assert world.svc.review.audit(world.bot, action="suggestion.approved") == []
    assert world.svc.review.audit(blog, action="suggestion.approved") == []


def test_the_reply_address_not_the_thread_says_which_bots_items_are_meant(
        mail_world: MailWorld) -> None:
    world = mail_world
    blog = world.add_bot("blog", recipients=[MANAGER])  # one manager reviews both bots
    shop_item, _ = world.two_items()
    blog_item = world.suggestion(bot=blog, question="Do you accept guest posts?",
                                 answer="Yes, send a pitch to the editor.")
    shop_digest, blog_digest = world.digest(), world.digest(blog)

    # Written in the shop digest's thread, sent to the blog digest's reply address.
    r = world.post_inbound(reply_to(shop_digest, "approve 1", to=str(blog_digest["Reply-To"])))

    assert (r.json()["bot"], r.json()["applied"]) == ("blog", 1)
    assert world.status(blog_item, bot=blog) == SuggestionStatus.approved
    assert world.status(shop_item) == SuggestionStatus.pending


# -- a failure half-way -------------------------------------------------------------------------

def lose_the_database_once(world: MailWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next digest lookup fails as when the database drops a connection: after the reply
    was recorded as received, before anything was decided."""
    real = world.svc.review.mail.digest
    calls = 0

    def digest(digest_id: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("SELECT maildigest", {},
                                   ConnectionError("server closed the connection"))
        return real(digest_id)

    monkeypatch.setattr(world.svc.review.mail, "digest", digest)


def test_a_reply_that_failed_half_way_is_applied_when_the_smtp_sender_retries(
        make_mail_world: MakeMailWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_mail_world(AUTOTRAIN_SMTP_LISTEN_PORT=0)
    first, _ = world.two_items()
    digest = world.digest()
    raw = reply_to(digest, "approve 1")
    lose_the_database_once(world, monkeypatch)

    with pytest.raises(smtplib.SMTPDataError) as failed:
        world.smtp_send(raw, to=[str(digest["Reply-To"])])
    # The sender's mail server tries the same message again later.
    world.smtp_send(raw, to=[str(digest["Reply-To"])])

    assert failed.value.smtp_code == 451
    assert world.status(first) == SuggestionStatus.approved
    assert "approved" in text_of(world.answered(2)).lower()


async def test_a_reply_that_failed_half_way_is_applied_by_the_next_imap_poll(
        make_mail_world: MakeMailWorld, imap_mailbox: ImapMailbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_mail_world(**imap_settings(imap_mailbox))
    first, _ = world.two_items()
    digest = world.digest()
    imap_mailbox.append(reply_to(digest, "approve 1"))
    ctx = {"services": world.svc, "mail": world.mail}
    lose_the_database_once(world, monkeypatch)

    failed = await worker.imap_poll(ctx)
    left_unread = imap_mailbox.flags_of_all()
    again = await worker.imap_poll(ctx)
    await world.mail.inbound.drain()  # confirmations go out on this loop, after the poll

    assert (failed, left_unread, again) == ({"received": 0}, [frozenset()], {"received": 1})
    assert world.status(first) == SuggestionStatus.approved
    assert "approved" in text_of(world.answered(2)).lower()
