"""Suggestion cards in Slack, end to end: signed requests through the FastAPI route, a
recording fake Slack Web API, and what changes in the knowledge base and in `answer`."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import pytest

from bot.handlers import context
from bot.ids import ActionId, BlockId, CallbackId, DeferChoice
from core.policy.commands import Actor, Channel, Reject, RejectReason
from core.status import SuggestionStatus
from tests.bot.conftest import ALICE, CHANNEL, MALLORY, SlackWorld
from tests.slack_signing import Select

QUESTION = "Do you ship to Canada?"


def posted_card(world: SlackWorld, sid: str) -> str:
    world.post_cards()
    [post] = world.fake.calls_to("chat.postMessage")
    assert post.body["channel"] == CHANNEL
    assert QUESTION in world.text_of(post.blocks)
    return world.card_ts(sid)


def test_approve_updates_the_card_in_place_and_the_answer_is_live(slack_world: SlackWorld
                                                                   ) -> None:
    world = slack_world
    sid = world.suggestion()
    ts = posted_card(world, sid)
    assert world.answer(QUESTION) is None  # the bot cannot answer it yet

    started = time.perf_counter()
    r = world.click(ActionId.approve, sid)
    acked = time.perf_counter() - started
    assert r.status_code == 200 and acked < 3.0
    [update] = world.fake.wait_for("chat.update")
    assert (update.body["channel"], update.body["ts"]) == (CHANNEL, ts)
    card = world.text_of(update.blocks)
    assert f"<@{ALICE}>" in card and "Approved" in card and "Undo" in card
    assert ActionId.approve not in card  # no second approve button on a decided card
    assert world.status(sid) == SuggestionStatus.approved
    assert world.answer(QUESTION) == "Yes, we ship to Canada in 5 to 8 business days."
    [row] = world.audit("suggestion.approved")
    assert (row.actor, row.channel) == (ALICE, "slack")


def test_a_second_click_records_nothing_and_tells_who_decided(slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    world.click(ActionId.approve, sid)
    world.fake.wait_for("chat.update")
    world.click(ActionId.approve, sid)
    [told] = world.fake.wait_for("chat.postEphemeral")
    assert told.body["user"] == ALICE and f"already approved by {ALICE}" in told.body["text"]
    assert len(world.audit("suggestion.approved")) == 1


def test_a_card_decided_on_another_channel_is_updated_and_a_late_click_is_refused(
        slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    world.svc.review.execute(Reject(suggestion_id=sid, reason=RejectReason.wrong_information,
                                    actor=Actor("manager@shop.example", Channel.email)),
                             bot=world.bot)
    assert world.sync_cards().cards_updated == [sid]
    card = world.text_of(world.fake.last("chat.update").blocks)
    assert "Rejected" in card and "wrong information" in card and "manager@shop.example" in card
    assert world.sync_cards().cards_updated == []  # already shows it
    world.click(ActionId.approve, sid)
    [told] = world.fake.wait_for("chat.postEphemeral")
    assert "already rejected by manager@shop.example" in told.body["text"]
    assert world.status(sid) == SuggestionStatus.rejected


def test_someone_who_is_not_an_approver_is_refused_and_the_attempt_audited(
        slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    world.click(ActionId.approve, sid, user=MALLORY)
    [told] = world.fake.wait_for("chat.postEphemeral")
    assert told.body["user"] == MALLORY and "approvers" in told.body["text"]
    assert world.status(sid) == SuggestionStatus.pending
    [refused] = world.audit("review.refused")
    assert (refused.actor, refused.suggestion_id, refused.after) == \
        (MALLORY, sid, {"attempted": "approve"})
    assert world.fake.calls_to("chat.update") == []


def test_members_of_an_approver_group_may_decide(slack_world: SlackWorld) -> None:
    world = slack_world
    world.svc.review.execute(_settings(world, {"slack_approvers": [],
                                               "slack_approver_groups": ["S0ADMINS1"]}),
                             bot=world.bot)
    world.fake.set_group("S0ADMINS1", [MALLORY])
    sid = world.suggestion()
    posted_card(world, sid)
    world.click(ActionId.approve, sid, user=MALLORY)
    world.fake.wait_for("chat.update")
    assert world.status(sid) == SuggestionStatus.approved
    assert world.fake.last("usergroups.users.list").body["usergroup"] == "S0ADMINS1"


def test_with_no_approvers_set_slack_decisions_say_how_to_set_them(slack_world: SlackWorld
                                                                   ) -> None:
    world = slack_world
    world.svc.review.execute(_settings(world, {"slack_approvers": []}), bot=world.bot)
    sid = world.suggestion()
    posted_card(world, sid)
    world.click(ActionId.approve, sid)
    [told] = world.fake.wait_for("chat.postEphemeral")
    assert "slack_approvers" in told.body["text"] and "PATCH" in told.body["text"]
    assert world.status(sid) == SuggestionStatus.pending


def test_a_bad_signature_or_a_stale_timestamp_is_401_and_changes_nothing(
        slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    from bot.ids import CardPayload
    from tests.slack_signing import block_action_body

    body = block_action_body(action_id=ActionId.approve, user=ALICE, channel=CHANNEL,
                             value=CardPayload(suggestion_id=sid).model_dump_json())
    assert world.send(body, secret="not-the-secret").status_code == 401
    assert world.send(body, timestamp=int(time.time()) - 6 * 60).status_code == 401
    world.settle()
    assert world.status(sid) == SuggestionStatus.pending
    assert world.fake.calls_to("chat.update") == []


def test_a_slack_retry_is_processed_once(slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    r = world.click(ActionId.approve, sid, headers={"X-Slack-Retry-Num": "1",
                                                    "X-Slack-Retry-Reason": "http_timeout"})
    assert r.status_code == 200
    # The first delivery does the work: the retry's approval never comes (it would update
    # the card within milliseconds).
    with pytest.raises(AssertionError, match="waited"):
        world.fake.wait_for("chat.update", timeout=1.5)
    assert world.status(sid) == SuggestionStatus.pending


def test_edit_opens_a_prefilled_modal_and_an_empty_answer_keeps_it_open(
        slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    world.click(ActionId.edit, sid)
    [opened] = world.fake.wait_for("views.open")
    modal = opened.decoded("view")
    assert modal["callback_id"] == CallbackId.edit
    assert "Yes, we ship to Canada in 5 to 8 business days." in json.dumps(modal)

    r = world.submit(CallbackId.edit, {BlockId.answer: {ActionId.answer_input: "  "}}, sid=sid)
    assert r.status_code == 200 and r.json()["response_action"] == "errors"
    assert BlockId.answer in r.json()["errors"]
    assert world.status(sid) == SuggestionStatus.pending

    new = "Yes: Canada Post delivers in 5 to 8 business days, duties included."
    r = world.submit(CallbackId.edit, {
        BlockId.answer: {ActionId.answer_input: new},
        BlockId.variants: {ActionId.variants_input: "ship to canada?\nshipping to Toronto?"},
    }, sid=sid)
    assert r.status_code == 200
    world.fake.wait_for("chat.update")
    assert world.status(sid) == SuggestionStatus.approved
    assert world.answer(QUESTION) == new
    assert world.answer("shipping to Toronto?") == new


def test_an_answer_longer_than_slacks_box_is_kept_whole_unless_changed(
        slack_world: SlackWorld) -> None:
    world = slack_world
    long = " ".join(f"Step {i}: check the parcel's label and the tracking page." for i in
                    range(80))  # ≈ 4,500 characters; Slack's box holds 3,000
    sid = world.suggestion(answer=long)
    posted_card(world, sid)
    world.click(ActionId.edit, sid)
    [opened] = world.fake.wait_for("views.open")
    modal = opened.decoded("view")
    shown = next(b for b in modal["blocks"] if b.get("block_id") == BlockId.answer)
    boxed = shown["element"]["initial_value"]
    assert len(boxed) == 3000 and boxed.endswith("…")
    assert "is kept" in json.dumps(modal)
    # Submitted as the box showed it: the whole answer is published, not its first 3,000.
    world.submit(CallbackId.edit, {BlockId.answer: {ActionId.answer_input: boxed}}, sid=sid)
    world.fake.wait_for("chat.update")
    assert world.status(sid) == SuggestionStatus.approved
    assert world.answer(QUESTION) == long


def test_reject_with_a_reason_and_a_comment(slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    world.click(ActionId.reject, sid)
    modal = world.fake.wait_for("views.open")[0].decoded("view")
    assert RejectReason.wrong_information.value in json.dumps(modal)
    r = world.submit(CallbackId.reject, {BlockId.reason: {ActionId.reason_select: None}},
                     sid=sid)
    assert r.json()["response_action"] == "errors"
    world.submit(CallbackId.reject, {
        BlockId.reason: {ActionId.reason_select: Select(RejectReason.wrong_information)},
        BlockId.comment: {ActionId.comment_input: "We stopped shipping to Canada."}}, sid=sid)
    card = world.text_of(world.fake.wait_for("chat.update")[0].blocks)
    assert "Rejected" in card and "wrong information" in card
    [row] = world.audit("suggestion.rejected")
    assert row.after == {"reason": "wrong_information",
                         "comment": "We stopped shipping to Canada."}


def test_defer_a_week_or_to_a_picked_date(slack_world: SlackWorld) -> None:
    world = slack_world
    week, picked = world.suggestion(), world.suggestion(question="Do you ship to Mexico?")
    world.post_cards()
    world.click(ActionId.defer, week, selected_option=DeferChoice.week)
    world.fake.wait_for("chat.update")
    view = world.svc.review.card(week, bot=world.bot)
    assert view.status == SuggestionStatus.deferred and view.defer_until is not None
    assert 6 <= (view.defer_until.date() - date.today()).days <= 7

    world.click(ActionId.defer, picked, selected_option=DeferChoice.pick)
    assert world.fake.wait_for("views.open")[0].decoded("view")["callback_id"] == \
        CallbackId.defer
    yesterday = date.today() - timedelta(days=1)
    r = world.submit(CallbackId.defer, {BlockId.date: {ActionId.date_input: yesterday}},
                     sid=picked)
    assert r.json()["response_action"] == "errors"
    day = date.today() + timedelta(days=10)
    world.submit(CallbackId.defer, {BlockId.date: {ActionId.date_input: day}}, sid=picked)
    world.fake.wait_for("chat.update", count=2)
    assert world.svc.review.card(picked, bot=world.bot).defer_until.date() == day  # type: ignore[union-attr]


def test_test_shows_what_the_bot_would_answer_with_the_suggestion_live(
        slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    world.click(ActionId.test, sid, user=MALLORY)  # trying changes nothing: anyone may
    assert world.fake.wait_for("views.open")[0].decoded("view")["callback_id"] == \
        CallbackId.test
    r = world.submit(CallbackId.test, {BlockId.question: {
        ActionId.question_input: "can you ship my order to canada"}}, sid=sid, user=MALLORY)
    got = r.json()
    assert got["response_action"] == "update"
    shown = json.dumps(got["view"])
    assert "5 to 8 business days" in shown
    assert world.status(sid) == SuggestionStatus.pending


def test_undo_takes_an_approved_answer_back(slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    world.click(ActionId.approve, sid)
    world.fake.wait_for("chat.update")
    assert world.answer(QUESTION) is not None
    world.click(ActionId.undo, sid)
    updates = world.fake.wait_for("chat.update", count=2)
    assert "Undone" in world.text_of(updates[-1].blocks) or \
        "undone" in world.text_of(updates[-1].blocks).lower()
    assert world.status(sid) == SuggestionStatus.undone
    assert world.answer(QUESTION) is None


def test_announcements_are_posted_once_with_an_undo(slack_world: SlackWorld) -> None:
    world = slack_world
    world.svc.review.execute(_settings(world, {"autonomy": "advanced",
                                               "excluded_categories": []}), bot=world.bot)
    sid = world.suggestion(confidence=95)
    assert world.svc.policy.auto_publish(bot_id=world.bot.id).published == [sid]
    assert len(world.post_announcements().announcements) == 1
    assert world.post_announcements().announcements == []  # once per channel
    [post] = world.fake.calls_to("chat.postMessage")
    assert QUESTION in post.body["text"] and ActionId.undo in world.text_of(post.blocks)
    # Email has not delivered it: the next digest still carries it.
    assert [n.id for n in world.svc.review.pending_announcements(world.bot, Channel.email)]


def test_a_failed_post_is_retried_and_never_doubled(slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    world.fake.fail_next("chat.postMessage", error="ratelimited_forever")
    report = world.post_cards()
    assert report.failures == 1 and report.cards_posted == []
    assert world.post_cards().cards_posted == [sid]
    assert world.post_cards().cards_posted == []
    assert len([c for c in world.fake.calls_to("chat.postMessage")]) == 2


def _settings(world: SlackWorld, patch: dict[str, object]) -> object:
    from core.policy.commands import UpdateSettings

    return UpdateSettings(bot_id=world.bot.id, patch=patch, actor=Actor("setup", Channel.api))


def test_a_slow_decision_shows_a_working_state_first(slack_world: SlackWorld,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    execute = world.svc.review.execute

    def slow(command: object, *, bot: object) -> object:
        time.sleep(2.0)  # a busy database
        return execute(command, bot=bot)  # type: ignore[arg-type]

    monkeypatch.setattr(world.svc.review, "execute", slow)
    monkeypatch.setattr(context, "WORKING_AFTER_SECONDS", 0.4)
    assert world.click(ActionId.approve, sid).status_code == 200
    # Acked before the work is done (a margin of 2 s, so a loaded CI machine cannot flake).
    assert world.status(sid) == SuggestionStatus.pending
    first, last = world.fake.wait_for("chat.update", count=2)
    assert f"Working on <@{ALICE}>" in world.text_of(first.blocks)
    assert "Approved" in world.text_of(last.blocks) and "Working" not in \
        world.text_of(last.blocks)


def test_a_rate_limited_update_waits_for_retry_after_and_lands(slack_world: SlackWorld) -> None:
    world = slack_world
    sid = world.suggestion()
    posted_card(world, sid)
    world.fake.rate_limit_next("chat.update", retry_after=1)
    world.click(ActionId.approve, sid)
    limited, landed = world.fake.wait_for("chat.update", count=2, timeout=10)
    assert limited.body["ts"] == landed.body["ts"]
    assert "Approved" in world.text_of(landed.blocks)
