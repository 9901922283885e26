"""The /autotrain slash command and its settings modal: parse, one door call, render."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import (
    clip,
    escape,
    help_message,
    history_message,
    notice,
    questions_message,
    queue_message,
    settings_modal,
    stats_message,
    stats_text,
)
from bot.blocks.modals import FREQUENCY_WORDS
from bot.blocks.text import CONTEXT_TEXT, SECTION_TEXT, inline, quote
from bot.charts import resolution_chart
from bot.handlers.context import Clicker, clicker, may_decide, reference, tell
from bot.ids import ActionId, BlockId, CallbackId, ModalMeta
from bot.slack_app import SlackDeps
from bot.slack_notify import post_announcements
from core.bots import NotifyFrequency
from core.errors import DomainError, InvalidInput
from core.metrics import Bucket
from core.policy.commands import (
    Actor,
    Channel,
    RevertEntry,
    RollbackEntry,
    SetPaused,
    UpdateSettings,
)
from core.review import BotRef, EntryView, Outcome, Period, QuestionKind
from core.sandbox import MAX_OVERLAID, SandboxAnswer
from core.status import Priority

log = logging.getLogger(__name__)

COMMAND = "/autotrain"
# Lines in the ephemeral queue: a screenful; the rest are counted ("and N more").
QUEUE_SHOWN = 10
MAX_QUESTION = 2_000
# Settings fields → the modal's input blocks, to put a policy's complaint under its field.
FIELD_BLOCKS: dict[str, BlockId] = {
    "autonomy": BlockId.autonomy,
    "notify_frequency": BlockId.frequency,
    "excluded_categories": BlockId.excluded,
    "daily_auto_publish_limit": BlockId.limit,
}


@dataclass(frozen=True)
class Invocation:
    """One /autotrain call: who typed it, where, for which bot, and the words after the
    subcommand."""

    user: str
    team: str | None
    channel: str
    trigger_id: str
    bot: BotRef
    args: str

    @property
    def in_review_channel(self) -> bool:
        return self.bot.settings.slack_channel == self.channel

    @property
    def review_channel(self) -> str:
        return str(self.bot.settings.slack_channel)

    @property
    def who(self) -> Clicker:
        # The app is a member of the review channel, so a refusal can be ephemeral there;
        # elsewhere it may not be (a DM between two people), and `tell` then writes to the
        # person's DM with the app, which always reaches them.
        return Clicker(user=self.user, team=self.team,
                       channel=self.channel if self.in_review_channel else None, ts=None)

    @property
    def actor(self) -> Actor:
        return Actor(name=self.user, channel=Channel.slack)

    @property
    def prefix(self) -> str:
        """How to type a command here: the bot is implied only in its review channel."""
        return COMMAND if self.in_review_channel else f"{COMMAND} {self.bot.slug}"


Subcommand = Callable[[Invocation, AsyncWebClient, AsyncRespond], Awaitable[None]]


def split_word(text: str) -> tuple[str, str]:
    """The first word and the rest (spacing inside the rest kept: a sandbox question)."""
    parts = text.strip().split(maxsplit=1)
    return (parts[0] if parts else "", parts[1] if len(parts) > 1 else "")


def pick_bot(text: str, *, bots: list[BotRef], channel: str,
             subcommands: set[str]) -> tuple[BotRef | None, str]:
    """The bot a command is for, and the text after its name. In a bot's review channel the
    bot is implied (its name may still be typed); elsewhere the first word names it. Only
    bots reviewed in Slack (with a review channel) can be named: a bot not set up for Slack
    is not read or changed from Slack."""
    reviewed = [b for b in bots if b.settings.slack_channel]
    by_slug = {b.slug.lower(): b for b in reviewed}
    here = next((b for b in reviewed if b.settings.slack_channel == channel), None)
    first, rest = split_word(text)
    word = first.lower()
    # In a review channel a subcommand wins over a bot that happens to be named like one.
    if word in by_slug and not (here is not None and word in subcommands):
        return by_slug[word], rest
    return here, text.strip()


def register(app: AsyncApp, deps: SlackDeps) -> None:
    review = deps.review

    async def private(respond: AsyncRespond, text: str,
                      blocks: list[Block] | None = None) -> None:
        """An answer only the person who typed the command sees: through the command's
        response_url, which works in any channel, the app a member or not."""
        await respond(text=clip(text, SECTION_TEXT), blocks=blocks or notice(text),
                      response_type="ephemeral")

    async def usage(inv: Invocation, respond: AsyncRespond, problem: str) -> None:
        await private(respond, problem, [_section(escape(problem)), _context(
            f"`{escape(inv.prefix)} help` lists every command.")])

    # -- reading --------------------------------------------------------------------------

    async def on_stats(inv: Invocation, client: AsyncWebClient,
                       respond: AsyncRespond) -> None:
        stats = await asyncio.to_thread(review.stats, inv.bot, Period.week)
        metrics = await asyncio.to_thread(review.metrics, inv.bot, bucket=Bucket.week)
        if inv.in_review_channel:
            await client.chat_postMessage(channel=inv.channel, text=stats_text(stats),
                                          blocks=stats_message(stats))
        else:
            # Numbers asked for outside the review channel stay with the person who asked.
            await private(respond, stats_text(stats), stats_message(stats))
            if not inv.channel.startswith("D"):
                return  # a file is seen by the whole channel: only a DM keeps it private
        png = await asyncio.to_thread(
            resolution_chart, metrics["buckets"], activated_at=metrics.get("activated_at"),
            title=f"{inv.bot.name}: resolved by the bot alone, by week")
        try:
            await client.files_upload_v2(
                channel=inv.channel, content=png,
                filename=f"{inv.bot.slug}-resolution-by-week.png",
                title=f"{inv.bot.name} — automatic resolution by week",
                initial_comment="Share of conversations the bot resolved alone, week by week.")
        except SlackApiError as exc:
            # The numbers are out already; a channel that takes no files (the app not in a
            # DM, no files:write) only loses the picture.
            error = exc.response.get("error")
            log.info("stats chart not uploaded to %s: %s", inv.channel, error)
            if inv.in_review_channel:
                await private(respond, f"The chart could not be uploaded here ({error}).")

    async def on_queue(inv: Invocation, client: AsyncWebClient, respond: AsyncRespond) -> None:
        words = inv.args.lower().split()
        if len(words) > 1 or (words and words[0] not in Priority.__members__):
            await usage(inv, respond, f"`queue` takes one priority: critical, medium or low "
                                      f"(not {inv.args.strip()!r}).")
            return
        priority = Priority(words[0]) if words else None
        items = await asyncio.to_thread(review.queue, inv.bot, priority=priority)
        if priority is not None and not items:
            await private(respond, f"No {priority} suggestions waiting for review.")
            return
        await private(respond, f"{len(items)} waiting for review",
                      queue_message(items[:QUEUE_SHOWN], total=len(items)))

    async def on_questions(inv: Invocation, client: AsyncWebClient,
                           respond: AsyncRespond) -> None:
        words = inv.args.lower().split()
        kinds = {"declined": QuestionKind.declined, "once": QuestionKind.one_off,
                 "one-off": QuestionKind.one_off}
        if len(words) > 1 or (words and words[0] not in kinds):
            await usage(inv, respond, "`questions` shows the questions asked once; "
                                      f"`{inv.prefix} questions declined` the ones agents "
                                      "declined.")
            return
        kind = kinds[words[0]] if words else QuestionKind.one_off
        view = await asyncio.to_thread(review.questions, inv.bot, kind, limit=QUEUE_SHOWN * 2)
        await private(respond, f"{view.total} questions kept out of the queue",
                      questions_message(view))

    async def on_history(inv: Invocation, client: AsyncWebClient,
                         respond: AsyncRespond) -> None:
        if not inv.args.strip():
            await usage(inv, respond, "`history` needs an entry: its id or words of its "
                                      f"question, e.g. `{inv.prefix} history shipping canada`.")
            return
        entry = await asyncio.to_thread(review.find_entry, inv.bot, inv.args)
        history = await asyncio.to_thread(review.history, entry.id, bot=inv.bot)
        await private(respond, f"History of: {entry.question}", history_message(history))

    async def on_sandbox(inv: Invocation, client: AsyncWebClient,
                         respond: AsyncRespond) -> None:
        question = inv.args.strip()[:MAX_QUESTION]
        if not question:
            await usage(inv, respond, "`sandbox` needs a question a customer might ask, "
                                      f"e.g. `{inv.prefix} sandbox do you ship to Canada?`")
            return
        # Nothing changes, so anyone may try. The most urgent pending suggestions are
        # overlaid too, to show what approving them would change.
        pending = await asyncio.to_thread(review.queue, inv.bot, limit=MAX_OVERLAID)
        result = await asyncio.to_thread(review.sandbox, inv.bot, question=question,
                                         suggestion_ids=[v.id for v in pending])
        text = sandbox_text(question, result, pending=len(pending))
        await private(respond, text, [_section(text)])

    # -- changing -------------------------------------------------------------------------

    async def changed(inv: Invocation, client: AsyncWebClient, respond: AsyncRespond,
                      entry: EntryView, done: Outcome, verb: str) -> None:
        """A change to what customers are told, shown in the review channel for everyone,
        naming who made it; the person is also told if they typed it elsewhere."""
        deps.changed()
        text = (f"{verb} <@{inv.user}> changed *{inline(entry.question, 300)}*: "
                f"{escape(done.message)}")
        blocks: list[Block] = [_section(text), _context(
            f"`/autotrain history {escape(entry.id[:8])}` shows every version.")]
        try:
            await client.chat_postMessage(channel=inv.review_channel, text=text, blocks=blocks)
        except SlackApiError as exc:
            log.warning("change to entry %s not announced: %s", entry.id,
                        exc.response.get("error"))
            await private(respond, done.message)
            return
        if not inv.in_review_channel:
            await private(respond, f"{done.message} (announced in the review channel)")

    async def entry_to_change(inv: Invocation, client: AsyncWebClient, ref: str,
                              what: str) -> EntryView | None:
        entry = await asyncio.to_thread(review.find_entry, inv.bot, ref)
        if not await may_decide(deps, client, inv.who, inv.bot, what=what, entry_id=entry.id):
            return None
        return entry

    async def on_rollback(inv: Invocation, client: AsyncWebClient,
                          respond: AsyncRespond) -> None:
        if not inv.args.strip():
            await usage(inv, respond, "`rollback` needs an entry: its id or words of its "
                                      f"question, e.g. `{inv.prefix} rollback shipping canada`.")
            return
        entry = await entry_to_change(inv, client, inv.args, "rollback")
        if entry is None:
            return
        done = await asyncio.to_thread(review.execute, RollbackEntry(
            bot_id=inv.bot.id, entry_id=entry.id, actor=inv.actor), bot=inv.bot)
        await changed(inv, client, respond, entry, done, "⏪")

    async def on_revert(inv: Invocation, client: AsyncWebClient,
                        respond: AsyncRespond) -> None:
        parts = inv.args.strip().rsplit(maxsplit=1)
        version = _version(parts[1]) if len(parts) == 2 else None
        if version is None:
            got = f" (`{escape(parts[1][:40])}` is not a version number)" \
                if len(parts) == 2 else ""
            await usage(inv, respond, f"`revert` needs an entry and a version number{got}, "
                                      f"e.g. `{inv.prefix} revert shipping canada 1`.")
            return
        entry = await entry_to_change(inv, client, parts[0], "revert")
        if entry is None:
            return
        done = await asyncio.to_thread(review.execute, RevertEntry(
            bot_id=inv.bot.id, entry_id=entry.id, version=version, actor=inv.actor),
            bot=inv.bot)
        await changed(inv, client, respond, entry, done, "↩️")

    async def on_settings(inv: Invocation, client: AsyncWebClient,
                          respond: AsyncRespond) -> None:
        if not await may_decide(deps, client, inv.who, inv.bot, what="settings"):
            return
        meta = ModalMeta(bot_id=inv.bot.id, channel=inv.who.channel)
        await client.views_open(trigger_id=inv.trigger_id,
                                view=settings_modal(inv.bot.settings, meta))

    async def set_paused(inv: Invocation, client: AsyncWebClient, respond: AsyncRespond,
                         paused: bool) -> None:
        if not await may_decide(deps, client, inv.who, inv.bot,
                                what="pause" if paused else "resume"):
            return
        done = await asyncio.to_thread(review.execute, SetPaused(
            bot_id=inv.bot.id, paused=paused, actor=inv.actor), bot=inv.bot)
        # The policy wrote an announcement naming who did it: deliver it now, through the
        # one path that records its delivery, so the next round does not post it twice.
        posted = await post_announcements(review, client, inv.bot)
        deps.changed()
        if not posted.announcements or not inv.in_review_channel:
            await private(respond, done.message)

    async def on_pause(inv: Invocation, client: AsyncWebClient, respond: AsyncRespond) -> None:
        await set_paused(inv, client, respond, True)

    async def on_resume(inv: Invocation, client: AsyncWebClient,
                        respond: AsyncRespond) -> None:
        await set_paused(inv, client, respond, False)

    async def on_help(inv: Invocation, client: AsyncWebClient, respond: AsyncRespond) -> None:
        slug = None if inv.in_review_channel else inv.bot.slug
        await private(respond, "Autotrain commands", help_message(bot_slug=slug))

    subcommands: dict[str, Subcommand] = {
        "stats": on_stats, "queue": on_queue, "questions": on_questions,
        "history": on_history,
        "rollback": on_rollback, "revert": on_revert, "sandbox": on_sandbox,
        "settings": on_settings, "pause": on_pause, "resume": on_resume, "help": on_help,
    }

    # -- the command ----------------------------------------------------------------------

    @app.command(COMMAND)
    async def on_autotrain_command(ack: AsyncAck, body: dict[str, Any],
                                   client: AsyncWebClient, respond: AsyncRespond) -> None:
        # Acked at once with no text: every answer follows through respond() or a post.
        await ack()
        try:
            bots = await asyncio.to_thread(review.bots)
            channel = str(body.get("channel_id") or "")
            bot, text = pick_bot(str(body.get("text") or ""), bots=bots, channel=channel,
                                 subcommands=set(subcommands))
            if bot is None:
                await which_bot(respond, bots, str(body.get("text") or ""), set(subcommands))
                return
            word, args = split_word(text)
            inv = Invocation(user=str(body.get("user_id") or ""), team=body.get("team_id"),
                             channel=channel, trigger_id=str(body.get("trigger_id") or ""),
                             bot=bot, args=args)
            run = subcommands.get(word.lower() or "help")
            if run is None:
                await private(respond, f"{word} is not an autotrain command", [
                    _section(f"`{inline(word, 40)}` is not an autotrain command."),
                    *help_message(bot_slug=None if inv.in_review_channel else bot.slug)])
                return
            await run(inv, client, respond)
        except DomainError as exc:
            # Not found, already done, a bad value: the message is written to be shown.
            await private(respond, str(exc))
        except Exception:
            ref = reference()
            # The body is not logged: it holds the person's text and ids.
            log.exception("/autotrain failed (ref %s)", ref)
            await private(respond, "Something went wrong on our side; quote reference "
                                   f"{ref} when reporting it.")

    async def which_bot(respond: AsyncRespond, bots: list[BotRef], text: str,
                        subcommands: set[str]) -> None:
        reviewed = [b for b in bots if b.settings.slack_channel]
        first, _ = split_word(text)
        if first and first.lower() not in subcommands:
            problem = f"`{inline(first, 40)}` is not a bot reviewed in Slack."
        else:
            problem = "Which bot? Outside a review channel, start with the bot's name."
        if not reviewed:
            hint = ("No bot is reviewed in Slack yet: an admin sets a bot's `slack_channel` "
                    "(PATCH /api/v1/bots/{slug}/settings).")
        else:
            names = ", ".join(f"`{escape(b.slug)}` (<#{b.settings.slack_channel}>)"
                              for b in reviewed)
            hint = (f"Bots reviewed in Slack: {names}. For example: "
                    f"`{COMMAND} {escape(reviewed[0].slug)} queue`.")
        await private(respond, problem, [_section(f"{problem}\n{hint}")])

    # -- the settings modal -----------------------------------------------------------------

    @app.view(CallbackId.settings)
    async def on_settings_submitted(ack: AsyncAck, body: dict[str, Any],
                                    client: AsyncWebClient) -> None:
        patch, errors = settings_patch(body)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        meta = _meta(body)
        if meta is None or meta.bot_id is None:
            await ack()
            return
        # Who may save is the request's user, checked now: the metadata only says which bot.
        base = clicker(body)
        who = Clicker(user=base.user, team=base.team, channel=meta.channel, ts=None)
        try:
            bot = await asyncio.to_thread(review.bot_by_id, meta.bot_id)
            if not await may_decide(deps, client, who, bot, what="settings"):
                await ack()
                return
            done = await asyncio.to_thread(review.execute, UpdateSettings(
                bot_id=bot.id, patch=patch, actor=who.actor), bot=bot)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first.get("loc") else ""
            await ack(response_action="errors", errors={
                FIELD_BLOCKS.get(field, BlockId.autonomy): clip(str(first["msg"]), 150)})
            return
        except DomainError as exc:
            field = exc.field if isinstance(exc, InvalidInput) else None
            await ack(response_action="errors", errors={
                FIELD_BLOCKS.get(field or "", BlockId.autonomy): clip(str(exc), 150)})
            return
        await ack()
        deps.changed()
        await tell(client, who, settings_saved(bot, done.settings or {}))


def settings_patch(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings a submitted modal sets, and errors per block for what cannot be saved.
    Range checks beyond "a whole number, not negative" are the policy's."""
    state = (((body.get("view") or {}).get("state") or {}).get("values") or {})

    def got(block: BlockId, action: ActionId) -> dict[str, Any] | None:
        value = (state.get(block) or {}).get(action)
        return value if isinstance(value, dict) else None

    patch: dict[str, Any] = {}
    errors: dict[str, str] = {}
    autonomy = got(BlockId.autonomy, ActionId.autonomy_select)
    if autonomy and autonomy.get("selected_option"):
        patch["autonomy"] = autonomy["selected_option"].get("value")
    frequency = got(BlockId.frequency, ActionId.frequency_select)
    if frequency and frequency.get("selected_option"):
        patch["notify_frequency"] = frequency["selected_option"].get("value")
    excluded = got(BlockId.excluded, ActionId.excluded_select)
    if excluded is not None:
        # An empty multi-select is a choice: no category is kept from auto-publishing.
        patch["excluded_categories"] = [str(o.get("value")) for o in
                                        excluded.get("selected_options") or []]
    limit = got(BlockId.limit, ActionId.limit_input)
    if limit is not None:
        raw = str(limit.get("value") or "").strip()
        number = _whole(raw)
        if number is None:
            errors[BlockId.limit] = "Type a whole number, 0 or more (0: nothing is " \
                                    "published automatically)."
        else:
            patch["daily_auto_publish_limit"] = number
    return patch, errors


def settings_saved(bot: BotRef, after: dict[str, Any]) -> str:
    frequency = after.get("notify_frequency")
    words = FREQUENCY_WORDS.get(NotifyFrequency(frequency), str(frequency)) \
        if frequency in NotifyFrequency.__members__ else str(frequency)
    excluded = ", ".join(after.get("excluded_categories") or []) or "none"
    return (f"Settings saved for {bot.name}: autonomy {after.get('autonomy')}; "
            f"{words.lower()}; at most {after.get('daily_auto_publish_limit')} published "
            f"automatically a day; never published automatically: {excluded}.")


def sandbox_text(question: str, result: SandboxAnswer, *, pending: int) -> str:
    """What the bot answers today, and what it would answer with the pending suggestions
    approved (when that differs)."""
    def said(answer: str | None, confidence: int, escalate: bool) -> str:
        if escalate or not answer:
            return f"would hand over to a person (confidence {confidence})"
        return f"(confidence {confidence})\n{quote(clip(answer, 1_200))}"

    live = result.live
    text = (f"*Asked:* {inline(question, 500)}\n"
            f"*Today the bot answers* {said(live.answer, live.confidence, live.escalate)}")
    if pending:
        same = (result.answer, result.escalate) == (live.answer, live.escalate)
        with_them = "the same" if same else said(result.answer, result.confidence,
                                                 result.escalate)
        text += (f"\n*With the {pending} most urgent pending suggestion"
                 f"{'s' if pending > 1 else ''} approved:* {with_them}")
    return clip(text, SECTION_TEXT)


def _whole(word: str) -> int | None:
    """A whole number, 0 or more, as typed (no sign, no decimals), or None."""
    return int(word) if word.isascii() and word.isdigit() else None


def _version(word: str) -> int | None:
    """An entry's version number (1 or more), or None."""
    number = _whole(word)
    return number if number is not None and number > 0 else None


def _meta(body: dict[str, Any]) -> ModalMeta | None:
    try:
        return ModalMeta.model_validate_json(
            ((body.get("view") or {}).get("private_metadata")) or "")
    except ValidationError:
        return None


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT) or " "))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(text, CONTEXT_TEXT) or " ")])
