"""The suggestion card: one builder for every state of a suggestion, from pending to undone."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)

from bot.blocks.text import (
    CONTEXT_TEXT,
    SECTION_TEXT,
    clip,
    day,
    decider,
    escape,
    inline,
    priority_label,
    quote,
    when,
)
from bot.ids import ActionId, BlockId, CardPayload, DeferChoice
from core.pipeline.proposals import LOW_CONFIDENCE
from core.policy.commands import RejectReason
from core.review.views import SuggestionView
from core.status import SuggestionKind, SuggestionStatus

# How many phrasings a card lists before "and N more".
VARIANTS_SHOWN = 8
SAMPLES_SHOWN = 3

REJECT_WORDS: dict[str, str] = {
    RejectReason.wrong_information: "wrong information",
    RejectReason.not_a_gap: "not a gap",
    RejectReason.sensitive: "sensitive topic",
    RejectReason.duplicate: "duplicate",
    RejectReason.tone: "wrong tone",
    RejectReason.other: "other reason",
}

DEFER_CHOICES: dict[DeferChoice, str] = {
    DeferChoice.day: "1 day",
    DeferChoice.week: "1 week",
    DeferChoice.pick: "Pick a date…",
}

# The kinds whose card names the entry they change.
_CHANGES_ENTRY = (SuggestionKind.improve_answer, SuggestionKind.add_variants,
                  SuggestionKind.rollback)


def actions_block_id(suggestion_id: str) -> str:
    """The block id of a card's buttons: unique per suggestion, because Slack refuses a
    message (a digest) with two blocks of the same id, and it tells the Defer select's
    handler which suggestion it belongs to (a select carries no value of its own)."""
    return f"{BlockId.actions}:{suggestion_id}"


def suggestion_of_block(block_id: str) -> str | None:
    """The suggestion id in a card's actions block id, or None for any other block."""
    prefix = f"{BlockId.actions}:"
    if not block_id.startswith(prefix):
        return None
    return block_id[len(prefix):] or None


def reject_words(reason: str | None) -> str:
    if reason is None:
        return REJECT_WORDS[RejectReason.other]
    return REJECT_WORDS.get(reason, reason.replace("_", " "))


def card_payload(suggestion_id: str) -> str:
    return CardPayload(suggestion_id=suggestion_id).model_dump_json()


def undo_button(suggestion_id: str) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text="Undo", emoji=True), action_id=ActionId.undo,
        value=card_payload(suggestion_id),
        confirm=ConfirmObject(
            title="Take this back?",
            text="The entry goes back to the version before this change (or is switched off "
                 "if this change created it). Customers get the previous answer at once.",
            confirm="Undo", deny="Keep it", style="danger"))


def suggestion_card(view: SuggestionView) -> list[Block]:
    """Every state of a card from `view.status` and `view.decided`: open cards carry the
    decision buttons, decided ones say who decided what (and published ones can be undone)."""
    blocks: list[Block] = [_headline(view), _question(view), _answer(view)]
    if view.variants:
        blocks.append(_variants(view))
    blocks.append(_context(view))
    status = _status_line(view)
    if status:
        blocks.append(_section(status))
    actions = _actions(view)
    if actions is not None:
        blocks.append(actions)
    return blocks


def card_text(view: SuggestionView) -> str:
    """The notification's fallback text: "New suggestion (critical): Do you ship to Canada?"."""
    if view.status == SuggestionStatus.pending:
        lead = f"New suggestion ({view.priority})"
    elif view.status == SuggestionStatus.deferred:
        lead = f"Deferred suggestion ({view.priority})"
    else:
        lead = f"Suggestion {view.status_words}"
    return f"{lead}: {inline(view.question, 200)}"


# -- parts -------------------------------------------------------------------------------


def _section(text: str, *, block_id: str | None = None) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT) or " "),
                        block_id=block_id)


def _headline(view: SuggestionView) -> SectionBlock:
    parts = [f"*{priority_label(view.priority)}*", escape(view.kind_label),
             f"Confidence {view.confidence}/100"]
    if view.low_confidence:
        parts.append(f"⚠️ under {LOW_CONFIDENCE}: check before approving")
    text = " · ".join(parts)
    if view.warning:
        text += f"\n⚠️ {inline(view.warning, 1000)}"
    return _section(text)


def _question(view: SuggestionView) -> SectionBlock:
    text = f"*{inline(view.question, 2000)}*"
    if view.kind in _CHANGES_ENTRY and view.entry_question:
        text += f"\nChanges the entry: _{inline(view.entry_question, 800)}_"
    return _section(text)


def _answer(view: SuggestionView) -> SectionBlock:
    if view.needs_answer:
        return _section("*Proposed answer*\nNo answer drafted yet: use Edit to write it")
    label = "*Answer to restore*" if view.kind == SuggestionKind.rollback else "*Proposed answer*"
    return _section(f"{label}\n{quote(view.answer)}")


def _variants(view: SuggestionView) -> SectionBlock:
    shown = view.variants[:VARIANTS_SHOWN]
    lines = [f"• {inline(v, 300)}" for v in shown]
    if len(view.variants) > len(shown):
        lines.append(f"and {len(view.variants) - len(shown)} more")
    return _section(f"*Phrasings to add* ({len(view.variants)})\n" + "\n".join(lines))


def _context(view: SuggestionView) -> ContextBlock:
    texts: list[str] = []
    if view.reason:
        texts.append(f"💡 {inline(view.reason, CONTEXT_TEXT - 2)}")
    if view.samples:
        asked = " · ".join(f"“{inline(s, 300)}”" for s in view.samples[:SAMPLES_SHOWN])
        texts.append(f"🗣️ Customers asked: {asked}")
    if view.replay:
        texts.append(f"🔁 {inline(view.replay, CONTEXT_TEXT - 3)}")
    category = inline(view.category, 200) if view.category else "no category"
    texts.append(f"🏷️ {category}")
    if view.autonomy:
        texts.append(f"🤖 {inline(view.autonomy, CONTEXT_TEXT - 3)}")
    return ContextBlock(elements=[MarkdownTextObject(text=clip(t, CONTEXT_TEXT))
                                  for t in texts])


def _status_line(view: SuggestionView) -> str | None:
    who = decider(view.decided)
    at = when(view.decided.at if view.decided else None)
    status = view.status
    if status == SuggestionStatus.deferred:
        return f"⏰ Deferred by {who} until {day(view.defer_until)}"
    if status == SuggestionStatus.pending:
        if view.decided is not None and view.defer_until is not None:
            return f"⏰ Back in the queue: deferred by {who} until {day(view.defer_until)}"
        return None
    if status == SuggestionStatus.approved:
        return f"✅ Approved by {who} at {at} — live now"
    if status == SuggestionStatus.auto_published:
        return f"🤖 Published automatically at {at} — live now"
    if status == SuggestionStatus.rejected:
        return f"❌ Rejected by {who}: {escape(reject_words(view.reject_reason))}"
    if status == SuggestionStatus.undone:
        if view.decided is not None and view.decided.channel == "auto":
            before = f"published automatically at {at}"
        else:
            before = f"approved by {who} at {at}"
        return f"↩️ Undone: the change was taken back (it was {before})"
    if status == SuggestionStatus.withdrawn:
        because = inline(view.withdrawn_because or "nothing left to fix", 2000)
        return f"🗂️ Withdrawn: {because}"
    return f"Status: {escape(view.status_words)}"


def _actions(view: SuggestionView) -> ActionsBlock | None:
    value = card_payload(view.id)
    if view.is_open:
        elements: list[ButtonElement | StaticSelectElement] = []
        if not view.needs_answer:
            confirm = ConfirmObject(
                title="Approve with low confidence?",
                text=f"Confidence is {view.confidence}/100. Check the answer before it goes "
                     "live to customers.",
                confirm="Approve", deny="Back") if view.low_confidence else None
            elements.append(ButtonElement(text="Approve", action_id=ActionId.approve,
                                          value=value, style="primary", confirm=confirm))
        elements.append(ButtonElement(text="Edit", action_id=ActionId.edit, value=value))
        elements.append(ButtonElement(text="Reject", action_id=ActionId.reject, value=value,
                                      style="danger"))
        elements.append(StaticSelectElement(
            action_id=ActionId.defer, placeholder="Defer",
            options=[Option(value=choice.value, text=words)
                     for choice, words in DEFER_CHOICES.items()]))
        elements.append(ButtonElement(text="Test", action_id=ActionId.test, value=value))
        return ActionsBlock(block_id=actions_block_id(view.id), elements=elements)
    if view.status in (SuggestionStatus.approved, SuggestionStatus.auto_published):
        return ActionsBlock(block_id=actions_block_id(view.id), elements=[undo_button(view.id)])
    return None
