"""Replies to digests, whichever route brought them (SMTP listener, IMAP, webhook): checked
like the best reply-by-email systems check them, then applied through the review door and
confirmed in the same thread."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.mail.commands import ReplyCommand, read_commands
from bot.mail.decide import Ask, Decision, decide
from bot.mail.digest import reply_address
from bot.mail.message import build_message, make_message_id
from bot.mail.parse import Ignored, InboundMail, read_mail, reply_key
from bot.mail.render import Confirmation, ConfirmationLine, render_confirmation
from bot.mail.send import Mailer, deliver_due, queue
from core.errors import DomainError
from core.models import utcnow
from core.policy.commands import Actor, Channel
from core.review import BotRef, DigestNumbers, ReplyKeyView, Review
from core.settings import Settings
from core.status import SuggestionStatus

log = logging.getLogger(__name__)

CONFIRMATION = "confirmation"
NOTICE = "notice"
# One refusal notice per address and day, whatever the reason: a forwarding rule or a
# misconfigured auto-responder that slips through gets one answer, not a loop.
REFUSAL = "refusal"


@dataclass
class Received:
    """What became of one inbound message (logged, returned by the webhook, benchmarked)."""

    outcome: str  # applied | auto_reply | bounce | own_mail | duplicate | unknown_key | …
    detail: str | None = None
    message_id: str | None = None
    bot: str | None = None
    applied: int = 0
    refused: int = 0
    replied: bool = False
    lines: list[str] = field(default_factory=list)
    bot_id: str | None = None

    def public(self) -> dict[str, object]:
        return {"outcome": self.outcome, "detail": self.detail, "message_id": self.message_id,
                "bot": self.bot, "applied": self.applied, "refused": self.refused,
                "replied": self.replied, "results": self.lines}


@dataclass
class _Reply:
    """A message to send after the database work is done (outside the worker thread)."""

    mail_ids: list[str] = field(default_factory=list)


class Inbound:
    """The one entry point of every inbound route: `await inbound(raw, source="smtp")`."""

    def __init__(self, review: Review, settings: Settings, mailer: Mailer) -> None:
        self.review = review
        self.settings = settings
        self.mailer = mailer
        # Confirmations being sent after their reply was answered (kept so none is
        # garbage-collected mid-send, and so shutdown and tests can wait for them).
        self.sending: set[asyncio.Task[Any]] = set()

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self.sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sending a reply's answer failed; the email round retries it",
                      exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the confirmations still being sent."""
        while self.sending:
            await asyncio.gather(*list(self.sending), return_exceptions=True)

    async def __call__(self, raw: bytes, *, envelope_to: Sequence[str] = (),
                       source: str) -> Received:
        outgoing = _Reply()
        got = await asyncio.to_thread(self._process, raw, list(envelope_to), source, outgoing)
        if outgoing.mail_ids:
            # Queued in SQL already; sent after the route has answered, so a slow outgoing
            # server never holds up an SMTP session or a webhook. If this process stops
            # first, the email round sends it.
            got.replied = True
            task = asyncio.ensure_future(deliver_due(self.review, self.mailer, self.settings,
                                                     only=outgoing.mail_ids))
            self.sending.add(task)
            task.add_done_callback(self._sent)
        log.info("inbound %s mail: %s%s", source, got.outcome,
                 f" ({got.applied} applied, {got.refused} refused)" if got.applied
                 or got.refused else "")
        return got

    # -- the checks, in order -----------------------------------------------------------------

    def _process(self, raw: bytes, envelope_to: list[str], source: str,
                 out: _Reply) -> Received:
        s = self.settings
        mail = read_mail(raw, own_addresses=[s.email_address], envelope_to=envelope_to,
                         max_bytes=s.email_max_bytes)
        message_id = mail.message_id or f"sha256:{hashlib.sha256(raw).hexdigest()}"
        if mail.ignored in (Ignored.too_large, Ignored.malformed):
            # Refused with a log line; nothing can be trusted enough to answer.
            log.warning("inbound %s mail refused: %s (%d bytes)", source, mail.ignored,
                        len(raw))
            return Received(outcome=str(mail.ignored), message_id=mail.message_id)
        if not self.review.mail.claim_inbound(message_id, source=source):
            return Received(outcome="duplicate", message_id=mail.message_id,
                            detail="this message was processed before")
        try:
            got = self._checked(mail, out)
        except Exception:
            # The route answers "try again" (SMTP 451; IMAP leaves the message unread): let
            # that retry in, or the reply would be dropped as a duplicate, never applied.
            self.review.mail.release_inbound(message_id)
            raise
        got.message_id = mail.message_id
        self.review.mail.inbound_done(message_id, outcome=got.outcome, detail=got.detail,
                                      bot_id=got.bot_id)
        return got

    def _checked(self, mail: InboundMail, out: _Reply) -> Received:
        if mail.ignored in (Ignored.auto_reply, Ignored.bounce, Ignored.own_mail):
            # No action and no answer: answering an auto-responder is how mail loops start.
            return Received(outcome=str(mail.ignored))
        sender = mail.sender or ""
        key = reply_key(mail.recipients, self.settings.email_reply_to) \
            if self.settings.email_reply_to else None
        held = self.review.mail.reply_key(key) if key else None
        if held is None:
            if self._is_a_reviewer(sender):
                self._refuse(mail, sender, out, "This reply did not reach autotrain through "
                             "a digest's reply address, so it cannot tell which digest it "
                             "answers. Reply to the latest digest itself.")
            return Received(outcome="unknown_key", detail="no valid reply key in the address")
        bot = self.review.bot_by_id(held.bot_id)
        if sender != held.recipient:
            # A forwarded digest or a forged sender: only the person it was sent to may act.
            # They are told (once a day) — never the sender, who may be forged.
            self._refuse(mail, held.recipient, out, f"Someone replied to the digest sent to "
                         f"you from another address ({_domain_only(sender)}). Replies are "
                         "only accepted from the address the digest was sent to; nothing "
                         "was changed.", bot=bot)
            return Received(outcome="wrong_sender", bot=bot.slug, bot_id=bot.id,
                            detail="sender is not the key's recipient")
        if held.recipient not in bot.settings.email_recipients:
            self._refuse(mail, sender, out, f"{sender} no longer reviews {bot.name}'s "
                         "suggestions by email; nothing was changed.", bot=bot)
            return Received(outcome="not_a_recipient", bot=bot.slug, bot_id=bot.id)
        if held.expired():
            self._refuse(mail, sender, out, f"This digest's reply address expired "
                         f"({held.expires_at:%Y-%m-%d}); nothing was changed. Reply to the "
                         "latest digest instead.", bot=bot)
            return Received(outcome="expired_key", bot=bot.slug, bot_id=bot.id)
        authserv = self.settings.email_dmarc_authserv_id
        if authserv and mail.dmarc(authserv) == "fail":
            self._refuse(mail, sender, out, "Your reply failed the DMARC check of our mail "
                         "server (it may not really come from your address), so nothing was "
                         "changed. If you did send it, ask your mail administrator about "
                         "DMARC/SPF/DKIM for your domain.", bot=bot)
            return Received(outcome="dmarc_fail", bot=bot.slug, bot_id=bot.id)
        return self._apply(mail, held, bot, out)

    # -- applying ---------------------------------------------------------------------------

    def _apply(self, mail: InboundMail, held: ReplyKeyView, bot: BotRef,
               out: _Reply) -> Received:
        today = datetime.now(ZoneInfo(bot.settings.timezone)).date()
        read = read_commands(mail.text, today=today)
        if not read.commands:
            why = "no command" if not read.problems else "no command it could read"
            self._refuse(mail, held.recipient, out, f"autotrain read your reply but found "
                         f"{why} in it, so nothing was changed.", bot=bot,
                         problems=read.problems)
            return Received(outcome="no_commands", bot=bot.slug, bot_id=bot.id,
                            detail="; ".join(read.problems)[:500] or None)
        digest = self.review.mail.digest(held.digest_id)
        actor = Actor(name=held.recipient, channel=Channel.email)
        done: list[Decision] = []
        for command in read.commands:
            asks = self._asks(command, digest, bot)
            if not asks:
                done.append(Decision(f"approve all {command.scope or ''}".strip(), False,
                                     "Nothing in that digest is still waiting for that."))
            done += [decide(self.review, bot, digest, ask, actor=actor) for ask in asks]
        got = Received(outcome="applied", bot=bot.slug, bot_id=bot.id,
                       applied=sum(d.ok for d in done), refused=sum(not d.ok for d in done),
                       lines=[f"{'✓' if d.ok else '✗'} {d.command}: {d.message}"
                              for d in done])
        pending = len(self.review.queue(bot, status=SuggestionStatus.pending, limit=1000))
        self._send(mail, held.recipient, bot, out, purpose=CONFIRMATION,
                   confirmation=Confirmation(
                       bot_name=bot.name, bot_slug=bot.slug, subject=mail.subject,
                       lines=[ConfirmationLine(command=d.command, ok=d.ok, message=d.message)
                              for d in done],
                       problems=read.problems, pending=pending),
                   digest=digest)
        got.detail = f"{got.applied} applied, {got.refused} refused"
        return got

    def _asks(self, command: ReplyCommand, digest: DigestNumbers, bot: BotRef) -> list[Ask]:
        if command.item is not None:
            return [Ask(action=command.action, number=command.item, reason=command.reason,
                        comment=command.comment, answer=command.answer, until=command.until,
                        days=command.days)]
        # "approve all" / "approve all critical": the digest's suggestions still waiting.
        asks: list[Ask] = []
        for item in digest.items:
            if item.suggestion_id is None:
                continue
            try:
                view = self.review.card(item.suggestion_id, bot=bot)
            except DomainError:
                continue
            if view.status != SuggestionStatus.pending or view.needs_answer:
                continue
            if command.scope not in (None, "all") and view.priority != command.scope:
                continue
            asks.append(Ask(action="approve", number=item.number))
        return asks

    # -- answering --------------------------------------------------------------------------

    def _is_a_reviewer(self, address: str) -> bool:
        return bool(address) and any(address in b.settings.email_recipients
                                     for b in self.review.bots())

    def _refuse(self, mail: InboundMail, to: str, out: _Reply, why: str, *,
                bot: BotRef | None = None, problems: Sequence[str] = ()) -> None:
        day = utcnow().date().isoformat()
        if not self.review.mail.notice_once(to, kind=REFUSAL, day=day):
            return
        self._send(mail, to, bot, out, purpose=NOTICE, confirmation=Confirmation(
            bot_name=bot.name if bot else "autotrain", bot_slug=bot.slug if bot else "",
            subject=mail.subject, lines=[], problems=list(problems),
            pending=len(self.review.queue(bot, status=SuggestionStatus.pending, limit=1000))
            if bot else 0, notice=why))

    def _send(self, mail: InboundMail, to: str, bot: BotRef | None, out: _Reply, *,
              purpose: str, confirmation: Confirmation,
              digest: DigestNumbers | None = None) -> None:
        s = self.settings
        reply_to = None
        if digest is not None and bot is not None:
            # A fresh key on the same digest: the manager can answer the confirmation too.
            reply_to = reply_address(s, self.review.mail.issue_reply_key(
                bot, digest_id=digest.id, recipient=to, days=s.email_key_days))
        content = render_confirmation(confirmation)
        domain = s.email_address.rsplit("@", 1)[-1] or "autotrain.local"
        parent = f"<{mail.message_id}>" if mail.message_id else None
        msg = build_message(
            sender=s.email_from, to=to, content=content, reply_to=reply_to,
            message_id=make_message_id(kind=purpose, bot_slug=bot.slug if bot else "autotrain",
                                       ref=uuid.uuid4().hex, domain=domain),
            in_reply_to=parent,
            references=[*(f"<{r}>" for r in mail.references), *([parent] if parent else [])],
            kind=purpose)
        out.mail_ids.append(queue(self.review, msg, purpose=purpose,
                                  bot_id=bot.id if bot else None))


def _domain_only(address: str) -> str:
    """Who replied, without their mailbox: enough to recognise a colleague or a stranger."""
    return f"someone at {address.rsplit('@', 1)[-1]}" if "@" in address else "an unknown sender"
