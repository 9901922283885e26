"""Sending mail: every message is queued in SQL first, then sent by SMTP (aiosmtplib) or, on
the embedded default, written as an .eml file; a failed send is retried with backoff."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol

import aiosmtplib
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from core.review import OutgoingView, Review
from core.settings import Settings

log = logging.getLogger(__name__)

# Quick retries inside one attempt, for a dropped connection or a busy server; longer
# outages are the queue's business (Mailroom.mail_failed backs off up to an hour).
QUICK_TRIES = 3
SMTP_TIMEOUT_SECONDS = 30.0
_TRANSIENT = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
              aiosmtplib.SMTPTimeoutError, ConnectionError, TimeoutError)


class Mailer(Protocol):
    """Hands one message to the next hop; raises when it could not."""

    async def send(self, raw: bytes, *, sender: str, recipients: list[str]) -> None: ...

    def describe(self) -> str: ...


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host is not None
        self.settings = settings

    def describe(self) -> str:
        return f"smtp {self.settings.smtp_host}:{self.settings.smtp_port}"

    async def send(self, raw: bytes, *, sender: str, recipients: list[str]) -> None:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        async for attempt in AsyncRetrying(
                stop=stop_after_attempt(QUICK_TRIES), wait=wait_exponential(min=0.5, max=4),
                retry=retry_if_exception_type(_TRANSIENT), reraise=True):
            with attempt:
                await aiosmtplib.send(
                    raw, sender=sender, recipients=recipients, hostname=s.smtp_host,
                    port=s.smtp_port, username=s.smtp_username, password=password,
                    use_tls=s.smtp_tls == "tls", start_tls=s.smtp_tls == "starttls",
                    timeout=SMTP_TIMEOUT_SECONDS)


class FileMailer:
    """Email off (the embedded default): each message is an .eml file in the outbox, which
    any mail client opens."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.written: list[Path] = []

    def describe(self) -> str:
        return f"files in {self.directory}"

    async def send(self, raw: bytes, *, sender: str, recipients: list[str]) -> None:
        await asyncio.to_thread(self._write, raw)

    def _write(self, raw: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        head = raw[:4000].decode("ascii", "replace")
        subject = re.search(r"^Subject: ?(.*)$", head, re.M | re.I)
        slug = re.sub(r"[^a-z0-9]+", "-", (subject.group(1) if subject else "mail").lower())
        name = f"{_stamp()}-{slug.strip('-')[:60] or 'mail'}.eml"
        draft = self.directory / f".{name}.part"
        draft.write_bytes(raw)
        os.replace(draft, self.directory / name)  # a reader never sees half a message
        self.written.append(self.directory / name)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


def mailer_for(settings: Settings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_enabled else FileMailer(settings.mail_outbox_dir)


@dataclass
class Delivery:
    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def queue(review: Review, msg: EmailMessage, *, purpose: str, bot_id: str | None) -> str:
    """Record a message before any attempt, so it survives a crash or an outage."""
    to = [addr for _, addr in getaddresses([str(msg["To"] or "")]) if addr]
    return review.mail.queue_mail(recipient=", ".join(to), purpose=purpose,
                                  subject=str(msg["Subject"] or ""),
                                  message_id=str(msg["Message-ID"] or ""),
                                  raw=bytes(msg), bot_id=bot_id)


async def send_one(review: Review, mailer: Mailer, settings: Settings, mail: OutgoingView,
                   *, at: datetime | None = None) -> bool:
    recipients = [a.strip() for a in mail.recipient.split(",") if a.strip()]
    try:
        await mailer.send(mail.raw, sender=settings.email_address, recipients=recipients)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        retry_at = await asyncio.to_thread(review.mail.mail_failed, mail.id,
                                           error=f"{type(exc).__name__}: {exc}", at=at)
        # The id, not the address: the outbox (GET …/mail) shows whom it was for.
        log.warning("mail %s (%s) not sent, retried at %s: %s", mail.id, mail.purpose,
                    f"{retry_at:%H:%M:%S}", type(exc).__name__)
        return False
    await asyncio.to_thread(review.mail.mail_sent, mail.id, at=at)
    return True


async def deliver_due(review: Review, mailer: Mailer, settings: Settings, *,
                      only: list[str] | None = None, limit: int = 100,
                      at: datetime | None = None) -> Delivery:
    """Send what is due at `at` (now by default; or just `only`, right after queueing them):
    each message once it went, each failure recorded with its next attempt."""
    report = Delivery()
    due = await asyncio.to_thread(review.mail.claim_due, limit=limit, only=only, at=at)
    for mail in due:
        if await send_one(review, mailer, settings, mail, at=at):
            report.sent.append(mail.id)
        else:
            report.failed.append(mail.id)
    return report
