"""An autotrain whose email goes to a recording SMTP server on 127.0.0.1, with one bot whose
manager reviews by email, and replies built the way mail clients build them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app import create_app
from core.db import session_scope
from core.embeddings import Embedder
from core.models import Suggestion
from core.policy.commands import Actor, Channel, UpdateSettings
from core.review import BotRef
from core.services import Services, build_core_services
from core.settings import load_settings
from tests.helpers import ADMIN_KEY
from tests.mail_servers import SmtpRecorder, smtp_recorder

MANAGER = "manager@shop.example"
OURS = "autotrain@support.example"
REPLY_TO = "autotrain+{key}@support.example"
INBOUND_SECRET = "inbound-test-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SETUP = Actor(name="setup", channel=Channel.api)


@dataclass
class MailWorld:
    svc: Services
    client: TestClient
    smtp: SmtpRecorder
    bot: BotRef

    def suggestion(self, *, question: str = "Do you ship to Canada?",
                   answer: str = "Yes, we ship to Canada in 5 to 8 business days.",
                   priority: str = "critical", confidence: int = 85,
                   score: float = 7.0, **fields: Any) -> str:
        sug = Suggestion(bot_id=self.bot.id, kind=fields.pop("kind", "new_answer"),
                         priority=priority, score=score, confidence=confidence,
                         question=question, answer=answer,
                         variants=fields.pop("variants", ["ship to canada?"]),
                         created_at=datetime.now(UTC), **fields)
        with session_scope(self.svc.engine) as session:
            session.add(sug)
        return sug.id

    def status(self, sid: str) -> str:
        return self.svc.review.card(sid, bot=self.bot).status

    def answer(self, question: str) -> str | None:
        return self.svc.answer(bot=self.svc.review.bot_by_id(self.bot.id),
                               question=question).answer

    def send_digest(self) -> dict[str, Any]:
        r = self.client.post(f"/api/v1/bots/{self.bot.slug}/digest", headers=ADMIN)
        assert r.status_code == 200, r.text
        return cast(dict[str, Any], r.json()["email"])

    def digest(self) -> EmailMessage:
        """Send a digest and return it as the manager's mail client got it."""
        before = len(self.smtp.messages)
        sent = self.send_digest()
        assert sent["sent"], sent
        return self.smtp.wait_for(before + 1)[-1].message

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


@pytest.fixture
def mail_world(tmp_path: Path, embedder: Embedder,
               smtp_recorder: SmtpRecorder) -> Iterator[MailWorld]:
    settings = load_settings(
        AUTOTRAIN_DATA_DIR=tmp_path / "data", AUTOTRAIN_API_KEY=ADMIN_KEY, DATABASE_URL="",
        CHROMA_URL="", REDIS_URL="", SLACK_BOT_TOKEN="", SLACK_SIGNING_SECRET="",
        SMTP_HOST=smtp_recorder.host, SMTP_PORT=smtp_recorder.port, SMTP_TLS="none",
        EMAIL_FROM=f"autotrain <{OURS}>", EMAIL_REPLY_TO=REPLY_TO,
        AUTOTRAIN_INBOUND_SECRET=INBOUND_SECRET,
        AUTOTRAIN_PUBLIC_URL="https://autotrain.shop.example")
    svc = build_core_services(settings, embedder=embedder)
    bot = svc.review.create_bot(slug="shop", name="Shop")
    svc.review.execute(UpdateSettings(bot_id=bot.id, actor=SETUP, patch={
        "email_recipients": [MANAGER]}), bot=bot)
    bot = svc.review.bot_by_id(bot.id)
    with TestClient(create_app(svc, background_jobs=False)) as client:
        yield MailWorld(svc=svc, client=client, smtp=smtp_recorder, bot=bot)
    svc.close()


def parsed(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, message_from_bytes(raw, policy=policy.default))


__all__ = [
    "ADMIN",
    "INBOUND_SECRET",
    "MANAGER",
    "OURS",
    "MailWorld",
    "html_of",
    "parsed",
    "reply_to",
    "smtp_recorder",
    "text_of",
]
