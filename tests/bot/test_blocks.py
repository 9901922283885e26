"""Block Kit builders: what a reviewer sees on cards, modals and messages, within Slack's limits."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.blocks import (
    actions_block_id,
    announcement_message,
    announcement_text,
    card_text,
    clip,
    defer_modal,
    digest_message,
    edit_modal,
    error_modal,
    escape,
    help_message,
    history_message,
    home_view,
    notice,
    queue_message,
    reject_modal,
    settings_modal,
    stats_message,
    suggestion_card,
    suggestion_of_block,
    test_modal,
)
from bot.ids import ActionId, BlockId, CallbackId, CardPayload, DeferChoice, ModalMeta
from core.answering import AnswerResult
from core.bots import Autonomy, BotSettings, NotifyFrequency
from core.policy.commands import RejectReason
from core.review.views import (
    AnnouncementView,
    AuditView,
    Decided,
    EntryHistory,
    EntryView,
    Figures,
    Period,
    StatsView,
    SuggestionView,
    VersionView,
)
from core.sandbox import SandboxAnswer

NOW = datetime(2026, 3, 2, 14, 2, tzinfo=UTC)
EVIL = "<!channel> <https://evil.example|click> & <@U0BOSS123>"


def card(**changes: Any) -> SuggestionView:
    base = SuggestionView(
        id="sug_0123456789abcdef", bot_id="bot_1", kind="new_answer", priority="critical",
        score=12.5, confidence=87, question="Do you ship to Canada?",
        answer="Yes, we ship to Canada in 5-7 business days.\nDuties are included.",
        variants=["ship to canada?", "canada delivery"], entry_id=None, entry_question=None,
        category="shipping", category_source="classifier", warning=None,
        reason="asked 7 times this week; unanswered",
        samples=["do u ship to canada", "Can I order from Toronto?"],
        replay="Would have answered 6 of the 7 customers who asked.",
        autonomy="Not published automatically: autonomy is conservative",
        needs_answer=False, status="pending", created_at=NOW - timedelta(days=1),
        decided=None, defer_until=None, reject_reason=None)
    return replace(base, **changes)


def dicts(blocks: list[Block]) -> list[dict[str, Any]]:
    """What Slack receives; slack_sdk validates every block on the way."""
    return [b.to_dict() for b in blocks]


def text_of(blocks: list[Block] | View) -> str:
    data = blocks.to_dict() if isinstance(blocks, View) else dicts(blocks)
    return json.dumps(data, ensure_ascii=False)


def strings(data: Any) -> list[str]:
    """Every text a reviewer can read in a block tree."""
    if isinstance(data, dict):
        return [s for k, v in data.items() if k not in ("type", "action_id", "block_id",
                                                         "value", "style")
                for s in strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in strings(v)]
    return [data] if isinstance(data, str) else []


def elements(blocks: list[Block]) -> dict[str, dict[str, Any]]:
    """The interactive elements of the blocks, by action id."""
    return {e["action_id"]: e for b in dicts(blocks) if b["type"] == "actions"
            for e in b["elements"]}


def figures(**changes: Any) -> Figures:
    base = Figures(start=NOW - timedelta(days=7), end=NOW, conversations=200,
                   resolution_rate=0.62, escalations=31, escalation_rate=0.155,
                   negative_feedback=7, negative_feedback_rate=0.035, csat=4.3,
                   suggestions_decided=12, auto_published=4)
    return replace(base, **changes)


def stats(**changes: Any) -> StatsView:
    base = StatsView(bot_slug="voltcart", period=Period.week, current=figures(),
                     previous=figures(start=NOW - timedelta(days=14), end=NOW - timedelta(days=7),
                                      resolution_rate=0.58, escalations=36, csat=4.1,
                                      suggestions_decided=9, auto_published=4),
                     pending=9, critical_pending=3)
    return replace(base, **changes)


META = ModalMeta(suggestion_id="sug_0123456789abcdef", bot_id="bot_1", channel="C0123ABCD",
                 ts="1700000000.000100")


# -- text helpers ------------------------------------------------------------------------


def test_clip_ends_long_text_with_an_ellipsis_and_keeps_short_text() -> None:
    assert clip("short", 10) == "short"
    assert clip("x" * 50, 10) == "x" * 9 + "…" and len(clip("x" * 50, 10)) == 10
    # An escape cut in half would show as "&am" in Slack: it is dropped whole.
    assert clip(escape("a" * 7 + "&b"), 10) == "a" * 7 + "…"


def test_escape_makes_mentions_and_links_inert() -> None:
    assert escape(EVIL) == ("&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; "
                            "&lt;@U0BOSS123&gt;")


# -- suggestion cards --------------------------------------------------------------------


def test_open_card_offers_every_decision_with_the_suggestion_in_each_button() -> None:
    blocks = suggestion_card(card())
    got = elements(blocks)
    assert set(got) == {ActionId.approve, ActionId.edit, ActionId.reject, ActionId.defer,
                        ActionId.test}
    for action in (ActionId.approve, ActionId.edit, ActionId.reject, ActionId.test):
        assert CardPayload.model_validate_json(got[action]["value"]).suggestion_id == \
            "sug_0123456789abcdef"
    assert got[ActionId.approve]["style"] == "primary"
    assert got[ActionId.reject]["style"] == "danger"
    assert [o["value"] for o in got[ActionId.defer]["options"]] == [c.value for c in DeferChoice]
    assert [o["text"]["text"] for o in got[ActionId.defer]["options"]] == \
        ["1 day", "1 week", "Pick a date…"]
    # The Defer select carries no value: its block id says which suggestion it is for.
    actions = next(b for b in dicts(blocks) if b["type"] == "actions")
    assert actions["block_id"].startswith(BlockId.actions)
    assert suggestion_of_block(actions["block_id"]) == "sug_0123456789abcdef"
    assert suggestion_of_block("answer") is None


def test_open_card_shows_what_a_reviewer_decides_on() -> None:
    shown = text_of(suggestion_card(card()))
    assert "🔴 Critical" in shown and "New answer" in shown and "Confidence 87/100" in shown
    assert "*Do you ship to Canada?*" in shown
    assert ">Yes, we ship to Canada in 5-7 business days.\\n>Duties are included." in shown
    assert "• ship to canada?" in shown and "• canada delivery" in shown
    assert "asked 7 times this week; unanswered" in shown
    assert "“do u ship to canada”" in shown and "“Can I order from Toronto?”" in shown
    assert "Would have answered 6 of the 7" in shown
    assert "shipping" in shown and "autonomy is conservative" in shown
    assert "under 60" not in shown


def test_low_confidence_card_warns_and_asks_before_approving() -> None:
    blocks = suggestion_card(card(confidence=42, priority="low", warning="Mentions a price"))
    shown = text_of(blocks)
    assert "⚪ Low" in shown and "Confidence 42/100" in shown
    assert "⚠️ under 60: check before approving" in shown
    assert "Mentions a price" in shown
    assert elements(blocks)[ActionId.approve]["confirm"]["title"]["text"] == \
        "Approve with low confidence?"


def test_improvement_names_the_entry_it_changes_and_no_category_is_said() -> None:
    shown = text_of(suggestion_card(card(kind="improve_answer", priority="medium",
                                         entry_id="ent_1", category=None,
                                         entry_question="Shipping to North America")))
    assert "🟠 Medium" in shown and "Improve an answer" in shown
    assert "Shipping to North America" in shown and "no category" in shown


def test_card_without_an_answer_offers_edit_not_approve() -> None:
    blocks = suggestion_card(card(needs_answer=True, answer=""))
    got = elements(blocks)
    assert ActionId.approve not in got and ActionId.edit in got
    assert "No answer drafted yet: use Edit to write it" in text_of(blocks)


def test_deferred_card_says_who_deferred_it_until_when_and_stays_open() -> None:
    blocks = suggestion_card(card(status="deferred", decided=Decided("U0123ABCD", "slack", NOW),
                                  defer_until=datetime(2026, 3, 9, 9, 0, tzinfo=UTC)))
    assert "Deferred by <@U0123ABCD> until 2026-03-09" in text_of(blocks)
    assert ActionId.approve in elements(blocks)


def test_approved_card_says_who_and_offers_undo_instead_of_decisions() -> None:
    blocks = suggestion_card(card(status="approved", decided=Decided("U0123ABCD", "slack", NOW)))
    shown = text_of(blocks)
    assert "✅ Approved by <@U0123ABCD> at 2026-03-02 14:02 UTC — live now" in shown
    got = elements(blocks)
    assert set(got) == {ActionId.undo}
    assert CardPayload.model_validate_json(got[ActionId.undo]["value"]).suggestion_id == \
        "sug_0123456789abcdef"
    assert got[ActionId.undo]["confirm"]["title"]["text"] == "Take this back?"


def test_auto_published_card_says_so_and_can_be_undone() -> None:
    blocks = suggestion_card(card(status="auto_published",
                                  decided=Decided("autotrain", "auto", NOW)))
    assert "🤖 Published automatically at 2026-03-02 14:02 UTC — live now" in text_of(blocks)
    assert set(elements(blocks)) == {ActionId.undo}


def test_email_decision_shows_the_plain_name_not_a_mention() -> None:
    shown = text_of(suggestion_card(card(
        status="approved", decided=Decided("manager@shop.example", "email", NOW))))
    assert "Approved by manager@shop.example (email)" in shown
    assert "<@" not in shown


def test_a_name_that_is_not_a_slack_id_is_never_a_mention() -> None:
    shown = text_of(suggestion_card(card(status="approved",
                                         decided=Decided("<!channel>", "slack", NOW))))
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown


@pytest.mark.parametrize(("reason", "words"), [
    (RejectReason.wrong_information, "wrong information"),
    (RejectReason.not_a_gap, "not a gap"),
    (RejectReason.tone, "wrong tone"),
])
def test_rejected_card_shows_the_reason_in_words(reason: RejectReason, words: str) -> None:
    blocks = suggestion_card(card(status="rejected", reject_reason=reason.value,
                                  decided=Decided("U0123ABCD", "slack", NOW)))
    assert f"❌ Rejected by <@U0123ABCD>: {words}" in text_of(blocks)
    assert elements(blocks) == {}


def test_undone_and_withdrawn_cards_have_no_buttons() -> None:
    undone = suggestion_card(card(status="undone", decided=Decided("U0123ABCD", "slack", NOW)))
    assert "↩️ Undone" in text_of(undone) and elements(undone) == {}
    gone = suggestion_card(card(status="withdrawn",
                                withdrawn_because="its gap was merged into another one"))
    assert "Withdrawn: its gap was merged into another one" in text_of(gone)
    assert elements(gone) == {}


def test_huge_texts_are_clipped_not_rejected() -> None:
    blocks = suggestion_card(card(answer="A" * 20_000, question="Q" * 5_000,
                                  variants=[f"phrasing {i}" for i in range(200)],
                                  reason="R" * 5_000, samples=["S" * 5_000] * 3,
                                  replay="P" * 5_000, autonomy="Z" * 5_000,
                                  warning="W" * 5_000, entry_question="E" * 5_000,
                                  kind="improve_answer", category="c" * 5_000))
    data = dicts(blocks)  # raises SlackObjectFormationError on any violation
    sections = [b["text"]["text"] for b in data if b["type"] == "section"]
    assert all(len(t) <= 3000 for t in sections)
    assert any(t.startswith("*Proposed answer*") and t.endswith("…") for t in sections)
    assert any(t.startswith("*QQQ") and "…" in t for t in sections)
    assert any("and 192 more" in t for t in sections)
    contexts = [e["text"] for b in data if b["type"] == "context" for e in b["elements"]]
    assert all(len(t) <= 2000 for t in contexts) and any(t.endswith("…") for t in contexts)


def test_generated_text_cannot_mention_or_link() -> None:
    blocks = suggestion_card(card(question=EVIL, answer=EVIL, variants=[EVIL], reason=EVIL,
                                  samples=[EVIL], replay=EVIL, autonomy=EVIL, warning=EVIL,
                                  category=EVIL, entry_question=EVIL, kind="add_variants"))
    readable = strings(dicts(blocks))
    assert not any("<!channel>" in s or "<https://" in s or "<@U0BOSS123>" in s
                   for s in readable)
    assert any("&lt;!channel&gt;" in s for s in readable)
    assert "<!channel>" not in card_text(card(question=EVIL))


def test_card_text_is_a_short_fallback() -> None:
    assert card_text(card()) == "New suggestion (critical): Do you ship to Canada?"
    assert card_text(card(status="approved")) == "Suggestion approved: Do you ship to Canada?"
    assert len(card_text(card(question="Q" * 5_000))) < 300


# -- modals ------------------------------------------------------------------------------


def modal_inputs(view: View) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view.to_dict()["blocks"] if b["type"] == "input"}


def test_edit_modal_is_prefilled_and_carries_the_card_to_update() -> None:
    modal = edit_modal(card(), META)
    data = modal.to_dict()
    assert data["callback_id"] == CallbackId.edit and data["submit"]["text"] == "Approve"
    assert data["close"]["text"] == "Cancel"
    assert ModalMeta.model_validate_json(data["private_metadata"]) == META
    inputs = modal_inputs(modal)
    answer = inputs[BlockId.answer]["element"]
    assert answer["action_id"] == ActionId.answer_input and answer["multiline"] is True
    # The input is plain text: the answer is prefilled as written, not escaped.
    assert answer["initial_value"] == card().answer
    variants = inputs[BlockId.variants]
    assert variants["optional"] is True
    assert variants["element"]["initial_value"] == "ship to canada?\ncanada delivery"


def test_edit_modal_with_a_huge_answer_and_200_phrasings_stays_valid() -> None:
    modal = edit_modal(card(answer="A" * 20_000,
                            variants=[f"phrasing number {i}" for i in range(200)]), META)
    inputs = modal_inputs(modal)
    answer = inputs[BlockId.answer]["element"]["initial_value"]
    assert len(answer) == 3000 and answer.endswith("…")
    lines = inputs[BlockId.variants]["element"]["initial_value"].splitlines()
    assert len("\n".join(lines)) <= 3000 and lines[-1].startswith("phrasing number ")
    assert f"Only the first {len(lines)} of 200 phrasings" in text_of(modal)


def test_edit_modal_without_an_answer_starts_empty() -> None:
    inputs = modal_inputs(edit_modal(card(needs_answer=True, answer="(no answer)"), META))
    assert "initial_value" not in inputs[BlockId.answer]["element"]


def test_reject_modal_asks_for_a_reason_and_an_optional_comment() -> None:
    modal = reject_modal(card(), META)
    data = modal.to_dict()
    assert data["callback_id"] == CallbackId.reject and data["submit"]["text"] == "Reject"
    assert ModalMeta.model_validate_json(data["private_metadata"]) == META
    inputs = modal_inputs(modal)
    reason = inputs[BlockId.reason]
    assert "optional" not in reason and "initial_option" not in reason["element"]
    assert reason["element"]["action_id"] == ActionId.reason_select
    assert [o["value"] for o in reason["element"]["options"]] == [r.value for r in RejectReason]
    assert "Wrong information" in [o["text"]["text"] for o in reason["element"]["options"]]
    comment = inputs[BlockId.comment]
    assert comment["optional"] is True and comment["element"]["max_length"] == 2000


def test_defer_modal_has_a_date_picker() -> None:
    modal = defer_modal(card(), META)
    data = modal.to_dict()
    assert data["callback_id"] == CallbackId.defer and data["submit"]["text"] == "Defer"
    picker = modal_inputs(modal)[BlockId.date]["element"]
    assert picker["type"] == "datepicker" and picker["action_id"] == ActionId.date_input


def test_test_modal_shows_the_sandbox_answer_next_to_today() -> None:
    empty = test_modal(card(), META)
    assert BlockId.result not in text_of(empty)
    assert modal_inputs(empty)[BlockId.question]["element"]["initial_value"] == \
        "Do you ship to Canada?"
    result = SandboxAnswer(answer="Yes, 5-7 days <b>", entry_id=None,
                           suggestion_id="sug_0123456789abcdef", confidence=91, escalate=False,
                           live=AnswerResult(answer=None, entry_id=None, confidence=40,
                                             escalate=True))
    modal = test_modal(card(), META, question="ship to toronto?", result=result)
    data = modal.to_dict()
    assert data["callback_id"] == CallbackId.test and data["submit"]["text"] == "Try"
    assert ModalMeta.model_validate_json(data["private_metadata"]) == META
    assert modal_inputs(modal)[BlockId.question]["element"]["initial_value"] == \
        "ship to toronto?"
    shown = next(b for b in data["blocks"] if b.get("block_id") == BlockId.result)["text"]["text"]
    assert "With this suggestion live:" in shown and "confidence 91" in shown
    assert "Yes, 5-7 days &lt;b&gt;" in shown
    assert "*Today:* would hand over to a person" in shown


def test_settings_modal_is_prefilled_from_the_settings() -> None:
    settings = BotSettings(autonomy=Autonomy.moderate, notify_frequency=NotifyFrequency.weekly,
                           excluded_categories=["pricing", "legal"],
                           daily_auto_publish_limit=25)
    modal = settings_modal(settings, ModalMeta(bot_id="bot_1"))
    data = modal.to_dict()
    assert data["callback_id"] == CallbackId.settings and data["submit"]["text"] == "Save"
    assert ModalMeta.model_validate_json(data["private_metadata"]).bot_id == "bot_1"
    inputs = modal_inputs(modal)
    autonomy = inputs[BlockId.autonomy]["element"]
    assert autonomy["initial_option"]["value"] == "moderate"
    assert [o["value"] for o in autonomy["options"]] == ["conservative", "moderate", "advanced"]
    assert "confidence above 90" in autonomy["initial_option"]["description"]["text"]
    assert inputs[BlockId.frequency]["element"]["initial_option"]["value"] == "weekly"
    excluded = inputs[BlockId.excluded]["element"]
    assert excluded["type"] == "multi_static_select"
    assert [o["value"] for o in excluded["initial_options"]] == ["pricing", "legal"]
    assert {o["value"] for o in excluded["options"]} == set(settings.category_names())
    assert inputs[BlockId.limit]["element"]["initial_value"] == "25"


def test_error_modal_clips_a_long_title_and_escapes_the_text() -> None:
    data = error_modal("You may not decide suggestions here", EVIL).to_dict()
    assert len(data["title"]["text"]) <= 24 and data["title"]["text"].endswith("…")
    assert "<!channel>" not in text_of(error_modal("Not allowed", EVIL))


# -- messages ----------------------------------------------------------------------------


def announcement(kind: str, **changes: Any) -> AnnouncementView:
    base = AnnouncementView(id=1, kind=kind, text='Published automatically: "Do you ship?"',
                            suggestion_id="sug_0123456789abcdef", entry_id="ent_1",
                            payload={}, created_at=NOW, delivered={})
    return replace(base, **changes)


def test_auto_published_announcement_can_be_undone() -> None:
    blocks = announcement_message(announcement("auto_published"))
    assert text_of(blocks).count("🤖") == 1
    undo = elements(blocks)[ActionId.undo]
    assert CardPayload.model_validate_json(undo["value"]).suggestion_id == "sug_0123456789abcdef"
    assert announcement_text(announcement("auto_published")).startswith("🤖 Published")


@pytest.mark.parametrize(("kind", "icon"), [("auto_rolled_back", "⏪"),
                                            ("rollback_suggested", "⚠️"),
                                            ("deferred_returned", "⏰"), ("paused", "⏸️"),
                                            ("resumed", "▶️")])
def test_other_announcements_have_their_icon_and_no_buttons(kind: str, icon: str) -> None:
    blocks = announcement_message(announcement(kind, text=EVIL))
    assert text_of(blocks).startswith(f'[{{"text": {{"text": "{icon} &lt;!channel&gt;')
    assert elements(blocks) == {}


def test_stats_message_shows_each_change_with_its_direction() -> None:
    shown = text_of(stats_message(stats()))
    assert "*Resolved by the bot:* 62%" in shown and "▲ 4 pts" in shown
    assert "*Escalations:* 31 (▼ 5)" in shown and "Stats — voltcart, last 7 days" in shown
    assert "*CSAT:* 4.3/5 (▲ 0.2)" in shown
    assert "*Suggestions decided:* 12 (▲ 3)" in shown
    assert "*Published automatically:* 4 (no change)" in shown
    assert "*Pending now:* 9 (🔴 3 critical)" in shown


def test_stats_message_counts_the_questions_kept_out_of_the_queue() -> None:
    shown = text_of(stats_message(stats(current=figures(one_off_questions=23,
                                                        declined_questions=4))))
    assert "*Kept out of the queue:* 23 asked once · 4 declined by agents as off-topic" in shown


def test_stats_message_handles_periods_without_conversations() -> None:
    empty = figures(conversations=0, resolution_rate=None, escalation_rate=None, csat=None,
                    negative_feedback_rate=None)
    shown = text_of(stats_message(stats(current=empty)))
    assert "*Resolved by the bot:* —" in shown and "*CSAT:* — (—)" in shown
    fall = text_of(stats_message(stats(current=figures(resolution_rate=0.5))))
    assert "▼ 8 pts" in fall


def test_queue_lists_items_numbered_and_says_how_many_more() -> None:
    items = [card(id=f"s{i}", question=f"Question {i}?") for i in range(3)]
    shown = text_of(queue_message(items, total=15))
    assert "1. 🔴 New answer · 87/100 · *Question 0?*" in shown
    assert "3. 🔴" in shown and "and 12 more" in shown
    assert text_of(queue_message([], total=0)).count("Nothing to review 🎉") == 1


def test_queue_of_many_long_questions_stays_within_one_message() -> None:
    items = [card(id=f"s{i}", question=EVIL + "Q" * 5_000) for i in range(1_000)]
    blocks = queue_message(items, total=1_000)
    data = dicts(blocks)
    assert len(data) <= 50
    lines = [line for b in data if b["type"] == "section"
             for line in b["text"]["text"].splitlines()[b is data[0]:]]
    assert 100 < len(lines) < 1_000 and all(line.endswith("…*") for line in lines)
    shown = text_of(blocks)
    assert "<!channel>" not in shown and f"and {1_000 - len(lines)} more" in shown


def test_digest_keeps_under_50_blocks_and_points_to_the_rest() -> None:
    items = [card(id=f"s{i}", question=f"Question {i}?",
                  variants=[f"v{j}" for j in range(20)]) for i in range(30)]
    blocks = digest_message(stats(), items, total=42)
    data = dicts(blocks)
    assert len(data) <= 50
    assert data[0]["type"] == "header" and data[0]["text"]["text"] == "Review digest — voltcart"
    shown_cards = {b["block_id"] for b in data if b["type"] == "actions"}
    assert len(shown_cards) >= 3
    # Block ids are unique in a message: Slack refuses a digest with duplicates.
    ids = [b["block_id"] for b in data if "block_id" in b]
    assert len(ids) == len(set(ids))
    assert shown_cards == {actions_block_id(f"s{i}") for i in range(len(shown_cards))}
    assert f"and {42 - len(shown_cards)} more — `/autotrain queue`" in text_of(blocks)


def test_history_lists_versions_newest_first_and_how_to_revert() -> None:
    entry = EntryView(id="ent_1", bot_id="bot_1", question="Do you ship to Canada?",
                      answer="Yes.", variants=[], category="shipping", active=True, version=12,
                      created_at=NOW, updated_at=NOW)
    versions = [VersionView(version=v, question="Do you ship to Canada?", answer="Yes.",
                            variants=[], category="shipping", active=True,
                            changed_by="U0123ABCD" if v % 2 else "cli-admin",
                            changed_at=NOW - timedelta(days=12 - v),
                            reason=f"suggestion s{v}", suggestion_id=None)
                for v in range(1, 13)]
    audit = [AuditView(at=NOW, actor="U0123ABCD", channel="slack", action="suggestion.approved",
                       entry_id="ent_1", suggestion_id=None, before=None, after=None)]
    shown = text_of(history_message(EntryHistory(entry=entry, versions=versions, audit=audit)))
    assert "version 12" in shown and "active" in shown
    assert shown.index("*v12*") < shown.index("*v11*") < shown.index("*v3*")
    assert "*v2*" not in shown and "and 2 more" in shown
    assert "*v11* · <@U0123ABCD>" in shown and "*v12* · cli-admin" in shown
    assert "`/autotrain revert ent_1 &lt;version&gt;`" in shown


def test_help_lists_every_subcommand_and_how_the_bot_is_chosen() -> None:
    shown = text_of(help_message(bot_slug=None))
    for sub in ("stats", "queue", "history &lt;entry&gt;", "rollback &lt;entry&gt;",
                "revert &lt;entry&gt; &lt;version&gt;", "sandbox &lt;question&gt;", "settings",
                "pause", "resume", "help"):
        assert f"`/autotrain {sub}`" in shown
    assert "`/autotrain voltcart stats`" in shown
    assert "`/autotrain voltcart queue`" in text_of(help_message(bot_slug="voltcart"))


def test_notice_escapes_its_text() -> None:
    data = dicts(notice(EVIL))
    assert len(data) == 1 and data[0]["text"]["text"].startswith("&lt;!channel&gt;")


def test_home_groups_the_queue_by_priority_within_100_blocks() -> None:
    items = [card(id=f"s{i}", priority=p, question=f"Question {i}?")
             for i, p in enumerate(["critical", "critical", "medium", "low"])]
    home = home_view(stats(), items, total=4).to_dict()
    assert home["type"] == "home" and "submit" not in home
    shown = json.dumps(home, ensure_ascii=False)
    assert shown.index("🔴 Critical* (2)") < shown.index("🟠 Medium* (1)") < \
        shown.index("⚪ Low* (1)")
    assert "more" not in shown
    many = [card(id=f"s{i}", question=EVIL + "Q" * 3_000) for i in range(3_000)]
    big = home_view(stats(), many, total=3_000).to_dict()
    big_text = json.dumps(big, ensure_ascii=False)
    assert len(big["blocks"]) <= 100 and "more — `/autotrain queue`" in big_text
    assert "<!channel>" not in big_text
    assert "Nothing to review" in json.dumps(home_view(stats(), [], total=0).to_dict(),
                                             ensure_ascii=False)
