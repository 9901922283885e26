"""One-click links in the digest: opening one (as mail scanners do) changes nothing; the page's
button decides once; a reused, forged or expired link is refused."""

from __future__ import annotations

import re

import itsdangerous.timed
import pytest
from itsdangerous import URLSafeTimedSerializer

from bot.mail import links as links_module
from core.policy.commands import UpdateSettings
from core.status import SuggestionStatus
from tests.bot.mail.conftest import MANAGER, SETUP, MailWorld, html_of

QUESTION = "Do you ship to Canada?"
ANSWER = "Yes, we ship to Canada in 5 to 8 business days."
LINK = re.compile(r"https://autotrain\.shop\.example(/email/links/[A-Za-z0-9_.\-]+)")


def digest_links(world: MailWorld) -> dict[str, str]:
    """The digest's links by what their page says they do ("Approve item 1", ...)."""
    html = html_of(world.digest())
    found: dict[str, str] = {}
    for path in dict.fromkeys(LINK.findall(html)):
        page = world.client.get(path)
        assert page.status_code == 200, page.text
        title = re.search(r"<title>(.*?) —", page.text)
        assert title is not None
        found[title.group(1)] = path
    return found


def test_opening_a_link_changes_nothing_and_the_button_approves_once(mail_world: MailWorld
                                                                     ) -> None:
    world = mail_world
    sid = world.suggestion()
    links = digest_links(world)
    approve = links["Approve item 1"]
    # A scanner following and rendering the link, twice, and a HEAD.
    for _ in range(2):
        page = world.client.get(approve)
        assert page.status_code == 200 and QUESTION in page.text
        assert page.headers["cache-control"] == "no-store"
    assert world.client.head(approve).status_code == 200
    assert world.status(sid) == SuggestionStatus.pending and world.answer(QUESTION) is None

    done = world.client.post(approve)
    assert done.status_code == 200 and "approved" in done.text.lower()
    assert world.status(sid) == SuggestionStatus.approved
    assert world.answer(QUESTION) == ANSWER
    [audit] = world.svc.review.audit(world.bot, action="suggestion.approved")
    assert (audit.actor, audit.channel) == (MANAGER, "link")

    again = world.client.post(approve)
    assert again.status_code == 409 and "already used" in again.text
    assert len(world.svc.review.audit(world.bot, action="suggestion.approved")) == 1


def test_reject_link_takes_a_reason_from_its_page(mail_world: MailWorld) -> None:
    world = mail_world
    sid = world.suggestion()
    reject = digest_links(world)["Reject item 1"]
    page = world.client.get(reject)
    assert 'name="reason"' in page.text
    done = world.client.post(reject, data={"reason": "tone", "comment": "too casual"})
    assert done.status_code == 200
    card = world.svc.review.card(sid, bot=world.bot)
    assert card.status == SuggestionStatus.rejected and card.reject_reason == "tone"


def test_a_forged_or_changed_link_is_refused(mail_world: MailWorld) -> None:
    world = mail_world
    sid = world.suggestion()
    approve = digest_links(world)["Approve item 1"]
    tampered = approve[:-3] + ("AAA" if not approve.endswith("AAA") else "BBB")
    for path in (tampered, "/email/links/not-a-token"):
        assert world.client.get(path).status_code == 400
        assert world.client.post(path).status_code == 400
    # Signed with another key: the payload may say anything, it is still refused.
    other = URLSafeTimedSerializer("someone-else", salt=links_module.SALT).dumps(
        {"j": "x", "r": MANAGER, "b": world.bot.id, "d": "d", "n": 1, "a": "approve"})
    assert world.client.post(f"/email/links/{other}").status_code == 400
    assert world.status(sid) == SuggestionStatus.pending


def test_an_expired_link_is_refused(mail_world: MailWorld, monkeypatch: pytest.MonkeyPatch
                                    ) -> None:
    world = mail_world
    sid = world.suggestion()
    approve = digest_links(world)["Approve item 1"]
    days = world.svc.settings.email_key_days
    real = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real() + days * 86400 + 60)
    page = world.client.post(approve)
    assert page.status_code == 400 and "expired" in page.text
    assert world.status(sid) == SuggestionStatus.pending


def test_a_link_stops_working_when_its_recipient_is_removed(mail_world: MailWorld) -> None:
    world = mail_world
    sid = world.suggestion()
    approve = digest_links(world)["Approve item 1"]
    world.svc.review.execute(UpdateSettings(bot_id=world.bot.id, actor=SETUP, patch={
        "email_recipients": ["someone.else@shop.example"]}), bot=world.bot)
    assert world.client.post(approve).status_code == 400
    assert world.status(sid) == SuggestionStatus.pending
