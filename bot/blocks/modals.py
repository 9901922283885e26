"""Modals: edit and approve, reject, defer, test in the sandbox, settings, and errors."""

from __future__ import annotations

from datetime import date

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DatePickerElement,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
    SectionBlock,
    StaticMultiSelectElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.blocks.cards import REJECT_WORDS
from bot.blocks.text import (
    CONTEXT_TEXT,
    INPUT_VALUE,
    MODAL_TITLE,
    OPTION_TEXT,
    SECTION_TEXT,
    clip,
    escape,
    inline,
    plain,
    priority_label,
    quote,
)
from bot.ids import ActionId, BlockId, CallbackId, ModalMeta
from core.bots import Autonomy, BotSettings, NotifyFrequency
from core.review.views import SuggestionView
from core.sandbox import SandboxAnswer

COMMENT_MAX = 2000
FREQUENCY_WORDS: dict[NotifyFrequency, str] = {
    NotifyFrequency.daily: "Daily digest",
    NotifyFrequency.weekly: "Weekly digest",
    NotifyFrequency.critical_only: "Only critical suggestions",
}


def edit_modal(view: SuggestionView, meta: ModalMeta) -> View:
    """Edit the answer and the phrasings, then approve."""
    answer = None if view.needs_answer else clip(view.answer.strip(), INPUT_VALUE) or None
    variants = _lines_within(view.variants, INPUT_VALUE)
    blocks: list[Block] = [
        _about(view),
        InputBlock(
            block_id=BlockId.answer, label="Answer customers will get",
            element=PlainTextInputElement(action_id=ActionId.answer_input, multiline=True,
                                          initial_value=answer, max_length=INPUT_VALUE,
                                          placeholder="Write the answer")),
        InputBlock(
            block_id=BlockId.variants, label="Phrasings to add", optional=True,
            hint="One per line. Customers asking any of these get the answer above.",
            element=PlainTextInputElement(action_id=ActionId.variants_input, multiline=True,
                                          initial_value=variants or None,
                                          max_length=INPUT_VALUE)),
    ]
    if not view.needs_answer and len(view.answer.strip()) > INPUT_VALUE:
        blocks.append(_note(f"The answer has {len(view.answer.strip()):,} characters; this box "
                            f"shows the first {INPUT_VALUE:,}. Left as it is, the whole answer "
                            "is kept; what you change here replaces it."))
    if len(view.variants) > 0 and len(variants.splitlines()) < len(view.variants):
        blocks.append(_note(f"Only the first {len(variants.splitlines())} of "
                            f"{len(view.variants)} phrasings fit in this box."))
    return _modal(CallbackId.edit, "Edit and approve", meta, blocks, submit="Approve")


def reject_modal(view: SuggestionView, meta: ModalMeta) -> View:
    """Why the suggestion is rejected (the cycle stops proposing this gap), and a comment."""
    blocks: list[Block] = [
        _about(view),
        InputBlock(
            block_id=BlockId.reason, label="Reason",
            element=StaticSelectElement(
                action_id=ActionId.reason_select, placeholder="Pick a reason",
                options=[Option(value=reason.value, text=words.capitalize())
                         for reason, words in REJECT_WORDS.items()])),
        InputBlock(
            block_id=BlockId.comment, label="Comment", optional=True,
            element=PlainTextInputElement(action_id=ActionId.comment_input, multiline=True,
                                          max_length=COMMENT_MAX,
                                          placeholder="What is wrong with it? (optional)")),
    ]
    return _modal(CallbackId.reject, "Reject suggestion", meta, blocks, submit="Reject")


def defer_modal(view: SuggestionView, meta: ModalMeta, *, initial: date | None = None) -> View:
    """Put the suggestion aside until a date; it comes back to the queue with a reminder."""
    blocks: list[Block] = [
        _about(view),
        InputBlock(
            block_id=BlockId.date, label="Back in the queue on",
            element=DatePickerElement(action_id=ActionId.date_input, placeholder="Pick a date",
                                      initial_date=initial.isoformat() if initial else None)),
    ]
    return _modal(CallbackId.defer, "Defer suggestion", meta, blocks, submit="Defer")


def test_modal(view: SuggestionView, meta: ModalMeta, *, question: str | None = None,
               result: SandboxAnswer | None = None) -> View:
    """Ask the bot a question as if the suggestion were live, next to today's answer."""
    asked = view.question if question is None else question
    blocks: list[Block] = [
        _about(view),
        InputBlock(
            block_id=BlockId.question, label="Customer question",
            element=PlainTextInputElement(action_id=ActionId.question_input,
                                          initial_value=clip(asked, INPUT_VALUE) or None,
                                          max_length=INPUT_VALUE)),
    ]
    if result is not None:
        blocks.append(_sandbox_result(view, result))
    return _modal(CallbackId.test, "Try it out", meta, blocks, submit="Try")


# Its name starts with "test": keep pytest from collecting it where a test module imports it.
test_modal.__test__ = False  # type: ignore[attr-defined]


def settings_modal(settings: BotSettings, meta: ModalMeta) -> View:
    """Autonomy, how often reviewers hear from the bot, categories never auto-published and
    the daily auto-publish limit, prefilled from the bot's settings."""
    autonomy = {
        Autonomy.conservative: ("Conservative", "A reviewer decides every change"),
        Autonomy.moderate: ("Moderate", "Publishes suggestions with confidence above "
                            f"{settings.moderate_auto_publish_above}"),
        Autonomy.advanced: ("Advanced", "Publishes suggestions with confidence above "
                            f"{settings.advanced_auto_publish_above}"),
    }
    autonomy_options = {level: Option(value=level.value, text=words,
                                      description=plain(description, OPTION_TEXT))
                        for level, (words, description) in autonomy.items()}
    frequency_options = {f: Option(value=f.value, text=words)
                         for f, words in FREQUENCY_WORDS.items()}
    category_options = {name: Option(value=name, text=plain(name, OPTION_TEXT))
                        for name in settings.category_names()}
    excluded = [category_options[name] for name in settings.excluded_categories
                if name in category_options]
    blocks: list[Block] = [
        InputBlock(
            block_id=BlockId.autonomy, label="Autonomy",
            element=RadioButtonsElement(action_id=ActionId.autonomy_select,
                                        options=list(autonomy_options.values()),
                                        initial_option=autonomy_options[settings.autonomy])),
        InputBlock(
            block_id=BlockId.frequency, label="Notify reviewers",
            element=StaticSelectElement(action_id=ActionId.frequency_select,
                                        options=list(frequency_options.values()),
                                        initial_option=frequency_options[
                                            settings.notify_frequency])),
        InputBlock(
            block_id=BlockId.excluded, label="Never published automatically", optional=True,
            hint="A reviewer always decides suggestions in these categories.",
            element=StaticMultiSelectElement(action_id=ActionId.excluded_select,
                                             placeholder="No categories",
                                             options=list(category_options.values()),
                                             initial_options=excluded or None)),
        InputBlock(
            block_id=BlockId.limit, label="Published automatically per day, at most",
            element=NumberInputElement(action_id=ActionId.limit_input,
                                       is_decimal_allowed=False,
                                       initial_value=str(settings.daily_auto_publish_limit),
                                       min_value="0", max_value="10000")),
    ]
    return _modal(CallbackId.settings, "Auto-training settings", meta, blocks, submit="Save")


def error_modal(title: str, text: str) -> View:
    """A plain modal with a message: for a button someone may not use, or a card gone stale."""
    return View(type="modal", title=PlainTextObject(text=plain(title, MODAL_TITLE), emoji=True),
                close=PlainTextObject(text="OK"),
                blocks=[SectionBlock(text=MarkdownTextObject(
                    text=clip(escape(text), SECTION_TEXT) or " "))])


# -- parts -------------------------------------------------------------------------------


def _modal(callback_id: CallbackId, title: str, meta: ModalMeta, blocks: list[Block], *,
           submit: str) -> View:
    return View(type="modal", callback_id=callback_id, title=plain(title, MODAL_TITLE),
                submit=submit, close="Cancel", private_metadata=meta.model_dump_json(),
                blocks=blocks)


def _about(view: SuggestionView) -> SectionBlock:
    """Which suggestion the modal is about."""
    text = f"{priority_label(view.priority)} · {escape(view.kind_label)}\n" \
           f"*{inline(view.question, 1500)}*"
    if view.entry_question and view.entry_question != view.question:
        text += f"\nChanges the entry: _{inline(view.entry_question, 800)}_"
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT)))


def _note(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(escape(text), CONTEXT_TEXT))])


def _lines_within(lines: list[str], limit: int) -> str:
    """Whole lines, one per line, as many as fit in `limit` characters: a phrasing cut in
    half would be saved as a phrasing of its own."""
    out: list[str] = []
    size = 0
    for line in (" ".join(v.split()) for v in lines):
        if not line:
            continue
        extra = len(line) + (1 if out else 0)
        if size + extra > limit:
            break
        out.append(line)
        size += extra
    return "\n".join(out)


def _sandbox_result(view: SuggestionView, result: SandboxAnswer) -> SectionBlock:
    if result.escalate or not result.answer:
        with_it = f"would hand over to a person (confidence {result.confidence})"
    else:
        source = "from this suggestion" if result.suggestion_id == view.id else \
            "from an existing answer" if result.entry_id else "from another pending suggestion"
        with_it = f"(confidence {result.confidence}, {source})\n{quote(clip(result.answer, 1200))}"
    live = result.live
    if live.escalate or not live.answer:
        today = f"would hand over to a person (confidence {live.confidence})"
    else:
        today = f"(confidence {live.confidence})\n{quote(clip(live.answer, 1200))}"
    text = f"*With this suggestion live:* {with_it}\n\n*Today:* {today}"
    return SectionBlock(block_id=BlockId.result,
                        text=MarkdownTextObject(text=clip(text, SECTION_TEXT)))
