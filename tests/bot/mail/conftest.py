"""An autotrain whose email goes to a recording SMTP server on 127.0.0.1, with one bot whose
manager reviews by email, and replies built the way mail clients build them."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app import create_app
from bot.mail.service import MailDeps
from core.db import session_scope
from core.embeddings import Embedder
from core.models import Suggestion
from core.policy.commands import Actor, Channel, UpdateSettings
from core.review import BotRef
from core.services import Services, build_core_services
from core.settings import Settings, load_settings
from tests.helpers import ADMIN_KEY, EMAIL_FIXTURES
from tests.mail_servers import ImapMailbox, ReceivedMail, SmtpRecorder, smtp_recorder

MANAGER = "manager@shop.example"
OURS = "autotrain@support.example"
REPLY_TO = "autotrain+{key}@support.example"
INBOUND_SECRET = "inbound-test-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SETUP = Actor(name="setup", channel=Channel.api)
# Real messages from many mail clients and servers (see its README.md).
FIXTURES = EMAIL_FIXTURES


@dataclass
class MailWorld:
    svc: Services
    client: TestClient
    smtp: SmtpRecorder
    bot: BotRef

    @property
    def settings(self) -> Settings:
        return self.svc.settings

    @property
    def mail(self) -> MailDeps:
        """The app's email channel: its mailer, inbound pipeline and links."""
        return cast(MailDeps, self.client.app.state.mail)  # type: ignore[attr-defined]

    def settle(self) -> list[ReceivedMail]:
        """Every message sent so far, once the answers still on their way have gone (a
        reply's confirmation leaves after the route answered). An async test awaits
        `world.mail.inbound.drain()` itself: its answers are sent on its own loop."""
        assert self.client.portal is not None
        self.client.portal.call(self.mail.inbound.drain)
        return self.smtp.messages

    def smtp_send(self, raw: bytes, *, to: list[str],
                  sender: str = MANAGER) -> dict[str, tuple[int, bytes]]:
        """Hand `raw` to the app's own SMTP listener (a world made with
        AUTOTRAIN_SMTP_LISTEN_PORT=0) as a mail server would; raises what smtplib raises
        when it is refused."""
        port = self.client.app.state.smtp_listener.port  # type: ignore[attr-defined]
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            return smtp.sendmail(sender, to, raw)

    def add_bot(self, slug: str, *, recipients: list[str]) -> BotRef:
        bot = self.svc.review.create_bot(slug=slug, name=slug.title())
        self.svc.review.execute(UpdateSettings(bot_id=bot.id, actor=SETUP, patch={
            "email_recipients": recipients}), bot=bot)
        return self.svc.review.bot_by_id(bot.id)

    def configure(self, bot: BotRef | None = None, **patch: Any) -> BotRef:
        """Change a bot's settings through the review door; returns the bot as it is now."""
        bot = bot or self.bot
        self.svc.review.execute(UpdateSettings(bot_id=bot.id, actor=SETUP, patch=patch),
                                bot=bot)
        fresh = self.svc.review.bot_by_id(bot.id)
        if bot.id == self.bot.id:
            self.bot = fresh
        return fresh

    def suggestion(self, *, question: str = "Do you ship to Canada?",
                   answer: str = "Yes, we ship to Canada in 5 to 8 business days.",
                   priority: str = "critical", confidence: int = 85,
                   score: float = 7.0, bot: BotRef | None = None, **fields: Any) -> str:
        sug = Suggestion(bot_id=(bot or self.bot).id, kind=fields.pop("kind", "new_answer"),
                         priority=priority, score=score, confidence=confidence,
                         question=question, answer=answer,
                         variants=fields.pop("variants", ["ship to canada?"]),
                         created_at=datetime.now(UTC), **fields)
        with session_scope(self.svc.engine) as session:
            session.add(sug)
        return sug.id

    def two_items(self) -> tuple[str, str]:
        """Pending suggestions that are item 1 (critical) and item 2 (medium) of a digest."""
        first = self.suggestion()
        second = self.suggestion(question="Do you gift wrap?", answer="Yes, for 3 euros.",
                                 priority="medium", score=3.0)
        return first, second

    def answered(self, count: int) -> EmailMessage:
        """The last of exactly `count` messages sent (the digest is the first): the one the
        manager got in answer to a reply."""
        got = self.settle()
        assert len(got) == count, [str(m.message["Subject"]) for m in got]
        assert got[-1].rcpt_tos == (MANAGER,)
        return got[-1].message

    def status(self, sid: str, *, bot: BotRef | None = None) -> str:
        return self.svc.review.card(sid, bot=bot or self.bot).status

    def answer(self, question: str, *, bot: BotRef | None = None) -> str | None:
        return self.svc.answer(bot=self.svc.review.bot_by_id((bot or self.bot).id),
                               question=question).answer

    def send_digest(self, bot: BotRef | None = None) -> dict[str, Any]:
        r = self.client.post(f"/api/v1/bots/{(bot or self.bot).slug}/digest", headers=ADMIN)
        assert r.status_code == 200, r.text
        return cast(dict[str, Any], r.json()["email"])

    def digest(self, bot: BotRef | None = None) -> EmailMessage:
        """Send a digest and return it as the (first) manager's mail client got it."""
        before = len(self.smtp.messages)
        sent = self.send_digest(bot)
        assert sent["sent"], sent
        return self.smtp.wait_for(before + 1)[before].message

    def post_inbound(self, raw: bytes, *, secret: str = INBOUND_SECRET,
                     content_type: str = "message/rfc822") -> Response:
        return self.client.post("/email/inbound", content=raw, headers={
            "Authorization": f"Bearer {secret}", "Content-Type": content_type})


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return cast(str, part.get_content())


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return cast(str, part.get_content())


def reply_to(digest: EmailMessage, new_text: str, *, sender: str = MANAGER,
             to: str | None = None, headers: dict[str, str] | None = None,
             quoted: str | None = None, message_id: str | None = None) -> bytes:
    """A reply as Gmail writes one: the new text, then "On … wrote:" and the digest quoted."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = f"Pat Manager <{sender}>"
    msg["To"] = to or str(digest["Reply-To"])
    msg["Subject"] = f"Re: {digest['Subject']}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="shop.example")
    msg["In-Reply-To"] = str(digest["Message-ID"])
    msg["References"] = str(digest["Message-ID"])
    for name, value in (headers or {}).items():
        msg[name] = value
    history = quoted if quoted is not None else text_of(digest)
    msg.set_content(f"{new_text}\n\nOn Mon, 1 Dec 2026 at 09:00, autotrain <{OURS}> wrote:\n"
                    + "\n".join(f"> {line}" for line in history.splitlines()) + "\n")
    return bytes(msg)


MakeMailWorld = Callable[..., MailWorld]


@pytest.fixture
def make_mail_world(tmp_path: Path, embedder: Embedder,
                    smtp_recorder: SmtpRecorder) -> Iterator[MakeMailWorld]:
    """`make_mail_world(**settings)`: the mail world with some settings changed (an SMTP
    listener, IMAP, DMARC, SMTP_HOST="" for email off...). The app's lifespan runs, so what
    it starts from the settings (the SMTP listener) is running."""
    with ExitStack() as stack:
        def make(**overrides: Any) -> MailWorld:
            settings = load_settings(**{
                "AUTOTRAIN_DATA_DIR": tmp_path / "data", "AUTOTRAIN_API_KEY": ADMIN_KEY,
                "DATABASE_URL": "", "CHROMA_URL": "", "REDIS_URL": "", "SLACK_BOT_TOKEN": "",
                "SLACK_SIGNING_SECRET": "", "SMTP_HOST": smtp_recorder.host,
                "SMTP_PORT": smtp_recorder.port, "SMTP_TLS": "none",
                "EMAIL_FROM": f"autotrain <{OURS}>", "EMAIL_REPLY_TO": REPLY_TO,
                "AUTOTRAIN_INBOUND_SECRET": INBOUND_SECRET,
                "AUTOTRAIN_PUBLIC_URL": "https://autotrain.shop.example", **overrides})
            svc = build_core_services(settings, embedder=embedder)
            stack.callback(svc.close)
            bot = svc.review.create_bot(slug="shop", name="Shop")
            svc.review.execute(UpdateSettings(bot_id=bot.id, actor=SETUP, patch={
                "email_recipients": [MANAGER]}), bot=bot)
            bot = svc.review.bot_by_id(bot.id)
            client = stack.enter_context(TestClient(create_app(svc, background_jobs=False)))
            return MailWorld(svc=svc, client=client, smtp=smtp_recorder, bot=bot)

        yield make


@pytest.fixture
def mail_world(make_mail_world: MakeMailWorld) -> MailWorld:
    return make_mail_world()


def imap_settings(mailbox: ImapMailbox) -> dict[str, Any]:
    """The settings that make the app poll `mailbox` (plain IMAP on loopback)."""
    return {"IMAP_HOST": mailbox.host, "IMAP_PORT": mailbox.port,
            "IMAP_USERNAME": mailbox.user, "IMAP_PASSWORD": mailbox.password,
            "IMAP_TLS": "none"}


def readdress(raw: bytes, *, to: str, sender: str | None = None,
              message_id: str | None = None) -> bytes:
    """A real message (a fixture) sent to `to`, from `sender` when given, with a fresh
    Message-ID when given: everything else, bodies and charsets included, byte for byte."""
    # compat32 writes back what it read; the modern policy would re-fold and re-encode.
    msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    replace = {"To": to, "From": sender, "Message-ID": message_id}
    for name, value in replace.items():
        if value is not None:
            del msg[name]
            msg[name] = value
    return msg.as_bytes()


def parsed(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, message_from_bytes(raw, policy=policy.default))


__all__ = [
    "ADMIN",
    "FIXTURES",
    "INBOUND_SECRET",
    "MANAGER",
    "OURS",
    "MailWorld",
    "MakeMailWorld",
    "html_of",
    "imap_settings",
    "parsed",
    "readdress",
    "reply_to",
    "smtp_recorder",
    "text_of",
]
