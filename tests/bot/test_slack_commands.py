"""The /autotrain command and the App Home, end to end: signed requests through the FastAPI
route, a recording fake Slack Web API, and what changes in the knowledge base and `answer`.

Every answer only the person sees comes back through the command's response_url (recorded
as RESPONSE_URL_METHOD); what everyone should see is a chat.postMessage in the channel."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import Response

from bot.handlers import home
from bot.ids import ActionId, BlockId, CallbackId
from core.conversations import ConversationIn, ingest_batch
from core.db import session_scope
from core.models import Conversation
from core.policy.commands import (
    Actor,
    Approve,
    Channel,
    CreateEntry,
    UpdateEntry,
    UpdateSettings,
)
from core.review import EntryView
from core.status import SuggestionStatus
from tests.bot.conftest import ALICE, CHANNEL, MALLORY, SlackWorld
from tests.fake_slack import RESPONSE_URL_METHOD, UPLOAD_METHOD, Call
from tests.helpers import ADMIN_KEY, escalated_conversation
from tests.slack_signing import (
    JSON,
    MultiSelect,
    Select,
    event_body,
    slash_command_body,
    view_submission_body,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SETUP = Actor("setup", Channel.api)
OTHER = "C0OTHER01"  # a channel that reviews no bot
QUESTION = "Do you ship to Canada?"
OLD = "Yes, within 10 business days."
NEW = "Yes, Canada Post delivers in 5 to 8 business days."


def command(world: SlackWorld, text: str, *, user: str = ALICE,
            channel: str = CHANNEL) -> Response:
    r = world.send(slash_command_body(text=text, user=user, channel=channel,
                                      response_url=world.fake.response_url))
    # Acked with no text: the answer follows through response_url. How fast the ack is
    # belongs to `python -m benchmarks.slack`, not to a wall-clock bound that a loaded
    # machine breaks.
    assert r.status_code == 200
    assert r.text == ""
    return r


def reply(world: SlackWorld, count: int = 1) -> Call:
    """The latest ephemeral answer to a command (once `count` of them arrived)."""
    call = world.fake.wait_for(RESPONSE_URL_METHOD, count=count)[-1]
    assert call.body["response_type"] == "ephemeral"
    return call


def shown(call: Call) -> str:
    return json.dumps(call.body.get("blocks") or call.decoded("blocks"), ensure_ascii=False)


def entry(world: SlackWorld, *, versions: int = 1) -> EntryView:
    """An entry about shipping to Canada; version 2 (if asked) has the newer answer."""
    done = world.svc.review.execute(CreateEntry(bot_id=world.bot.id, question=QUESTION,
                                                answer=OLD, actor=SETUP,
                                                variants=["ship to canada?"]), bot=world.bot)
    assert done.entry is not None
    if versions > 1:
        done = world.svc.review.execute(UpdateEntry(bot_id=world.bot.id,
                                                    entry_id=done.entry.id, answer=NEW,
                                                    actor=SETUP, reason="faster carrier"),
                                        bot=world.bot)
        assert done.entry is not None
    return done.entry


def conversations(world: SlackWorld) -> None:
    """This week 3 of 4 resolved by the bot; three weeks ago 1 of 2."""
    now = datetime.now(UTC)

    def one(i: int, at: datetime, resolved: bool) -> Conversation:
        return Conversation(bot_id=world.bot.id, external_id=f"c{i}", started_at=at,
                            ended_at=at, messages=[], resolved_automatically=resolved,
                            escalated=not resolved, csat=5 if resolved else 2)

    with session_scope(world.svc.engine) as session:
        for i in range(4):
            session.add(one(i, now - timedelta(days=1, hours=i), i < 3))
        for i in range(4, 6):
            session.add(one(i, now - timedelta(days=21), i == 4))


# -- stats ----------------------------------------------------------------------------------


def test_stats_posts_the_numbers_in_the_channel_with_a_chart(slack_world: SlackWorld) -> None:
    world = slack_world
    conversations(world)
    command(world, "stats", user=MALLORY)  # reading changes nothing: anyone may
    [post] = world.fake.wait_for("chat.postMessage")
    assert post.body["channel"] == CHANNEL
    numbers = world.text_of(post.blocks)
    assert "Stats — shop" in numbers and "75%" in numbers  # 3 of 4 resolved this week
    [done] = world.fake.wait_for("files.completeUploadExternal")
    assert done.body["channel_id"] == CHANNEL
    assert "week by week" in done.body["initial_comment"]
    [file] = done.decoded("files")
    assert world.fake.uploaded(file["id"]).startswith(b"\x89PNG\r\n\x1a\n")
    methods = world.fake.methods()
    assert methods.index("files.getUploadURLExternal") < methods.index(UPLOAD_METHOD) \
        < methods.index("files.completeUploadExternal")
    assert world.fake.calls_to(RESPONSE_URL_METHOD) == []  # nothing private to say


def test_stats_elsewhere_stay_private_and_a_dm_gets_the_chart(slack_world: SlackWorld) -> None:
    world = slack_world
    conversations(world)
    command(world, "shop stats", channel=OTHER)
    assert "Stats — shop" in shown(reply(world))
    command(world, "shop stats", channel="D0ALICE01")
    assert "Stats — shop" in shown(reply(world, count=2))
    [done] = world.fake.wait_for("files.completeUploadExternal")
    assert done.body["channel_id"] == "D0ALICE01"  # a DM: only its members see the file
    assert world.fake.calls_to("chat.postMessage") == []
    assert len(world.fake.calls_to("files.getUploadURLExternal")) == 1  # none in OTHER


# -- the queue, history, the sandbox ------------------------------------------------------------


def test_queue_lists_what_waits_most_urgent_first(slack_world: SlackWorld) -> None:
    world = slack_world
    world.suggestion(question="Do you gift wrap?", priority="low")
    world.suggestion(question=QUESTION, priority="critical")
    world.suggestion(question="Can I change my address?", priority="medium")
    world.svc.review.execute(Approve(suggestion_id=world.suggestion(
        question="Do you sell gift cards?"), actor=SETUP), bot=world.bot)
    command(world, "queue", user=MALLORY)
    text = shown(reply(world))
    assert "3 waiting for review" in text and "gift cards" not in text
    assert text.index("Canada") < text.index("change my address") < text.index("gift wrap")

    command(world, "queue critical")
    text = shown(reply(world, count=2))
    assert "Canada" in text and "gift wrap" not in text and "change my address" not in text
    command(world, "queue urgent")
    assert "critical, medium or low" in shown(reply(world, count=3))


def test_questions_lists_the_ones_asked_once_and_not_proposed(slack_world: SlackWorld) -> None:
    world = slack_world
    now = datetime.now(UTC)
    ingest_batch(world.svc.engine, bot_id=world.bot.id, conversations=[
        ConversationIn.model_validate(escalated_conversation(
            "once", "Do you engrave watches? my email is jo@example.com",
            "Yes, engraving is free on watches over $100.", now - timedelta(hours=2)))])
    world.svc.review.run_cycle(world.bot, as_of=now)
    command(world, "questions", user=MALLORY)
    text = shown(reply(world))
    assert "1 questions asked once, with no similar question" in text
    assert "Do you engrave watches?" in text and "jo@example.com" not in text
    assert world.svc.review.queue(world.bot) == []
    command(world, "questions declined")
    assert "No questions declined by the agents" in shown(reply(world, count=2))
    command(world, "questions spam")
    assert "`questions` shows the questions asked once" in shown(reply(world, count=3))


def test_history_of_an_entry_named_by_words_of_its_question(slack_world: SlackWorld) -> None:
    world = slack_world
    e = entry(world, versions=2)
    command(world, "history ship canada", user=MALLORY)
    text = shown(reply(world))
    assert "Entry history" in text and "Canada Post" in text
    assert "*v2*" in text and "*v1*" in text and "faster carrier" in text
    assert f"/autotrain revert {e.id}" in text
    command(world, "history returns policy")
    assert "no entry matches 'returns policy'" in shown(reply(world, count=2))


def test_sandbox_shows_today_and_with_the_pending_suggestions(slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion(answer=NEW)
    command(world, "sandbox can you ship my order to canada", user=MALLORY)
    text = shown(reply(world))
    assert "Today the bot answers* would hand over to a person" in text
    assert "With the 1 most urgent pending suggestion approved" in text and "5 to 8" in text
    assert world.status(sid) == SuggestionStatus.pending
    command(world, "sandbox")
    assert "needs a question" in shown(reply(world, count=2))


# -- rollback and revert ---------------------------------------------------------------------


def test_rollback_by_someone_who_is_not_an_approver_is_refused_and_audited(
        slack_world: SlackWorld) -> None:
    world = slack_world
    e = entry(world)
    command(world, "rollback ship canada", user=MALLORY)
    [told] = world.fake.wait_for("chat.postEphemeral")
    assert told.body["user"] == MALLORY and "approvers" in told.body["text"]
    [refused] = world.audit("review.refused")
    assert (refused.actor, refused.entry_id, refused.after) == \
        (MALLORY, e.id, {"attempted": "rollback"})
    assert world.svc.review.entry(e.id, bot=world.bot).active
    assert world.answer(QUESTION) == OLD
    assert world.fake.calls_to("chat.postMessage") == []


def test_rollback_switches_a_new_entry_off_for_everyone_to_see(slack_world: SlackWorld) -> None:
    world = slack_world
    e = entry(world)
    assert world.answer(QUESTION) == OLD
    command(world, "rollback ship canada")
    [post] = world.fake.wait_for("chat.postMessage")
    assert post.body["channel"] == CHANNEL
    assert f"<@{ALICE}>" in post.body["text"] and "Entry switched off" in post.body["text"]
    assert not world.svc.review.entry(e.id, bot=world.bot).active
    assert world.answer(QUESTION) is None
    [row] = world.audit("entry.rolled_back")
    assert (row.actor, row.channel) == (ALICE, "slack")
    # The switch-off is a change of its own: rolling it back serves the answer again.
    command(world, "rollback ship canada")
    posts = world.fake.wait_for("chat.postMessage", count=2)
    assert "rolled back to the version before" in posts[-1].body["text"]
    assert world.answer(QUESTION) == OLD


def test_revert_to_version_1_restores_the_old_answer(slack_world: SlackWorld) -> None:
    world = slack_world
    e = entry(world, versions=2)
    assert world.answer(QUESTION) == NEW
    command(world, f"revert {e.id[:8]} 1")
    [post] = world.fake.wait_for("chat.postMessage")
    assert "reverted to version 1" in post.body["text"] and f"<@{ALICE}>" in post.body["text"]
    assert world.answer(QUESTION) == OLD
    assert world.svc.review.entry(e.id, bot=world.bot).version == 3


def test_revert_without_a_version_number_gets_help_and_changes_nothing(
        slack_world: SlackWorld) -> None:
    world = slack_world
    e = entry(world, versions=2)
    command(world, "revert x notanumber")
    text = shown(reply(world))
    assert "`notanumber` is not a version number" in text and "/autotrain help" in text
    command(world, f"revert {e.id} 7")
    assert "has no version 7" in shown(reply(world, count=2))
    assert world.answer(QUESTION) == NEW
    assert world.fake.calls_to("chat.postMessage") == []


# -- settings -------------------------------------------------------------------------------


def settings_values(modal: dict[str, Any], *, autonomy: str = "moderate",
                    limit: str = "5") -> dict[str, Any]:
    excluded = [o["value"] for b in modal["blocks"] if b.get("block_id") == BlockId.excluded
                for o in b["element"].get("initial_options", [])]
    return {BlockId.autonomy: {ActionId.autonomy_select: Select(autonomy)},
            BlockId.frequency: {ActionId.frequency_select: Select("weekly")},
            BlockId.excluded: {ActionId.excluded_select: MultiSelect(tuple(excluded[:1]))},
            BlockId.limit: {ActionId.limit_input: {"type": "number_input", "value": limit}}}


def test_settings_open_a_modal_whose_submission_changes_autonomy(slack_world: SlackWorld
                                                                 ) -> None:
    world = slack_world
    command(world, "settings")
    [opened] = world.fake.wait_for("views.open")
    assert opened.body["trigger_id"] == "trig-1"
    modal = opened.decoded("view")
    assert modal["callback_id"] == CallbackId.settings

    def submit(user: str = ALICE, **kw: str) -> Response:
        return world.send(view_submission_body(
            callback_id=CallbackId.settings, values=settings_values(modal, **kw),
            private_metadata=modal["private_metadata"], user=user))

    for bad in ("lots", "-3", "20000"):  # the last passes parsing; the policy refuses it
        r = submit(limit=bad)
        assert r.json()["response_action"] == "errors", bad
        assert list(r.json()["errors"]) == [BlockId.limit]
    r = submit()
    assert r.status_code == 200 and r.text == ""
    [told] = world.fake.wait_for("chat.postEphemeral")
    assert told.body["user"] == ALICE and "Settings saved" in told.body["text"]
    got = world.client.get("/api/v1/bots/shop/settings", headers=ADMIN).json()
    assert (got["autonomy"], got["notify_frequency"], got["daily_auto_publish_limit"]) == \
        ("moderate", "weekly", 5)
    assert got["excluded_categories"] == ["pricing"]
    row = world.audit("settings.updated")[0]  # newest first; the fixture set up the channel
    assert (row.actor, row.after["autonomy"]) == (ALICE, "moderate")

    # The metadata says which bot, never who: a non-approver's submission is refused.
    submit(user=MALLORY, autonomy="advanced")
    world.fake.wait_for("chat.postEphemeral", count=2)
    assert world.client.get("/api/v1/bots/shop/settings",
                            headers=ADMIN).json()["autonomy"] == "moderate"
    assert [r.actor for r in world.audit("review.refused")] == [MALLORY]


def test_settings_are_refused_to_someone_who_is_not_an_approver(slack_world: SlackWorld
                                                                ) -> None:
    world = slack_world
    command(world, "settings", user=MALLORY)
    [told] = world.fake.wait_for("chat.postEphemeral")
    assert told.body["user"] == MALLORY and "approvers" in told.body["text"]
    assert world.fake.calls_to("views.open") == []


# -- pause and resume ---------------------------------------------------------------------


def delivered(world: SlackWorld, timeout: float = 5.0) -> None:
    """Wait until the handler recorded Slack's delivery of every announcement (it does so
    right after its post, which the fake has already seen)."""
    deadline = time.monotonic() + timeout
    while world.svc.review.pending_announcements(world.bot, Channel.slack):
        assert time.monotonic() < deadline, "announcement never marked delivered"
        time.sleep(0.02)


def test_pause_and_resume_are_announced_once_in_the_channel(slack_world: SlackWorld) -> None:
    world = slack_world
    command(world, "pause")
    [post] = world.fake.wait_for("chat.postMessage")
    assert post.body["channel"] == CHANNEL and f"paused by {ALICE}" in post.body["text"]
    assert world.svc.review.bot_by_id(world.bot.id).settings.enabled is False
    delivered(world)
    assert world.post_announcements().announcements == []  # delivered already: not twice
    command(world, "pause")
    assert "already paused" in shown(reply(world))
    command(world, "resume")
    posts = world.fake.wait_for("chat.postMessage", count=2)
    assert f"resumed by {ALICE}" in posts[-1].body["text"]
    assert world.svc.review.bot_by_id(world.bot.id).settings.enabled is True


# -- help, mistakes, other channels ------------------------------------------------------------


def test_an_unknown_subcommand_or_none_gets_help(slack_world: SlackWorld) -> None:
    world = slack_world
    command(world, "unknown")
    text = shown(reply(world))
    assert "`unknown` is not an autotrain command" in text and "/autotrain queue" in text
    command(world, "")
    assert "Autotrain commands" in shown(reply(world, count=2))


def test_from_another_channel_the_first_word_names_the_bot(slack_world: SlackWorld) -> None:
    world = slack_world
    world.suggestion()
    command(world, "shop queue", channel=OTHER, user=MALLORY)
    assert QUESTION in shown(reply(world))
    command(world, "nobot queue", channel=OTHER)
    text = shown(reply(world, count=2))
    assert "`nobot` is not a bot reviewed in Slack" in text
    assert f"`shop` (<#{CHANNEL}>)" in text
    command(world, "queue", channel=OTHER)
    assert "Which bot?" in shown(reply(world, count=3))
    command(world, "shop help", channel=OTHER)
    assert "/autotrain shop stats" in shown(reply(world, count=4))


def test_a_change_typed_elsewhere_is_announced_in_the_review_channel(slack_world: SlackWorld
                                                                     ) -> None:
    world = slack_world
    entry(world)
    command(world, "shop rollback ship canada", channel=OTHER)
    [post] = world.fake.wait_for("chat.postMessage")
    assert post.body["channel"] == CHANNEL and f"<@{ALICE}>" in post.body["text"]
    assert "announced in the review channel" in shown(reply(world))
    assert world.answer(QUESTION) is None


def test_a_slack_failure_is_answered_with_a_reference_not_a_trace(slack_world: SlackWorld
                                                                  ) -> None:
    world = slack_world
    world.fake.fail_next("views.open", error="expired_trigger_id")
    command(world, "settings")
    text = shown(reply(world))
    assert "quote reference" in text and "Traceback" not in text


# -- App Home -------------------------------------------------------------------------------


def open_home(world: SlackWorld, user: str = ALICE, tab: str = "home") -> None:
    body = event_body({"type": "app_home_opened", "user": user, "tab": tab,
                       "channel": "D0HOME001", "event_ts": "1700000000.000100"})
    r = world.send(body, headers={"Content-Type": JSON})
    assert r.status_code == 200


def test_app_home_shows_the_queue_and_is_refreshed_after_a_decision(slack_world: SlackWorld
                                                                    ) -> None:
    world = slack_world
    sid = world.suggestion()
    world.suggestion(question="Do you gift wrap?", priority="low")
    open_home(world)
    [published] = world.fake.wait_for("views.publish")
    assert published.body["user_id"] == ALICE
    view = published.decoded("view")
    text = json.dumps(view, ensure_ascii=False)
    assert view["type"] == "home" and "Autotrain — shop" in text
    assert text.index(QUESTION) < text.index("gift wrap")  # critical first
    deps = world.client.app.state.slack  # type: ignore[attr-defined]
    refresh = world.client.portal.call  # type: ignore[union-attr]
    assert refresh(home.refresh_homes, deps) == 0  # nothing changed: no Slack call

    world.svc.review.execute(Approve(suggestion_id=sid, actor=Actor(ALICE, Channel.slack)),
                             bot=world.bot)
    assert refresh(home.refresh_homes, deps) == 1
    latest = world.fake.wait_for("views.publish", count=2)[-1]
    text = json.dumps(latest.decoded("view"), ensure_ascii=False)
    assert latest.body["user_id"] == ALICE and QUESTION not in text and "gift wrap" in text


def test_an_approve_click_refreshes_the_home_of_whoever_has_it_open(slack_world: SlackWorld
                                                                   ) -> None:
    world = slack_world
    sid = world.suggestion()
    world.post_cards()
    open_home(world, user=MALLORY)  # may not decide, may look
    [before] = world.fake.wait_for("views.publish")
    assert QUESTION in json.dumps(before.decoded("view"), ensure_ascii=False)
    world.click(ActionId.approve, sid)
    world.settle()
    [_, after] = world.fake.wait_for("views.publish", count=2)
    assert after.body["user_id"] == MALLORY
    assert QUESTION not in json.dumps(after.decoded("view"), ensure_ascii=False)


def test_the_messages_tab_publishes_nothing(slack_world: SlackWorld) -> None:
    world = slack_world
    open_home(world, tab="messages")
    world.settle()
    deps = world.client.app.state.slack  # type: ignore[attr-defined]
    assert world.client.portal.call(home.refresh_homes, deps) == 0  # type: ignore[union-attr]
    assert world.fake.calls_to("views.publish") == []


def test_app_home_leads_with_the_bots_the_person_approves(slack_world: SlackWorld) -> None:
    world = slack_world
    volt = world.svc.review.create_bot(slug="voltcart", name="Voltcart")
    world.svc.review.execute(UpdateSettings(bot_id=volt.id, actor=SETUP, patch={
        "slack_channel": "C0REVIEW2", "slack_approvers": [MALLORY]}), bot=volt)
    world.svc.review.create_bot(slug="quiet", name="Quiet")  # not reviewed in Slack
    open_home(world, user=ALICE)
    [alice] = world.fake.wait_for("views.publish")
    text = json.dumps(alice.decoded("view"), ensure_ascii=False)
    assert "Autotrain — shop" in text and "Autotrain — voltcart" not in text
    assert "Also reviewed in Slack: `voltcart` (<#C0REVIEW2>)" in text and "quiet" not in text
    open_home(world, user="U0NOBODY1")  # approves no bot: sees every bot reviewed in Slack
    nobody = world.fake.wait_for("views.publish", count=2)[-1]
    text = json.dumps(nobody.decoded("view"), ensure_ascii=False)
    assert nobody.body["user_id"] == "U0NOBODY1"
    assert text.index("Autotrain — shop") < text.index("Autotrain — voltcart")
