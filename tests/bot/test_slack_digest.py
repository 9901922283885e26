"""The Slack digest: on demand over HTTP and on the bot's schedule, cards never posted twice,
and a decision inside a digest re-renders that digest."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.slack_notify import SlackRound, post_due_digest
from core.policy.commands import Actor, Channel, UpdateSettings
from core.review import BotRef
from core.status import SuggestionStatus
from tests.bot.conftest import ALICE, CHANNEL, SlackWorld
from tests.helpers import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_the_digest_shows_the_numbers_and_the_top_cards_once(slack_world: SlackWorld) -> None:
    world = slack_world
    ids = [world.suggestion(question=f"Do you ship to country number {i}?",
                            priority="medium", confidence=90 - i) for i in range(8)]
    r = world.client.post(f"/api/v1/bots/{world.bot.slug}/digest", headers=ADMIN)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["slack"]["sent"] is True and got["slack"]["cards"] == ids[:5]
    assert got["slack"]["more"] == 3 and got["email"]["sent"] is False
    [post] = world.fake.calls_to("chat.postMessage")
    shown = world.text_of(post.blocks)
    assert post.body["channel"] == CHANNEL and "Review digest" in shown
    assert "country number 0" in shown and "country number 5" not in shown
    assert "3 more" in shown and "/autotrain queue" in shown
    # The cards it showed are not posted again; the others still get theirs.
    assert world.post_cards().cards_posted == ids[5:]
    again = world.client.post(f"/api/v1/bots/{world.bot.slug}/digest", headers=ADMIN).json()
    assert again["slack"]["cards"] == []


def test_approving_inside_a_digest_re_renders_the_digest(slack_world: SlackWorld) -> None:
    world = slack_world
    first = world.suggestion(question="Do you ship to Canada?", priority="critical")
    second = world.suggestion(question="Do you ship to Mexico?", priority="medium")
    sent = world.client.post(f"/api/v1/bots/{world.bot.slug}/digest", headers=ADMIN).json()
    ts = sent["slack"]["ts"]
    world.click("suggestion_approve", first)
    [update] = world.fake.wait_for("chat.update")
    assert update.body["ts"] == ts
    digest = world.text_of(update.blocks)
    assert f"Approved by <@{ALICE}>" in digest or ("Approved" in digest and ALICE in digest)
    assert "Do you ship to Mexico?" in digest and "suggestion_approve" in digest
    assert world.status(first) == SuggestionStatus.approved
    assert world.status(second) == SuggestionStatus.pending


def test_a_bot_key_cannot_send_the_digest(slack_world: SlackWorld) -> None:
    world = slack_world
    key = world.client.post(f"/api/v1/bots/{world.bot.slug}/keys", json={"name": "chatbot"},
                            headers=ADMIN).json()["key"]
    r = world.client.post(f"/api/v1/bots/{world.bot.slug}/digest",
                          headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403
    assert world.fake.calls_to("chat.postMessage") == []


def _frequency(world: SlackWorld, frequency: str, timezone: str = "Europe/Paris") -> BotRef:
    world.svc.review.execute(UpdateSettings(bot_id=world.bot.id, actor=Actor("a", Channel.api),
                                            patch={"notify_frequency": frequency,
                                                   "timezone": timezone}), bot=world.bot)
    return world.svc.review.bot_by_id(world.bot.id)


def test_the_schedule_follows_notify_frequency_in_the_bots_timezone(slack_world: SlackWorld
                                                                    ) -> None:
    world = slack_world
    review = world.svc.review
    daily = _frequency(world, "daily")
    # 07:30 UTC is 08:30 in Paris in winter: not yet; 08:00 UTC is 09:00 there.
    assert review.digest_due(daily, "slack", at=datetime(2026, 12, 2, 7, 30, tzinfo=UTC)) \
        is None
    due = review.digest_due(daily, "slack", at=datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
    assert due == "2026-12-02"
    assert review.record_digest(daily, "slack", due) is True
    assert review.record_digest(daily, "slack", due) is False  # another process: once
    assert review.digest_due(daily, "slack", at=datetime(2026, 12, 2, 18, 0, tzinfo=UTC)) \
        is None
    weekly = _frequency(world, "weekly")
    assert review.digest_due(weekly, "slack", at=datetime(2026, 12, 7, 7, 0, tzinfo=UTC)) \
        is None  # Monday 08:00 in Paris
    assert review.digest_due(weekly, "slack", at=datetime(2026, 12, 7, 9, 0, tzinfo=UTC)) \
        == "2026-W50"
    quiet = _frequency(world, "critical_only")
    assert review.digest_due(quiet, "slack", at=datetime(2026, 12, 7, 9, 0, tzinfo=UTC)) \
        is None


def test_a_due_digest_is_posted_by_the_round_once(slack_world: SlackWorld) -> None:
    world = slack_world
    bot = _frequency(world, "daily", timezone="UTC")
    world.suggestion(priority="low")
    client = world.client.app.state.slack.client  # type: ignore[attr-defined]
    morning, evening = (datetime(2026, 12, 2, h, 0, tzinfo=UTC) for h in (8, 10))

    def round_at(at: datetime) -> SlackRound:
        return world.client.portal.call(  # type: ignore[union-attr]
            lambda: post_due_digest(world.svc.review, client, bot, at=at))

    assert round_at(morning).digests == []  # before 09:00 in the bot's timezone
    assert world.fake.calls_to("chat.postMessage") == []
    assert round_at(evening).digests == [bot.slug]
    assert round_at(evening).digests == []  # sent once
    [post] = world.fake.calls_to("chat.postMessage")
    assert "Review digest" in json.dumps(post.blocks)


def test_a_scheduled_digest_waits_until_there_is_something_to_review(slack_world: SlackWorld
                                                                     ) -> None:
    world = slack_world
    bot = _frequency(world, "daily", timezone="UTC")
    client = world.client.app.state.slack.client  # type: ignore[attr-defined]

    def round_at(hour: int) -> SlackRound:
        at = datetime(2026, 12, 2, hour, 0, tzinfo=UTC)
        return world.client.portal.call(  # type: ignore[union-attr]
            lambda: post_due_digest(world.svc.review, client, bot, at=at))

    assert round_at(10).digests == []  # nothing pending: no "nothing to review" message
    assert world.fake.calls_to("chat.postMessage") == []
    world.suggestion(priority="low")
    assert round_at(15).digests == [bot.slug]  # the same day, once there is
