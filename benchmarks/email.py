"""The email review channel from outside: reply → decision, digest rendering, 1,000 replies.

Run it from the repository root (`tests` must be importable: the SMTP server the product
sends to is `tests.mail_servers.SmtpRecorder`, the recording aiosmtpd server of the test
suite). Everything stays on 127.0.0.1. The recorder runs in a child process and the real
server (`autotrain serve --smtp-port N`, embedded default: SQLite, embedded Chroma, offline
generation, a fresh temporary data dir) in another, so neither shares an event loop or a GIL
with the load generator. The server sends its digests and confirmations to the recorder
(SMTP_HOST/SMTP_PORT, SMTP_TLS=none) and takes replies on its own SMTP listener, which
accepts mail for EMAIL_REPLY_TO's domain only. Bots are seeded over the public HTTP API as
`benchmarks.slack` seeds them (BANKING77 transcripts, then a cycle), each with one email
recipient. Three figures, each next to its target:

1. reply → decision: `--serial` replies "approve N", one at a time, each sent by SMTP to the
   listener (a new connection each, as an MTA delivers), timed from the start of the SMTP
   session until both the confirmation (In-Reply-To: the reply) has reached the recorder and
   `POST /answer` with the item's question serves the approved answer — target p99 ≤ 2 s,
   none missing after 10 s;
2. a 50-item digest renders (`render_digest`, and the MIME message built and serialised) in
   this process — target p99 ≤ 200 ms; the chart is timed apart;
3. `--replies` inbound messages through the listener over `--concurrency` connections: valid
   replies (plain and HTML-only, several commands, many on items decided already), the same
   Message-ID sent 2–3 times (at once and later), commands only in the quoted digest, forged
   senders, unknown keys, auto-replies and bounces (sisimai's real ones, re-addressed),
   garbage, oversized mail and relay attempts. Every message must be answered (250, or 550 /
   552 for the relay attempts and the oversized), each outcome the server logs must be the
   one expected, each reply confirmed exactly once and nothing else answered, and the audit
   must replay as valid transitions that match the confirmations' ✓ lines and the final
   statuses.

    python -m benchmarks.email [--serial 50] [--replies 1000] [--concurrency 12] [--keep-data]

Exit status 0 only if every figure meets its target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import secrets
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import aiosmtplib
import httpx

from benchmarks.cycle import BANKING77_DIR
from benchmarks.mailbench_fixtures import (
    FORGER,
    MANAGER,
    OURS,
    REPLY_TO,
    DigestMail,
    auto_reply,
    garbage,
    html_reply,
    load_fixtures,
    norm,
    oversized,
    readdressed,
    reply,
    unknown_key_address,
)
from benchmarks.run import ChildProcess, Server, _free_port, running_server
from benchmarks.slack import (
    MAX_BOTS,
    Card,
    Figures,
    Seeded,
    _ok,
    _pct,
    _server_errors,
    _terminate,
    seed_bot,
    statuses,
)

TARGET_REPLY_P99_S = 2.0
GIVE_UP_S = 10.0  # a decision not confirmed and served by then counts as missing
TARGET_RENDER_P99_MS = 200.0
RENDER_ITEMS = 50
RENDER_RUNS = 50
MAX_BYTES = 200_000  # EMAIL_MAX_BYTES for the run, so an oversized reply is cheap to send
QUIET_S = 2.0  # the server's mail is finished when the recorder got nothing for this long
SETTLE_TIMEOUT_S = 120.0
POLL_S = 0.005
SMTP_TIMEOUT_S = 60.0
OPEN = frozenset({"pending", "deferred"})
PUBLISHED = frozenset({"approved", "auto_published"})
# Audit action -> (statuses it may leave, the status it makes).
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "suggestion.approved": (OPEN, "approved"),
    "suggestion.edited_and_approved": (OPEN, "approved"),
    "suggestion.rejected": (OPEN, "rejected"),
    "suggestion.deferred": (OPEN, "deferred"),
    "suggestion.auto_published": (OPEN, "auto_published"),
    "suggestion.undone": (PUBLISHED, "undone"),
}
# A ✓ line's command -> the audit actions it may have written.
CHECKED_AS = {"approve": "approve", "edit": "approve", "reject": "reject", "defer": "defer",
              "undo": "undo"}
AUDITED_AS = {"suggestion.approved": "approve", "suggestion.edited_and_approved": "approve",
              "suggestion.rejected": "reject", "suggestion.deferred": "defer",
              "suggestion.undone": "undo"}


# --------------------------------------------------------------------------- the recorder


def _recorder_child(conn: Connection) -> None:
    """The child process: a SmtpRecorder, answering "what arrived since message i"."""
    # The parent decides when this process ends (Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from tests.mail_servers import SmtpRecorder

    with SmtpRecorder() as recorder:
        conn.send(recorder.port)
        while True:
            try:
                since = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if since is None:
                return
            conn.send([(m.rcpt_tos, m.raw) for m in recorder.messages[since[0]:]])


@dataclass(frozen=True)
class Got:
    """One message the server sent, as the recorder got it."""

    rcpt: tuple[str, ...]
    raw: bytes
    kind: str  # X-Autotrain-Mail: digest | confirmation | notice
    message_id: str
    in_reply_to: str
    seen: float  # perf_counter when this process first saw it

    @property
    def message(self) -> EmailMessage:
        return cast(EmailMessage, message_from_bytes(self.raw, policy=policy.default))

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return str(part.get_content()) if part is not None else ""


class Recorder(ChildProcess):
    """The parent's handle on the recorder process: everything received, in order."""

    def __init__(self) -> None:
        super().__init__(_recorder_child, name="smtp-recorder")
        self.port: int = self.ready
        self.got: list[Got] = []
        self.by_parent: dict[str, list[Got]] = defaultdict(list)

    def sync(self) -> list[Got]:
        """Fetch what arrived since the last call; returns the new messages."""
        arrived = self.ask(len(self.got))
        now = time.perf_counter()
        new: list[Got] = []
        for rcpt, raw in arrived:
            head = BytesHeaderParser(policy=policy.default).parsebytes(raw)
            got = Got(rcpt=tuple(rcpt), raw=raw, kind=str(head["X-Autotrain-Mail"] or ""),
                      message_id=str(head["Message-ID"] or ""),
                      in_reply_to=str(head["In-Reply-To"] or ""), seen=now)
            new.append(got)
            if got.in_reply_to:
                self.by_parent[got.in_reply_to].append(got)
        self.got += new
        return new

    async def quiet(self, *, seconds: float = QUIET_S) -> None:
        """Wait until nothing new arrived for `seconds` (the server's mail is sent)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < seconds and time.monotonic() < deadline:
            if self.sync():
                quiet_since = time.monotonic()
            await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class MailServer:
    http: Server
    smtp_port: int


@contextlib.contextmanager
def email_server(recorder: Recorder, *, keep_data: bool) -> Iterator[MailServer]:
    """A fresh `autotrain serve --smtp-port N` on the embedded default, its mail going to the
    recorder; logging at INFO, where each inbound message's outcome is logged."""
    smtp_port = _free_port()
    # Nothing of this shell's mail set-up (IMAP polling, DMARC, a relay) may reach the server.
    with running_server(keep_data, label="email-bench", log_level="INFO",
                        args=["--smtp-port", str(smtp_port)],
                        drop_prefixes=("SMTP_", "IMAP_", "EMAIL_", "AUTOTRAIN_", "SLACK_"),
                        env={"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(recorder.port),
                             "SMTP_TLS": "none", "EMAIL_FROM": f"autotrain <{OURS}>",
                             "EMAIL_REPLY_TO": REPLY_TO,
                             "EMAIL_MAX_BYTES": str(MAX_BYTES)}) as server:
        yield MailServer(server, smtp_port)


async def send_digest(api: httpx.AsyncClient, recorder: Recorder, slug: str) -> DigestMail:
    """POST …/digest, then the digest as the recipient got it from the recorder."""
    from bot.mail.message import make_message_id

    sent = _ok(await api.post(f"/api/v1/bots/{slug}/digest"), "digest")["email"]
    if not sent.get("sent") or sent.get("delivered") != 1:
        raise RuntimeError(f"digest for {slug} not sent: {sent}")
    wanted = make_message_id(kind="digest", bot_slug=slug, ref=f"{sent['digest_id']}.0",
                             domain=OURS.rsplit("@", 1)[1])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        recorder.sync()
        got = [g for g in recorder.got if g.message_id == wanted]
        if got:
            return DigestMail.read(got[0].raw)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"digest {wanted} never reached the recorder")


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Answer:
    code: int  # the SMTP reply code; 0 when the connection dropped or timed out
    seconds: float
    error: str = ""


async def _transaction(client: aiosmtplib.SMTP, sender: str, rcpts: list[str], raw: bytes,
                       *, announce_size: bool) -> int:
    if announce_size:
        await client.sendmail(sender, rcpts, raw)
        return 250
    # Without SIZE in MAIL FROM the server can only refuse after DATA.
    try:
        await client.mail(sender)
        for rcpt in rcpts:
            await client.rcpt(rcpt)
        await client.data(raw)
    except aiosmtplib.SMTPResponseException:
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.rset()
        raise
    return 250


async def smtp_send(client: aiosmtplib.SMTP | None, port: int, sender: str, rcpts: list[str],
                    raw: bytes, *, announce_size: bool = True) -> tuple[Answer,
                                                                        aiosmtplib.SMTP | None]:
    """One message over `client` (connected first when None or dropped); the answer and the
    client to use next (None after a dropped connection)."""
    started = time.perf_counter()
    try:
        if client is None or not client.is_connected:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=SMTP_TIMEOUT_S)
            await client.connect()
        code = await _transaction(client, sender, rcpts, raw, announce_size=announce_size)
        return Answer(code, time.perf_counter() - started), client
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return Answer(exc.recipients[0].code, time.perf_counter() - started), client
    except aiosmtplib.SMTPResponseException as exc:
        return Answer(exc.code, time.perf_counter() - started, exc.message[:200]), client
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        if client is not None:
            client.close()
        return Answer(0, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"), None


async def send_once(port: int, sender: str, rcpts: list[str], raw: bytes) -> Answer:
    """One message on its own connection, closed after QUIT, as an MTA delivers one reply."""
    answer, client = await smtp_send(None, port, sender, rcpts, raw)
    if client is not None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()
    return answer


# --------------------------------------------------------------------------- figure 1


async def reply_to_decision(api: httpx.AsyncClient, recorder: Recorder, smtp_port: int,
                            seeded: Seeded, slugs: list[str], *, serial: int,
                            figures: Figures) -> None:
    latencies: list[float] = []
    smtp_s: list[float] = []
    confirmed_s: list[float] = []
    missing = bad_code = unconfirmed = wrong_line = 0
    digests = 0
    for slug in slugs:
        cards = {norm(c.question): c for c in seeded.cards if c.slug == slug}
        tried: set[str] = set()
        while len(latencies) < serial:
            digest = await send_digest(api, recorder, slug)
            digests += 1
            todo = [(n, cards[q]) for n, q in sorted(digest.items.items())
                    if q in cards and cards[q].sid not in tried]
            if not todo:
                break  # this bot's digests show nothing left to approve
            for number, card in todo[:serial - len(latencies)]:
                tried.add(card.sid)
                got = await one_reply(api, recorder, smtp_port, digest, number, card)
                latencies.append(got.seconds)
                smtp_s.append(got.smtp.seconds)
                bad_code += got.smtp.code != 250
                if got.confirmed is None or got.served is None:
                    missing += 1
                    unconfirmed += got.confirmed is None
                else:
                    confirmed_s.append(got.confirmed)
                wrong_line += got.confirmed is not None and not got.line_ok
    if len(latencies) < serial:
        raise RuntimeError(f"only {len(latencies)} approvable items in the digests of "
                           f"{slugs}, {serial} wanted")
    p50, p99 = _pct(latencies, 50), _pct(latencies, 99)
    figures.add(f"reply 'approve N' by SMTP → confirmed in the thread and served by `answer`, "
                f"{len(latencies)} one at a time ({digests} digests): p50 {1000 * p50:.0f} ms, "
                f"p99 {1000 * p99:.0f} ms (target p99 ≤ {TARGET_REPLY_P99_S:.0f} s), {missing} "
                f"missing after {GIVE_UP_S:.0f} s, {bad_code} not answered 250, {wrong_line} "
                "confirmations without '✓ approve N'",
                p99 <= TARGET_REPLY_P99_S and not missing and not bad_code and not wrong_line)
    smtp_ms = [1000 * s for s in smtp_s]
    conf_ms = [1000 * s for s in confirmed_s] or [float("nan")]
    figures.add(f"    SMTP session, from connecting to the 250 after DATA: p50 "
                f"{_pct(smtp_ms, 50):.0f} ms, p99 {_pct(smtp_ms, 99):.0f} ms; confirmation "
                f"seen at the recorder: p50 {_pct(conf_ms, 50):.0f} ms, p99 "
                f"{_pct(conf_ms, 99):.0f} ms; {unconfirmed} never confirmed")


@dataclass(frozen=True)
class Timed:
    seconds: float  # until both happened (or GIVE_UP_S)
    smtp: Answer
    confirmed: float | None
    served: float | None
    line_ok: bool


async def one_reply(api: httpx.AsyncClient, recorder: Recorder, smtp_port: int,
                    digest: DigestMail, number: int, card: Card) -> Timed:
    url = f"/api/v1/bots/{card.slug}/answer"
    # Warm this question's embedding in the server's cache first, so the timed polls
    # measure the decision, not the first embedding of the question.
    before = _ok(await api.post(url, json={"question": card.question}), "answer")
    mid, raw = reply(digest, f"approve {number}\n\nThanks!\nPat")
    started = time.perf_counter()
    smtp = await send_once(smtp_port, MANAGER, [digest.reply_to], raw)
    confirmed: float | None = None
    served: float | None = None
    line_ok = False
    while time.perf_counter() - started < GIVE_UP_S:
        if confirmed is None:
            recorder.sync()
            if got := recorder.by_parent.get(mid):
                confirmed = got[0].seen - started
                line_ok = f"✓ approve {number} " in got[0].text()
        if served is None:
            out = _ok(await api.post(url, json={"question": card.question}), "answer")
            if (out["entry_id"] and out["entry_id"] != before["entry_id"]
                    and out["answer"] == card.answer):
                served = time.perf_counter() - started
        if confirmed is not None and served is not None:
            break
        await asyncio.sleep(POLL_S)
    done = max(confirmed, served) if confirmed is not None and served is not None else None
    return Timed(done if done is not None else time.perf_counter() - started, smtp, confirmed,
                 served, line_ok)


# --------------------------------------------------------------------------- figure 2


def render_figure(intents: list[tuple[str, list[str]]], figures: Figures) -> None:
    """The digest's rendering in this process, with realistic content: nothing to wait for."""
    from bot.charts import resolution_chart
    from bot.mail.message import build_message, make_message_id
    from bot.mail.render import render_digest

    started = time.perf_counter()
    chart = resolution_chart(_weeks(), activated_at=datetime.now(UTC) - timedelta(days=40),
                             title="Shop: resolved by the bot alone, by week")
    chart_ms = 1000 * (time.perf_counter() - started)
    digest = _digest(intents, chart)
    render_ms: list[float] = []
    mime_ms: list[float] = []
    size = 0
    first_ms = 0.0
    for i in range(RENDER_RUNS + 1):
        started = time.perf_counter()
        content = render_digest(digest)
        rendered = time.perf_counter()
        msg = build_message(sender=f"autotrain <{OURS}>", to=MANAGER, content=content,
                            reply_to=REPLY_TO.replace("{key}", "a" * 32), kind="digest",
                            message_id=make_message_id(kind="digest", bot_slug="shop",
                                                       ref=f"{digest.digest_id}.{i}",
                                                       domain="bench.example"))
        size = len(bytes(msg))  # serialised, as it is queued and sent
        done = time.perf_counter()
        if i == 0:
            # The first render compiles the templates: a cost paid once per process.
            first_ms = 1000 * (done - started)
            continue
        render_ms.append(1000 * (rendered - started))
        mime_ms.append(1000 * (done - rendered))
    total = [a + b for a, b in zip(render_ms, mime_ms, strict=True)]
    p99 = _pct(total, 99)
    figures.add(f"{len(digest.items)}-item digest rendered and built as MIME, {RENDER_RUNS} "
                f"times: p50 {_pct(total, 50):.1f} ms, p99 {p99:.1f} ms (target p99 ≤ "
                f"{TARGET_RENDER_P99_MS:.0f} ms)", p99 <= TARGET_RENDER_P99_MS)
    figures.add(f"    render_digest p50 {_pct(render_ms, 50):.1f} / p99 "
                f"{_pct(render_ms, 99):.1f} ms; build_message + bytes p50 "
                f"{_pct(mime_ms, 50):.1f} / p99 {_pct(mime_ms, 99):.1f} ms; first render "
                f"(templates compiled) {first_ms:.0f} ms; the chart, made once per digest "
                f"before rendering: {chart_ms:.0f} ms; message {size / 1024:.0f} KiB, text "
                f"{len(content.text) / 1024:.0f} KiB, HTML {len(content.html) / 1024:.0f} KiB")


def _weeks() -> list[dict[str, Any]]:
    """Twelve weeks of metrics as `Review.metrics` returns them, resolution rising."""
    start = datetime.now(UTC) - timedelta(weeks=12)
    rng = random.Random(7)
    return [{"start": (start + timedelta(weeks=w)).isoformat(),
             "conversations": rng.randrange(300, 700) if w else 12,
             "automatic_resolution_rate": min(0.9, 0.35 + 0.04 * w + rng.random() / 20)}
            for w in range(12)]


def _digest(intents: list[tuple[str, list[str]]], chart: bytes) -> Any:
    from bot.mail.render import Digest, DigestAnnouncement, DigestItem
    from core.policy.notify import NotificationKind
    from core.replay import reference_answer
    from core.review.views import AnnouncementView, Figures, Period, StatsView, SuggestionView

    rng = random.Random(3)
    now = datetime.now(UTC)
    link = "http://127.0.0.1:8000/email/links/"
    items: list[DigestItem] = []
    for n, (label, texts) in enumerate(intents[:RENDER_ITEMS], 1):
        kind = "improve_answer" if n % 7 == 0 else "new_answer"
        asked = rng.randrange(3, 40)
        answer = (f"{reference_answer(label)}\n\nIf anything is unclear, reply to this "
                  "message and one of our team will help you within one business day.")
        view = SuggestionView(
            id=f"sug_{secrets.token_hex(8)}", bot_id="bot_bench", kind=kind,
            priority=("critical", "medium", "medium", "low")[n % 4],
            score=round(rng.uniform(1, 15), 2), confidence=rng.randrange(35, 98),
            question=texts[0], answer=answer, variants=texts[1:9],
            entry_id="ent_1" if kind == "improve_answer" else None,
            entry_question=texts[10] if kind == "improve_answer" else None,
            category=label, category_source="classifier",
            warning="The answer mentions a fee: check it against the price list."
            if n % 11 == 0 else None,
            reason=f"asked {asked} times in the last 14 days; escalated to an agent each time",
            samples=texts[12:16], replay=f"Would have answered {asked - 1} of the {asked} "
                                         "customers who asked, with the agents' answer.",
            autonomy="Not published automatically: autonomy is conservative",
            needs_answer=False, status="pending",
            created_at=now - timedelta(hours=rng.randrange(1, 72)),
            decided=None, defer_until=None, reject_reason=None)
        items.append(DigestItem(number=n, view=view,
                                approve_url=f"{link}{secrets.token_urlsafe(40)}",
                                reject_url=f"{link}{secrets.token_urlsafe(40)}"))
    notes = [(NotificationKind.auto_published, "sug_auto1",
              "Published automatically: “How do I top up by card?” (confidence 96)."),
             ("paused", None, "Auto-training paused by alice@shop.example for the weekend."),
             ("auto_rolled_back", "sug_auto2",
              "Rolled back “Why was my transfer declined?”: escalations rose 40%.")]
    announcements = [DigestAnnouncement(
        number=len(items) + k, view=AnnouncementView(
            id=k, kind=str(kind), text=text, suggestion_id=sid, entry_id="ent_2", payload={},
            created_at=now - timedelta(hours=k), delivered={}),
        undo_url=f"{link}{secrets.token_urlsafe(40)}"
        if kind == NotificationKind.auto_published else None)
        for k, (kind, sid, text) in enumerate(notes, 1)]

    def period(days: int, conversations: int, rate: float) -> Figures:
        return Figures(start=now - timedelta(days=days), end=now - timedelta(days=days - 7),
                       conversations=conversations, resolution_rate=rate,
                       escalations=int(conversations * (1 - rate) * 0.6),
                       escalation_rate=(1 - rate) * 0.6, negative_feedback=23,
                       negative_feedback_rate=0.04, csat=4.2, suggestions_decided=31,
                       auto_published=6)

    stats = StatsView(bot_slug="shop", period=Period.week, current=period(7, 612, 0.71),
                      previous=period(14, 580, 0.64), pending=73, critical_pending=14)
    return Digest(digest_id=f"dg_{secrets.token_hex(6)}", bot_name="Shop", bot_slug="shop",
                  timezone="Europe/Berlin", generated_at=now, stats=stats, items=items,
                  announcements=announcements, more=23, chart_png=chart, reply_enabled=True)


# --------------------------------------------------------------------------- figure 3


@dataclass(frozen=True)
class Planned:
    """One inbound message of the storm and what the server should make of it."""

    kind: str
    sender: str  # MAIL FROM ("" is the null reverse-path of bounces and auto-replies)
    rcpts: list[str]
    raw: bytes
    mid: str | None  # Message-ID with <>, when it has one
    expect: str | None  # the outcome the server logs; None: refused before it reads it
    codes: frozenset[int] = frozenset({250})
    announce_size: bool = True


ROUND = 250  # storm messages per digest
REFUSALS = frozenset({"forged", "unknown_key", "quoted_only"})  # told to the recipient once
VALID = frozenset({"reply", "html"})
# Never answered: nothing in them can be trusted enough to answer, or answering loops.
NOISE = frozenset({"auto", "auto_fixture", "bounce", "garbage", "oversize", "relay"})
# Percent of the messages, each kind; replies fill the rest.
SHARES = {"html": 8, "resend": 8, "quoted_only": 4, "forged": 4, "unknown_key": 4, "auto": 4,
          "auto_fixture": 5, "bounce": 7, "garbage": 4}
NEW_TEXT_ONLY = ["Thanks, I'll go through these tomorrow morning.",
                 "Got it. Will review after the team meeting.",
                 "Sam, can you have a look at these before Friday?"]
REASONS = ["wrong info", "tone", "not a gap", "duplicate", "sensitive", "outdated"]


def _commands(rng: random.Random, digest: DigestMail) -> list[str]:
    """One to three commands over the digest's numbers (a few past its end), mostly on
    items other replies decided already: after the first minutes, nearly all are."""
    # A digest with nothing left to review still gets replies (to numbers it never had).
    numbers = sorted(digest.items) or [1, 2, 3]
    out: list[str] = []
    for _ in range(rng.choices((1, 2, 3), (60, 25, 15))[0]):
        n = rng.choice(numbers) if rng.random() > 0.04 else numbers[-1] + rng.randint(1, 5)
        action = rng.choices(("approve", "reject", "defer", "undo", "edit"),
                             (40, 20, 15, 20, 5))[0]
        if action == "approve":
            out.append(f"approve {n} {rng.choice(numbers)}" if rng.random() < 0.2
                       else f"approve {n}")
        elif action == "reject":
            out.append(f"reject {n} {rng.choice(REASONS)}")
        elif action == "defer":
            out.append(f"defer {n} {rng.choice(('1w', '3d', '2w', '10 days'))}")
        elif action == "edit":
            out.append(f"edit {n}: You can do this in the app under Account > Cards. It "
                       "takes about a minute; contact us if it does not work.")
        else:
            out.append(f"undo {n}")
    return out


def plan_storm(digests: list[DigestMail], total: int, rng: random.Random) -> list[Planned]:
    auto_files, bounce_files = load_fixtures()
    counts = {kind: total * share // 100 for kind, share in SHARES.items()}
    if not auto_files:
        counts["auto_fixture"] = 0
    if not bounce_files:
        counts["bounce"] = 0
    counts["oversize"] = max(2, total // 200)
    counts["relay"] = max(2, total // 250)
    counts["reply"] = total - sum(counts.values())
    if counts["reply"] < 1:
        raise ValueError(f"--replies {total} is too few for the mix")

    def pick() -> DigestMail:
        # Most replies answer the latest digest; some the one before.
        return digests[-1] if rng.random() < 0.7 or len(digests) == 1 else rng.choice(digests)

    unique: list[Planned] = []
    for kind, count in counts.items():
        for _ in range(count if kind != "resend" else 0):
            d = pick()
            to = [d.reply_to]
            if kind == "reply":
                mid, raw = reply(d, "\n".join(_commands(rng, d)) + "\n\nThanks!\nPat")
                unique.append(Planned(kind, MANAGER, to, raw, mid, "applied"))
            elif kind == "html":
                mid, raw = html_reply(d, _commands(rng, d))
                unique.append(Planned(kind, MANAGER, to, raw, mid, "applied"))
            elif kind == "quoted_only":
                mid, raw = reply(d, rng.choice(NEW_TEXT_ONLY),
                                 quoted="approve 1\nreject 2 wrong info\n\n" + d.text)
                unique.append(Planned(kind, MANAGER, to, raw, mid, "no_commands"))
            elif kind == "forged":
                mid, raw = reply(d, "\n".join(_commands(rng, d)), sender=FORGER)
                unique.append(Planned(kind, FORGER, to, raw, mid, "wrong_sender"))
            elif kind == "unknown_key":
                other = unknown_key_address()
                mid, raw = reply(d, "\n".join(_commands(rng, d)), to=other)
                unique.append(Planned(kind, MANAGER, [other], raw, mid, "unknown_key"))
            elif kind == "auto":
                mid, raw = auto_reply(d, rng)
                unique.append(Planned(kind, "", to, raw, mid, "auto_reply"))
            elif kind == "auto_fixture":
                name, sample = rng.choice(auto_files)
                # The manager's own out-of-office, as each real responder would send it.
                mid, raw = readdressed(sample, to=d.reply_to, sender=MANAGER)
                unique.append(Planned(f"auto_fixture:{name}", "", to, raw, mid, "auto_reply"))
            elif kind == "bounce":
                name, sample = rng.choice(bounce_files)
                mid, raw = readdressed(sample, to=d.reply_to)
                unique.append(Planned(f"bounce:{name}", "", to, raw, mid, "bounce"))
            elif kind == "garbage":
                unique.append(Planned(kind, "nobody@garbage.example", to, garbage(rng), None,
                                      "malformed"))
            elif kind == "oversize":
                mid, raw = oversized(d, MAX_BYTES + rng.randrange(1_000, 50_000))
                # Half announce their SIZE (refused at MAIL FROM), half only send (after DATA).
                unique.append(Planned(kind, MANAGER, to, raw, mid, None, frozenset({552}),
                                      announce_size=len(unique) % 2 == 0))
            elif kind == "relay":
                elsewhere = "someone@elsewhere.example"
                mid, raw = reply(d, "approve 1", to=elsewhere)
                unique.append(Planned(kind, MANAGER, [elsewhere], raw, mid, None,
                                      frozenset({550})))
    rng.shuffle(unique)
    # The same message again: half right behind the first (another connection sends it at
    # the same moment), half later; a third of them twice.
    order = list(unique)
    valid = [p for p in unique if p.kind in VALID]
    later: list[tuple[Planned, Planned]] = []
    left = counts["resend"]
    for original in rng.sample(valid, min(len(valid), left)):
        if left <= 0:
            break
        times = 2 if left >= 2 and rng.random() < 0.33 else 1
        left -= times
        copy = replace(original, kind="resend", expect="duplicate")
        if rng.random() < 0.5:
            at = order.index(original) + 1
            order[at:at] = [copy] * times
        else:
            later += [(original, copy)] * times
    for original, copy in later:
        order.insert(rng.randint(order.index(original) + 1, len(order)), copy)
    return order


async def storm(plan: list[Planned], smtp_port: int, concurrency: int) -> list[Answer]:
    """Every planned message over `concurrency` connections kept open, each taking the next
    message as soon as its last one is answered (a sending MTA's queue runners)."""
    answers: list[Answer | None] = [None] * len(plan)
    upcoming = iter(range(len(plan)))

    async def runner() -> None:
        client: aiosmtplib.SMTP | None = None
        for i in upcoming:
            p = plan[i]
            answers[i], client = await smtp_send(client, smtp_port, p.sender, p.rcpts, p.raw,
                                                 announce_size=p.announce_size)
        if client is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return [a if a is not None else Answer(0, 0.0, "never sent") for a in answers]


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process used so far; 0 where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _log_outcomes(server: Server, offset: int) -> Counter[str]:
    text = server.log_path.read_bytes()[offset:].decode(errors="replace")
    return Counter(re.findall(r"inbound smtp mail: (\w+)", text))


def replay_audit(rows: list[dict[str, Any]], final: dict[str, dict[str, Any]]
                 ) -> tuple[int, list[str]]:
    """Replay each suggestion's decisions, oldest first, from `pending`: every row must leave
    a status it may leave (no second approval without an undo between, no undo of what is not
    published) and the last must be the status the API shows now. (suggestions, problems)."""
    by_sid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in reversed(rows):  # the audit is newest first
        if row["action"] in TRANSITIONS and row["suggestion_id"]:
            by_sid[row["suggestion_id"]].append(row)
    problems: list[str] = []
    for sid, sug in final.items():
        state = "pending"
        for row in by_sid.get(sid, []):
            leaves, makes = TRANSITIONS[row["action"]]
            if state not in leaves:
                problems.append(f"{sid}: {row['action']} by {row['actor']} at {row['at']} "
                                f"while {state}")
            state = makes
        if state != sug["status"]:
            problems.append(f"{sid}: the audit ends {state}, the API says {sug['status']}")
    return len(final), problems


@dataclass
class Storm:
    """What was sent, how each message was answered, and what the server sent meanwhile."""

    plan: list[Planned] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    sent: list[Got] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # from the server's log
    rounds: int = 0
    wall: float = 0.0
    cpu: float = 0.0  # the server's CPU seconds while the messages were sent
    days: set[date] = field(default_factory=set)  # UTC days the storm touched

    def ids(self, kinds: frozenset[str]) -> set[str | None]:
        return {p.mid for p in self.plan if p.kind.split(":")[0] in kinds}


async def send_storm(api: httpx.AsyncClient, ms: MailServer, recorder: Recorder, slug: str,
                     *, replies: int, concurrency: int) -> Storm:
    rng = random.Random(11)
    run = Storm(rounds=max(1, replies // ROUND))
    digests = [await send_digest(api, recorder, slug)]
    await recorder.quiet(seconds=1.0)
    before = len(recorder.got)
    offset = ms.http.log_path.stat().st_size
    run.days.add(datetime.now(UTC).date())
    print(f"[email] {replies} inbound messages over {concurrency} SMTP connections, in "
          f"{run.rounds} rounds each after a new digest ...", flush=True)
    for r in range(run.rounds):
        # A new digest each round, as each day brings one: it numbers what still waits, so
        # later rounds find undecided items to race on too (until the queue is empty).
        digests.append(await send_digest(api, recorder, slug))
        part = plan_storm(digests[-2:], replies // run.rounds + (r < replies % run.rounds),
                          rng)
        started, used = time.perf_counter(), _cpu_seconds(ms.http.process.pid)
        run.answers += await storm(part, ms.smtp_port, concurrency)
        run.wall += time.perf_counter() - started
        run.cpu += _cpu_seconds(ms.http.process.pid) - used
        run.plan += part
    await recorder.quiet()
    run.days.add(datetime.now(UTC).date())
    run.sent = recorder.got[before:]
    run.outcomes = _log_outcomes(ms.http, offset)
    return run


async def storm_figure(api: httpx.AsyncClient, ms: MailServer, recorder: Recorder, slug: str,
                       *, replies: int, concurrency: int, figures: Figures) -> None:
    run = await send_storm(api, ms, recorder, slug, replies=replies, concurrency=concurrency)
    healthy = (ms.http.process.poll() is None
               and (await api.get("/healthz")).status_code == 200)
    answered(run, healthy, _server_errors(ms.http), concurrency, figures)
    # What the server made of each: its log against what each kind should come to.
    expected = Counter(p.expect for p in run.plan if p.expect)
    figures.add("    outcomes logged (expected): " + ", ".join(
        f"{k} {run.outcomes[k]} ({expected[k]})"
        for k in sorted(set(run.outcomes) | set(expected))), run.outcomes == expected)
    mail_sent(run, recorder, figures)
    await decisions(api, run, slug, figures)


def answered(run: Storm, healthy: bool, errors: list[str], concurrency: int,
             figures: Figures) -> None:
    """Every message answered with the code its kind deserves, never a dropped connection."""
    codes: Counter[tuple[str, int]] = Counter()
    wrong: list[str] = []
    for p, a in zip(run.plan, run.answers, strict=True):
        codes[(p.kind.split(":")[0], a.code)] += 1
        if a.code not in p.codes:
            wrong.append(f"{p.kind} got {a.code or 'no answer'} {a.error[:120]}")
    dropped = sum(a.code == 0 for a in run.answers)
    n = len(run.plan)
    smtp_ms = [1000 * a.seconds for a in run.answers]
    figures.add(f"{n} inbound messages in {run.rounds} rounds over {concurrency} SMTP "
                f"connections in {run.wall:.1f} s ({n / run.wall:.0f} messages/s, server CPU "
                f"{1000 * run.cpu / n:.0f} ms a message; SMTP answer p50 "
                f"{_pct(smtp_ms, 50):.0f} ms, p99 {_pct(smtp_ms, 99):.0f} ms): server "
                f"{'healthy' if healthy else 'NOT healthy'}, {dropped} dropped connections, "
                f"{len(wrong)} unexpected SMTP answers, {len(errors)} error lines in its log",
                healthy and not wrong and not dropped and not errors)
    for line in wrong[:3]:
        figures.add(f"    unexpected answer: {line}")
    figures.add("    SMTP answers: " + ", ".join(
        f"{kind} {code or 'none'}×{k}" for (kind, code), k in sorted(codes.items())))


def mail_sent(run: Storm, recorder: Recorder, figures: Figures) -> None:
    """One confirmation per reply, none to anything else, one refusal notice a day."""
    valid, refusals = run.ids(VALID), run.ids(REFUSALS)
    confirmations = Counter(g.in_reply_to for g in run.sent if g.kind == "confirmation")
    unconfirmed = sum(confirmations[m] == 0 for m in valid)
    doubled = sum(confirmations[m] > 1 for m in valid)
    notices = [g for g in run.sent if g.kind == "notice"]
    stray = [g for g in run.sent if not (
        g.kind == "digest"
        or (g.kind == "confirmation" and g.in_reply_to in valid)
        or (g.kind == "notice" and g.in_reply_to in refusals and g.rcpt == (MANAGER,)))]
    noise = run.ids(NOISE) - {None}
    answered_noise = sum(bool(recorder.by_parent.get(str(m))) for m in noise)
    want = len(run.days) if refusals else 0
    figures.add(f"    mail sent: {sum(confirmations[m] for m in valid)} confirmations for "
                f"{len(valid)} distinct replies ({unconfirmed} unconfirmed, {doubled} confirmed "
                f"twice), {len(notices)} refusal notice(s) (want {want}: once a day), "
                f"{answered_noise} answers to auto-replies/bounces/garbage, {len(stray)} other "
                "messages",
                not unconfirmed and not doubled and not stray and not answered_noise
                and len(notices) == want)
    for g in stray[:3]:
        figures.add(f"    other message: {g.kind or 'no kind'} to {g.rcpt} in reply to "
                    f"{g.in_reply_to or 'nothing'}")


async def decisions(api: httpx.AsyncClient, run: Storm, slug: str, figures: Figures) -> None:
    """The ✓ lines of the confirmations against the audit, and the audit replayed."""
    valid = run.ids(VALID)
    ticked: Counter[str] = Counter()
    for g in run.sent:
        if g.kind == "confirmation" and g.in_reply_to in valid:
            for line in g.text().splitlines():
                if line.startswith("✓ "):
                    word = line.split()[1]
                    ticked[CHECKED_AS.get(word, word)] += 1
    audit = _ok(await api.get(f"/api/v1/bots/{slug}/audit", params={"limit": 10_000}),
                "audit")["items"]
    rows = [r for r in audit if r["action"] in TRANSITIONS]
    audited = Counter(AUDITED_AS[r["action"]] for r in rows
                      if r["actor"] == MANAGER and r["action"] in AUDITED_AS)
    others = [r for r in rows if r["actor"] != MANAGER]
    final = await statuses(api, {slug})
    checked, problems = replay_audit(audit, final)
    figures.add(f"    decisions: {sum(ticked.values())} ✓ lines {dict(sorted(ticked.items()))}"
                f", audit by {MANAGER} {dict(sorted(audited.items()))}, {len(others)} by "
                f"anyone else; {checked} suggestions replayed from the audit, "
                f"{len(problems)} invalid transitions or final statuses (a decision applied "
                "twice shows here)", not problems and ticked == audited and not others)
    for line in problems[:5]:
        figures.add(f"    audit: {line}")
    final_counts = Counter(s["status"] for s in final.values())
    figures.add(f"    final statuses: {dict(sorted(final_counts.items()))}")


# --------------------------------------------------------------------------- main


async def email_bot(api: httpx.AsyncClient, intents: list[tuple[str, list[str]]],
                    seeded: Seeded) -> str:
    """A bot seeded as benchmarks.slack seeds one, then reviewed by email by one manager
    instead of on Slack; its slug."""
    if len(seeded.bots) == MAX_BOTS:
        raise RuntimeError(f"{len(seeded.cards)} approvable suggestions from {MAX_BOTS} bots: "
                           "not enough")
    await seed_bot(api, len(seeded.bots), intents, seeded)
    slug = list(seeded.bots)[-1]
    _ok(await api.patch(f"/api/v1/bots/{slug}/settings", json={
        "email_recipients": [MANAGER], "slack_channel": None, "slack_approvers": []}),
        "email settings")
    return slug


async def run(ms: MailServer, recorder: Recorder, *, serial: int, replies: int,
              concurrency: int, figures: Figures) -> None:
    from core.replay import load_labelled

    intents = sorted(load_labelled(BANKING77_DIR / "train.csv").items())
    async with httpx.AsyncClient(base_url=ms.http.base_url, timeout=600.0, headers={
            "Authorization": f"Bearer {ms.http.api_key}"}) as api:
        seeded = Seeded()
        started = time.perf_counter()
        # Figure 1's bots until their approvable suggestions cover --serial, then the storm's.
        while len(seeded.cards) < serial:
            await email_bot(api, intents, seeded)
        slugs = list(seeded.bots)
        storm_slug = await email_bot(api, intents, seeded)
        print(f"[email] seeded {len(seeded.bots)} bots over HTTP in "
              f"{time.perf_counter() - started:.0f} s: {seeded.conversations} transcripts, "
              f"cycles {seeded.cycle_s:.1f} s, pending {dict(seeded.kinds)}, "
              f"{len(seeded.cards)} approvable", flush=True)
        print(f"[email] reply → decision: {serial} one at a time ...", flush=True)
        await reply_to_decision(api, recorder, ms.smtp_port, seeded, slugs, serial=serial,
                                figures=figures)
        await storm_figure(api, ms, recorder, storm_slug, replies=replies,
                           concurrency=concurrency, figures=figures)


def main(*, serial: int, replies: int, concurrency: int, keep_data: bool) -> int:
    from core.replay import load_labelled

    signal.signal(signal.SIGTERM, _terminate)
    load_start = os.getloadavg()
    figures = Figures()
    # In this process and before the server starts, so nothing else competes for the CPUs.
    print(f"[email] rendering a {RENDER_ITEMS}-item digest {RENDER_RUNS} times ...", flush=True)
    render_figure(sorted(load_labelled(BANKING77_DIR / "train.csv").items()), figures)
    recorder = Recorder()
    try:
        with email_server(recorder, keep_data=keep_data) as ms:
            try:
                asyncio.run(run(ms, recorder, serial=serial, replies=replies,
                                concurrency=concurrency, figures=figures))
            except Exception:
                print(f"server log (tail):\n{ms.http.log_tail()}", file=sys.stderr)
                raise
            errors = _server_errors(ms.http)
    finally:
        recorder.stop()
    load_end = os.getloadavg()
    print()
    for line in figures.lines:
        print(line)
    print(f"server log: {len(errors)} error lines" + (f", first: {errors[0][:200]}"
                                                      if errors else ""))
    print(f"machine: {os.cpu_count()} CPUs, load average {load_start[0]:.2f} / "
          f"{load_start[1]:.2f} / {load_start[2]:.2f} at start, {load_end[0]:.2f} / "
          f"{load_end[1]:.2f} / {load_end[2]:.2f} at end; server: `autotrain serve "
          "--smtp-port`, embedded default (SQLite + embedded Chroma, offline generator), "
          "the SMTP recorder in its own process")
    return 0 if figures.passed and all(figures.passed) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.email",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--serial", type=int, default=50,
                        help="replies timed one at a time until decided and served (50)")
    parser.add_argument("--replies", type=int, default=1000,
                        help="inbound messages in the storm (1000)")
    parser.add_argument("--concurrency", type=int, default=12,
                        help="SMTP connections sending the storm at once (12)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the server's data dir (and server.log)")
    args = parser.parse_args()
    if min(args.serial, args.concurrency) < 1 or args.replies < 50:
        parser.error("--serial and --concurrency must be at least 1, --replies at least 50")
    try:
        raise SystemExit(main(serial=args.serial, replies=args.replies,
                              concurrency=args.concurrency, keep_data=args.keep_data))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
