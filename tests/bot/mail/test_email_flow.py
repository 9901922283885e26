"""The email channel end to end: a digest sent over SMTP to a recording server on 127.0.0.1,
replies posted to /email/inbound as a mail provider would, confirmations in the thread."""

from __future__ import annotations

import re
from email.utils import make_msgid

from sqlmodel import Session, select

from bot.mail.decide import Ask, decide
from core.db import session_scope
from core.models import MailDigest, ReplyKey
from core.policy.commands import Actor, Approve, Channel
from core.review.mailroom import _hash
from core.status import SuggestionStatus
from tests.bot.mail.conftest import (
    INBOUND_SECRET,
    MANAGER,
    OURS,
    MailWorld,
    html_of,
    reply_to,
    text_of,
)

SLACK_ALICE = Actor("U0ALICE1", Channel.slack)
QUESTION = "Do you ship to Canada?"
ANSWER = "Yes, we ship to Canada in 5 to 8 business days."


def test_the_digest_reaches_each_recipient_with_a_reply_key_and_a_chart(mail_world: MailWorld
                                                                        ) -> None:
    world = mail_world
    world.two_items()
    sent = world.send_digest()
    assert sent["sent"] and sent["recipients"] == 1 and sent["items"] == 2
    [got] = world.smtp.wait_for(1)
    assert got.rcpt_tos == (MANAGER,)
    msg = got.message
    assert re.fullmatch(r"autotrain\+[a-z2-7]{32}@support\.example", str(msg["Reply-To"]))
    assert "shop" in str(msg["Message-ID"]) and "Shop" in str(msg["Subject"])
    text, html = text_of(msg), html_of(msg)
    # Numbered in the queue's order: the critical question first.
    assert text.index(QUESTION) < text.index("Do you gift wrap?")
    assert re.search(r"\b1\b", text[:text.index(QUESTION)])
    assert "approve 1" in text.lower()  # the reply instructions
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1
    cid = str(images[0]["Content-ID"]).strip("<>")
    assert f"cid:{cid}" in html


def test_replying_approve_publishes_the_answer_and_confirms_in_the_thread(
        mail_world: MailWorld) -> None:
    world = mail_world
    first, second = world.two_items()
    digest = world.digest()
    reply = reply_to(digest, "approve 1\n\nThanks!")
    r = world.post_inbound(reply)
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    assert r.json()["applied"] == 1
    assert world.status(first) == SuggestionStatus.approved
    assert world.status(second) == SuggestionStatus.pending
    assert world.answer(QUESTION) == ANSWER
    [audit] = world.svc.review.audit(world.bot, action="suggestion.approved")
    assert (audit.actor, audit.channel) == (MANAGER, "email")
    confirmation = world.smtp.wait_for(2)[-1]
    assert confirmation.rcpt_tos == (MANAGER,)
    sent_reply_id = re.search(rb"Message-ID: (<[^>]+>)", reply, re.I)
    assert sent_reply_id is not None
    assert str(confirmation.message["In-Reply-To"]) == sent_reply_id.group(1).decode()
    assert str(confirmation.message["Subject"]).startswith("Re: ")
    assert QUESTION in text_of(confirmation.message)


def test_commands_in_the_quoted_digest_are_never_applied(mail_world: MailWorld) -> None:
    world = mail_world
    first, second = world.two_items()
    digest = world.digest()
    # The quoted digest itself says "approve 1 3"; add a blunter one to the history too.
    history = "approve 1\nreject 2 wrong info\n" + text_of(digest)
    r = world.post_inbound(reply_to(digest, "defer 2 1w", quoted=history))
    assert r.json()["outcome"] == "applied" and r.json()["applied"] == 1
    assert world.status(first) == SuggestionStatus.pending
    assert world.status(second) == SuggestionStatus.deferred


def test_valid_and_invalid_items_are_each_explained(mail_world: MailWorld) -> None:
    world = mail_world
    first, second = world.two_items()
    digest = world.digest()
    r = world.post_inbound(reply_to(digest, "approve 1, 9\nreject 2 wrong info"))
    body = r.json()
    assert (body["applied"], body["refused"]) == (2, 1)
    assert world.status(first) == SuggestionStatus.approved
    card = world.svc.review.card(second, bot=world.bot)
    assert card.status == SuggestionStatus.rejected and card.reject_reason == "wrong_information"
    text = text_of(world.smtp.wait_for(2)[-1].message)
    assert "9" in text and "no item 9" in text.lower()


def test_an_item_decided_elsewhere_meanwhile_is_not_decided_again(mail_world: MailWorld
                                                                  ) -> None:
    world = mail_world
    first, _ = world.two_items()
    digest = world.digest()
    world.svc.review.execute(Approve(suggestion_id=first, actor=SLACK_ALICE), bot=world.bot)
    r = world.post_inbound(reply_to(digest, "reject 1 tone"))
    assert (r.json()["applied"], r.json()["refused"]) == (0, 1)
    assert world.status(first) == SuggestionStatus.approved
    assert "already approved" in text_of(world.smtp.wait_for(2)[-1].message).lower()


def test_a_reply_from_another_address_changes_nothing_and_warns_the_recipient_once(
        mail_world: MailWorld) -> None:
    world = mail_world
    first, _ = world.two_items()
    digest = world.digest()
    for _ in range(2):
        r = world.post_inbound(reply_to(digest, "approve 1", sender="mallory@evil.example"))
        assert r.json()["outcome"] == "wrong_sender"
    assert world.status(first) == SuggestionStatus.pending
    mails = world.settle()
    assert len(mails) == 2  # the digest, then one warning: never to the (maybe forged) sender
    assert mails[1].rcpt_tos == (MANAGER,)
    assert "evil.example" in text_of(mails[1].message)


def test_an_unknown_or_expired_key_changes_nothing(mail_world: MailWorld) -> None:
    world = mail_world
    first, _ = world.two_items()
    digest = world.digest()
    forged = "autotrain+AAAAAAAAAAAAAAAAAAAAAAAA@support.example"
    r = world.post_inbound(reply_to(digest, "approve 1", to=forged))
    assert r.json()["outcome"] == "unknown_key"
    key = str(digest["Reply-To"]).split("+", 1)[1].split("@", 1)[0]
    with session_scope(world.svc.engine) as session:
        row = session.get(ReplyKey, _hash(key))
        assert row is not None
        row.expires_at = row.created_at
        session.add(row)
    r = world.post_inbound(reply_to(digest, "approve 1"))
    assert r.json()["outcome"] == "expired_key"
    assert world.status(first) == SuggestionStatus.pending


def test_auto_replies_bounces_and_our_own_mail_get_no_action_and_no_answer(
        mail_world: MailWorld) -> None:
    world = mail_world
    first, _ = world.two_items()
    digest = world.digest()
    cases = {
        "auto_reply": reply_to(digest, "approve 1", headers={"Auto-Submitted": "auto-replied"}),
        "own_mail": reply_to(digest, "approve 1", sender=OURS),
    }
    for outcome, raw in cases.items():
        assert world.post_inbound(raw).json()["outcome"] == outcome
    assert world.status(first) == SuggestionStatus.pending
    assert len(world.settle()) == 1  # only the digest: nothing answered


def test_the_same_message_twice_is_applied_once(mail_world: MailWorld) -> None:
    world = mail_world
    world.two_items()
    digest = world.digest()
    raw = reply_to(digest, "approve 1", message_id=make_msgid(domain="shop.example"))
    assert world.post_inbound(raw).json()["outcome"] == "applied"
    assert world.post_inbound(raw).json()["outcome"] == "duplicate"
    assert len(world.svc.review.audit(world.bot, action="suggestion.approved")) == 1


def test_undo_takes_back_an_approval_made_by_email(mail_world: MailWorld) -> None:
    world = mail_world
    world.two_items()
    digest = world.digest()
    world.post_inbound(reply_to(digest, "approve 1"))
    assert world.answer(QUESTION) == ANSWER
    r = world.post_inbound(reply_to(digest, "undo 1"))
    assert r.json()["applied"] == 1, r.json()
    assert world.answer(QUESTION) is None


def test_the_webhook_needs_its_secret_and_a_message(mail_world: MailWorld) -> None:
    world = mail_world
    assert world.post_inbound(b"From: a@b.c\r\n\r\nhi", secret="wrong").status_code == 401
    assert world.post_inbound(b"From: a@b.c\r\n\r\nhi",
                              content_type="text/plain").status_code == 415
    r = world.post_inbound(b"")
    assert r.status_code == 422
    # Garbage is refused with an outcome, never a 500.
    r = world.post_inbound(b"\x00\xff not a mail at all")
    assert r.status_code == 200 and r.json()["outcome"] in ("malformed", "unknown_key")
    assert INBOUND_SECRET not in r.text


def test_an_edit_without_its_new_answer_never_approves_the_draft(mail_world: MailWorld
                                                                 ) -> None:
    world = mail_world
    first, _ = world.two_items()
    world.digest()
    [numbers] = [world.svc.review.mail.digest(d) for d in _digest_ids(world)]
    done = decide(world.svc.review, world.bot, numbers, Ask(action="edit", number=1),
                  actor=Actor(MANAGER, Channel.email))
    assert not done.ok and "needs the new answer" in done.message
    assert world.status(first) == SuggestionStatus.pending


def _digest_ids(world: MailWorld) -> list[str]:
    with Session(world.svc.engine) as session:
        return list(session.exec(select(MailDigest.id)))
