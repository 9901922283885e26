"""Per-bot email settings: who gets the digest and may answer it (`email_recipients`)."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import TYPE_CHECKING, Any

import pytest
from httpx import Response

if TYPE_CHECKING:
    from core.settings import Settings
    from tests.api.conftest import Api
    from tests.conftest import BotHandle


def patch_recipients(api: Api, slug: str, value: Any) -> Response:
    return api.client.patch(f"/api/v1/bots/{slug}/settings", headers=api.admin,
                            json={"email_recipients": value})


def test_recipients_are_saved_lowercased_once_each_and_each_gets_one_digest(
        api: Api, bot: BotHandle, settings: Settings) -> None:
    r = patch_recipients(api, bot.slug, ["Pat.Manager@Shop.Example", " pat.manager@shop.example ",
                                         "ops@shop.example", "OPS@SHOP.EXAMPLE"])
    assert r.status_code == 200, r.text
    saved = api.settings(bot.slug)["email_recipients"]

    # Email is off in this world (no SMTP_HOST): each digest is an .eml file in the outbox.
    sent = api.client.post(f"/api/v1/bots/{bot.slug}/digest", headers=api.admin).json()["email"]
    outbox = sorted(settings.mail_outbox_dir.glob("*.eml"))
    to = sorted(str(message_from_bytes(p.read_bytes(), policy=policy.default)["To"])
                for p in outbox)

    assert saved == ["pat.manager@shop.example", "ops@shop.example"]
    assert (sent["recipients"], sent["delivered"]) == (2, 2)
    assert to == ["ops@shop.example", "pat.manager@shop.example"]


def test_an_empty_list_turns_the_email_digest_off(api: Api, bot: BotHandle) -> None:
    assert patch_recipients(api, bot.slug, ["pat@shop.example"]).status_code == 200
    r = patch_recipients(api, bot.slug, [])
    sent = api.client.post(f"/api/v1/bots/{bot.slug}/digest", headers=api.admin).json()["email"]

    assert r.status_code == 200 and api.settings(bot.slug)["email_recipients"] == []
    assert sent["sent"] is False and "email_recipients" in sent["reason"]


@pytest.mark.parametrize(("value", "words"), [
    (["Pat Manager <pat@shop.example>"], "is not an email address"),
    (["pat@shop"], "is not an email address"),
    (["pat.shop.example"], "is not an email address"),
    (["pat@@shop.example"], "is not an email address"),
    (["pat@shop.example, ops@shop.example"], "is not an email address"),
    (["ops@shop.example", "not an address"], "is not an email address"),
    ([""], "is not an email address"),
    ("pat@shop.example", "list"),
    ([f"user{n}@shop.example" for n in range(101)], "at most 100"),
])
def test_a_bad_recipient_list_is_422_naming_the_field_and_nothing_is_written(
        api: Api, bot: BotHandle, value: Any, words: str) -> None:
    assert patch_recipients(api, bot.slug, ["pat@shop.example"]).status_code == 200
    before = api.settings(bot.slug)

    r = patch_recipients(api, bot.slug, value)

    assert r.status_code == 422, r.text
    [err] = [e for e in r.json()["detail"] if "email_recipients" in e["loc"]]
    assert words in err["msg"]
    assert api.settings(bot.slug) == before  # not even the good address of a mixed list
