"""The email digest on its schedule (daily or weekly from 09:00 in the bot's timezone; with
"critical only", when something critical is new), its announcements, and its delivery when
the mail server refuses it or email is off."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.mail.digest import EmailRound, email_round
from core.policy.commands import Actor, Channel, SetPaused
from tests.bot.mail.conftest import (
    MANAGER,
    MailWorld,
    MakeMailWorld,
    parsed,
    text_of,
)

# 09:00 in New York is 14:00 UTC in December: a digest timed on UTC would come 5 hours early.
NEW_YORK = "America/New_York"
ALICE = Actor("U0ALICE1", Channel.slack)


def new_york(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of December 2026 in New York (the 7th and the 14th are Mondays)."""
    return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo(NEW_YORK))


async def round_at(world: MailWorld, at: datetime | None) -> EmailRound:
    mail = world.mail
    return await email_round(mail.review, mail.settings, mail.mailer, at=at)


def subjects(world: MailWorld) -> list[str]:
    return [str(m.message["Subject"]) for m in world.smtp.messages]


async def test_the_daily_digest_goes_from_nine_in_the_bots_timezone_once_a_day(
        mail_world: MailWorld) -> None:
    world = mail_world
    world.configure(timezone=NEW_YORK)
    world.suggestion()

    before_nine = await round_at(world, new_york(7, 8, 59))  # 13:59 UTC
    at_nine = await round_at(world, new_york(7, 9, 0))
    same_day = [await round_at(world, new_york(7, h)) for h in (12, 20)]  # 20h: the 8th in UTC
    next_morning = await round_at(world, new_york(8, 8, 59))
    next_day = await round_at(world, new_york(8, 9, 5))

    assert before_nine.digests == [] and next_morning.digests == []
    assert (at_nine.digests, at_nine.sent) == (["shop"], 1)
    assert [r.digests for r in same_day] == [[], []]
    assert (next_day.digests, next_day.sent) == (["shop"], 1)
    assert [m.rcpt_tos for m in world.smtp.messages] == [(MANAGER,), (MANAGER,)]
    # Dated in the manager's day, not the server's.
    first, second = subjects(world)
    assert "digest 2026-12-07" in first and "digest 2026-12-08" in second


async def test_the_weekly_digest_goes_on_monday_from_nine_once_a_week(mail_world: MailWorld
                                                                      ) -> None:
    world = mail_world
    world.configure(timezone=NEW_YORK, notify_frequency="weekly")
    world.suggestion()

    monday_early = await round_at(world, new_york(7, 8, 59))
    monday = await round_at(world, new_york(7, 9, 0))
    rest_of_week = [await round_at(world, new_york(day, 10)) for day in range(8, 14)]
    next_monday_early = await round_at(world, new_york(14, 8, 30))
    next_monday = await round_at(world, new_york(14, 9, 1))

    assert monday_early.digests == [] and next_monday_early.digests == []
    assert monday.digests == ["shop"] and next_monday.digests == ["shop"]
    assert [r.digests for r in rest_of_week] == [[]] * 6
    assert len(world.smtp.messages) == 2
    assert "digest 2026-12-14" in subjects(world)[1]


async def test_critical_only_sends_a_digest_for_each_new_critical_suggestion_once(
        mail_world: MailWorld) -> None:
    world = mail_world
    world.configure(notify_frequency="critical_only")
    world.suggestion(question="Do you gift wrap?", answer="Yes, for 3 euros.",
                     priority="medium", score=3.0)

    nothing_critical = await round_at(world, None)
    world.suggestion()  # critical
    first = await round_at(world, None)
    again = await round_at(world, new_york(9, 9))  # not the time: the suggestion decides
    world.suggestion(question="Is there a warranty?", answer="Two years on everything.")
    second = await round_at(world, None)

    assert nothing_critical.digests == [] and again.digests == []
    assert first.digests == ["shop"] and second.digests == ["shop"]
    [one, two] = world.smtp.messages
    assert "Do you ship to Canada?" in text_of(one.message)
    assert "Is there a warranty?" not in text_of(one.message)
    assert "Is there a warranty?" in text_of(two.message)


def test_an_announcement_is_numbered_in_the_next_digest_once(mail_world: MailWorld) -> None:
    world = mail_world
    world.suggestion()
    world.svc.review.execute(SetPaused(bot_id=world.bot.id, paused=True, actor=ALICE),
                             bot=world.bot)
    paused = text_of(world.digest())
    world.svc.review.execute(SetPaused(bot_id=world.bot.id, paused=False, actor=ALICE),
                             bot=world.bot)
    resumed = text_of(world.digest())
    quiet = world.send_digest()
    last = text_of(world.smtp.wait_for(3)[-1].message)

    # Numbered after the one suggestion, so "2" means the announcement and nothing else.
    assert re.search(r"^2\. \S+ Auto-training paused by U0ALICE1", paused, re.M), paused
    assert re.search(r"^2\. \S+ Auto-training resumed by U0ALICE1", resumed, re.M), resumed
    assert "paused" not in resumed
    assert quiet["announcements"] == 0
    assert "SINCE THE LAST DIGEST" not in last and "Auto-training" not in last


def test_the_digest_route_says_why_a_bot_without_recipients_gets_no_email(
        mail_world: MailWorld) -> None:
    world = mail_world
    blog = world.add_bot("blog", recipients=[])
    world.suggestion(bot=blog)

    sent = world.send_digest(blog)

    assert sent["sent"] is False
    assert "email_recipients" in sent["reason"] and "blog" in sent["reason"]
    assert world.smtp.messages == []


async def test_a_digest_the_server_refused_is_kept_and_sent_once_after_the_backoff(
        mail_world: MailWorld) -> None:
    world = mail_world
    # Critical only, and the one critical suggestion is in the refused digest: the rounds
    # below have no digest of their own to send, only the retry.
    world.configure(notify_frequency="critical_only")
    world.suggestion()
    world.smtp.fail_next("451 4.3.0 try later")

    sent = world.send_digest()
    [queued] = world.svc.review.mail.mail(bot=world.bot, purpose="digest")
    refused_at = datetime.now(UTC)
    too_early = await round_at(world, refused_at + timedelta(seconds=5))
    after_backoff = await round_at(world, refused_at + timedelta(minutes=1))
    later = await round_at(world, refused_at + timedelta(hours=2))

    assert (sent["delivered"], sent["waiting_for_retry"]) == (0, 1)
    assert queued.sent_at is None and queued.last_error and "451" in queued.last_error
    assert too_early.sent == 0
    assert (after_backoff.sent, after_backoff.failed, later.sent) == (1, 0, 0)
    [got] = world.smtp.messages
    assert got.rcpt_tos == (MANAGER,)
    assert str(got.message["Message-ID"]).strip() == queued.message_id
    assert "Do you ship to Canada?" in text_of(got.message)
    [done] = world.svc.review.mail.mail(bot=world.bot, purpose="digest")
    assert done.sent_at is not None


def test_with_email_off_the_digest_is_an_eml_file_in_the_outbox(
        make_mail_world: MakeMailWorld) -> None:
    world = make_mail_world(SMTP_HOST="")
    world.suggestion()

    sent = world.send_digest()

    assert (sent["delivered"], sent["waiting_for_retry"]) == (1, 0)
    [eml] = list(world.settings.mail_outbox_dir.iterdir())  # no half-written file left
    assert eml.suffix == ".eml"
    msg = parsed(eml.read_bytes())
    assert str(msg["To"]) == MANAGER and "Shop" in str(msg["Subject"])
    assert re.fullmatch(r"autotrain\+[a-z2-7]{32}@support\.example", str(msg["Reply-To"]))
    assert "Do you ship to Canada?" in text_of(msg)
    assert world.smtp.messages == []
