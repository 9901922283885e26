"""The email channel's records behind the review door: digest numbers, reply keys, inbound
messages seen, refusal notices, spent link tokens and the outgoing mail queue."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.db import session_scope
from core.errors import NotFound
from core.models import (
    InboundMail,
    LinkUse,
    MailDigest,
    MailNotice,
    OutgoingMail,
    ReplyKey,
    as_utc,
    utcnow,
)
from core.review.views import BotRef

# A retry waits twice as long each time, from this to at most MAX_BACKOFF: a mail server
# down for a night gets a message as soon as it is back, an hour at most.
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
# How long a claimed message is left to its sender before another process may try it.
SEND_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class Numbered:
    """One number of a digest: a suggestion to decide, or an announcement to undo."""

    number: int
    suggestion_id: str | None = None
    announcement_id: int | None = None


@dataclass(frozen=True)
class DigestNumbers:
    id: str
    bot_id: str
    period: str | None
    created_at: datetime
    items: list[Numbered]

    def find(self, number: int) -> Numbered | None:
        return next((i for i in self.items if i.number == number), None)


@dataclass(frozen=True)
class ReplyKeyView:
    digest_id: str
    bot_id: str
    recipient: str
    created_at: datetime
    expires_at: datetime

    def expired(self, at: datetime | None = None) -> bool:
        return as_utc(at or utcnow()) >= as_utc(self.expires_at)


@dataclass(frozen=True)
class OutgoingView:
    id: str
    bot_id: str | None
    recipient: str
    purpose: str
    subject: str
    message_id: str
    raw: bytes
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_reply_key() -> str:
    """160 random bits in lowercase base32 (32 characters of a-z and 2-7): address local
    parts pass through systems that change their case, so the key must not depend on it."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()


class Mailroom:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- digests and their numbers ----------------------------------------------------------

    def open_digest(self, bot: BotRef, *, suggestions: Sequence[str],
                    announcements: Sequence[int] = (), period: str | None = None
                    ) -> DigestNumbers:
        """Number a digest's contents: its suggestions 1…n in the order given, then its
        announcements after them, so one number never means two things."""
        items = [{"n": i, "suggestion_id": sid} for i, sid in enumerate(suggestions, 1)]
        items += [{"n": len(suggestions) + i, "announcement_id": aid}
                  for i, aid in enumerate(announcements, 1)]
        with session_scope(self.engine) as session:
            row = MailDigest(bot_id=bot.id, period=period, items=items)
            session.add(row)
            session.flush()
            return _numbers(row)

    def digest(self, digest_id: str) -> DigestNumbers:
        with Session(self.engine) as session:
            row = session.get(MailDigest, digest_id)
            if row is None:
                raise NotFound(f"digest {digest_id} not found")
            return _numbers(row)

    # -- reply keys -------------------------------------------------------------------------

    def issue_reply_key(self, bot: BotRef, *, digest_id: str, recipient: str, days: int,
                        at: datetime | None = None) -> str:
        """A new key for `recipient`'s Reply-To on this digest; only its hash is kept."""
        key = new_reply_key()
        now = as_utc(at or utcnow())
        with session_scope(self.engine) as session:
            session.add(ReplyKey(key_hash=_hash(key), digest_id=digest_id, bot_id=bot.id,
                                 recipient=recipient.lower(), created_at=now,
                                 expires_at=now + timedelta(days=days)))
        return key

    def reply_key(self, key: str) -> ReplyKeyView | None:
        with Session(self.engine) as session:
            row = session.get(ReplyKey, _hash(key.strip().lower()))
            if row is None:
                return None
            return ReplyKeyView(digest_id=row.digest_id, bot_id=row.bot_id,
                                recipient=row.recipient, created_at=row.created_at,
                                expires_at=row.expires_at)

    # -- inbound messages -------------------------------------------------------------------

    def claim_inbound(self, message_id: str, *, source: str) -> bool:
        """Record a received message by its Message-ID; False if it was seen before (the same
        reply through a retry, a second route or a re-poll is processed once)."""
        try:
            with session_scope(self.engine) as session:
                session.add(InboundMail(id_hash=_hash(message_id.strip().lower()),
                                        message_id=message_id[:255], source=source))
        except IntegrityError:
            return False
        return True

    def release_inbound(self, message_id: str) -> None:
        """Forget a message whose processing failed, so the sender's retry (or the next IMAP
        poll) processes it instead of taking it for a duplicate."""
        with session_scope(self.engine) as session:
            session.execute(delete(InboundMail).where(
                col(InboundMail.id_hash) == _hash(message_id.strip().lower())))

    def inbound_done(self, message_id: str, *, outcome: str, detail: str | None = None,
                     bot_id: str | None = None) -> None:
        with session_scope(self.engine) as session:
            row = session.get(InboundMail, _hash(message_id.strip().lower()))
            if row is None:
                return
            row.outcome = outcome[:32]
            row.detail = detail[:500] if detail else None
            row.bot_id = bot_id
            session.add(row)

    def inbound_outcome(self, message_id: str) -> tuple[str, str | None] | None:
        with Session(self.engine) as session:
            row = session.get(InboundMail, _hash(message_id.strip().lower()))
            return None if row is None else (row.outcome, row.detail)

    # -- refusal notices --------------------------------------------------------------------

    def notice_once(self, address: str, *, kind: str, day: str) -> bool:
        """Claim today's one refusal notice of `kind` to `address`; False if already sent."""
        try:
            with session_scope(self.engine) as session:
                session.add(MailNotice(address=address.lower()[:320], kind=kind[:32], day=day))
        except IntegrityError:
            return False
        return True

    # -- one-click links --------------------------------------------------------------------

    def spend_token(self, token_id: str, *, recipient: str, action: str) -> bool:
        """Spend a link token; False if it was spent before."""
        try:
            with session_scope(self.engine) as session:
                session.add(LinkUse(token_id=token_id[:64], recipient=recipient[:320],
                                    action=action[:16]))
        except IntegrityError:
            return False
        return True

    def token_spent(self, token_id: str) -> datetime | None:
        with Session(self.engine) as session:
            row = session.get(LinkUse, token_id[:64])
            return None if row is None else row.used_at

    def unspend_token(self, token_id: str) -> None:
        """Give a token back when the decision it was spent on did not happen (a refusal), so
        the manager can try again once the reason is gone."""
        with session_scope(self.engine) as session:
            session.execute(delete(LinkUse).where(col(LinkUse.token_id) == token_id[:64]))

    # -- outgoing mail ----------------------------------------------------------------------

    def queue_mail(self, *, recipient: str, purpose: str, subject: str, message_id: str,
                   raw: bytes, bot_id: str | None = None) -> str:
        with session_scope(self.engine) as session:
            row = OutgoingMail(bot_id=bot_id, recipient=recipient[:320], purpose=purpose,
                               subject=subject[:500], message_id=message_id[:255], raw=raw)
            session.add(row)
            session.flush()
            return row.id

    def claim_due(self, *, at: datetime | None = None, limit: int = 100,
                  only: Sequence[str] | None = None) -> list[OutgoingView]:
        """Messages not sent yet whose next attempt is due, oldest first, each claimed for
        SEND_LEASE: the app and the worker both deliver, and neither sends what the other
        is sending. A sender that dies leaves it due again when the lease ends."""
        now = as_utc(at or utcnow())
        with Session(self.engine) as session:
            q = select(OutgoingMail.id).where(col(OutgoingMail.sent_at).is_(None),
                                              OutgoingMail.next_attempt_at <= now)
            if only is not None:
                q = q.where(col(OutgoingMail.id).in_(list(only)))
            ids = list(session.exec(q.order_by(col(OutgoingMail.created_at)).limit(limit)))
        claimed: list[OutgoingView] = []
        for mail_id in ids:
            with session_scope(self.engine) as session:
                won = session.execute(
                    update(OutgoingMail).where(col(OutgoingMail.id) == mail_id,
                                               col(OutgoingMail.sent_at).is_(None),
                                               OutgoingMail.next_attempt_at <= now)
                    .values(next_attempt_at=now + SEND_LEASE)).rowcount
                if won:
                    row = session.get(OutgoingMail, mail_id)
                    if row is not None:
                        claimed.append(_outgoing(row))
        return claimed

    def mail_sent(self, mail_id: str, *, at: datetime | None = None) -> None:
        with session_scope(self.engine) as session:
            row = session.get(OutgoingMail, mail_id)
            if row is not None and row.sent_at is None:
                row.sent_at = as_utc(at or utcnow())
                row.attempts += 1
                session.add(row)

    def mail_failed(self, mail_id: str, *, error: str, at: datetime | None = None) -> datetime:
        """Record a failed attempt; returns when the next one is due."""
        now = as_utc(at or utcnow())
        with session_scope(self.engine) as session:
            row = session.get(OutgoingMail, mail_id)
            if row is None:
                return now
            row.attempts += 1
            row.last_error = error[:500]
            row.next_attempt_at = now + min(FIRST_BACKOFF * 2 ** (row.attempts - 1),
                                            MAX_BACKOFF)
            session.add(row)
            return row.next_attempt_at

    def mail(self, *, bot: BotRef | None = None, purpose: str | None = None,
             limit: int = 100) -> list[OutgoingView]:
        """Outgoing mail, newest first (what was sent, what still waits and why)."""
        with Session(self.engine) as session:
            q = select(OutgoingMail)
            if bot is not None:
                q = q.where(OutgoingMail.bot_id == bot.id)
            if purpose is not None:
                q = q.where(OutgoingMail.purpose == purpose)
            rows = session.exec(q.order_by(col(OutgoingMail.created_at).desc())
                                .limit(limit)).all()
            return [_outgoing(r) for r in rows]


def _numbers(row: MailDigest) -> DigestNumbers:
    return DigestNumbers(id=row.id, bot_id=row.bot_id, period=row.period,
                         created_at=row.created_at,
                         items=[Numbered(number=int(i["n"]),
                                         suggestion_id=i.get("suggestion_id"),
                                         announcement_id=i.get("announcement_id"))
                                for i in row.items])


def _outgoing(r: OutgoingMail) -> OutgoingView:
    return OutgoingView(id=r.id, bot_id=r.bot_id, recipient=r.recipient, purpose=r.purpose,
                        subject=r.subject, message_id=r.message_id, raw=r.raw,
                        attempts=r.attempts, created_at=r.created_at, sent_at=r.sent_at,
                        last_error=r.last_error)
