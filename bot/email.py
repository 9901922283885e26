"""Email digests: rendering (jinja2, autoescaped) is separate from sending (file or SMTP)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from core.review import AnnouncementView, SuggestionView

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"


@dataclass(frozen=True)
class EmailContent:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class DigestItem:
    id: str
    priority: str
    kind: str
    confidence: int
    question: str
    answer: str
    variants: list[str]
    reason: str
    warning: str | None


@dataclass(frozen=True)
class DigestView:
    bot_name: str
    bot_slug: str
    generated_at: datetime
    items: list[DigestItem]
    review_url: str
    # What happened without a person since the last digest (auto-published changes,
    # rollbacks, pauses, deferred suggestions back): core.policy.notify announcements.
    announcements: list[str] = field(default_factory=list)


class Mailer(Protocol):
    def send(self, *, to: list[str], content: EmailContent) -> str: ...


_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    # HTML is escaped; the plain-text part must not be (it would show &#39; for quotes).
    autoescape=lambda name: name is None or not name.endswith(".txt.j2"),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
KIND_LABELS = {"new_answer": "New answer", "improve_answer": "Improve an answer",
               "add_variants": "Add phrasings", "rollback": "Consider rolling back"}


def render_digest(view: DigestView) -> EmailContent:
    """The digest email. Generated text is untrusted: the templates autoescape it."""
    counts: dict[str, int] = {}
    for item in view.items:
        counts[item.priority] = counts.get(item.priority, 0) + 1
    summary = ", ".join(f"{n} {p}" for p, n in counts.items()) or "nothing new"
    ctx: dict[str, Any] = {"view": view, "kinds": KIND_LABELS, "summary": summary}
    subject = f"[autotrain] {view.bot_name}: {len(view.items)} suggestion" \
              f"{'s' if len(view.items) != 1 else ''} to review ({summary})"
    if view.announcements:
        n = len(view.announcements)
        subject += f", {n} update{'s' if n != 1 else ''}"
    return EmailContent(subject=subject,
                        html=_env.get_template("digest.html.j2").render(**ctx),
                        text=_env.get_template("digest.txt.j2").render(**ctx))


def build_message(*, sender: str, to: list[str], content: EmailContent,
                  when: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = content.subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1] or "autotrain.local")
    msg.set_content(content.text)
    msg.add_alternative(content.html, subtype="html")
    return msg


class FileMailer:
    """Email off: each message is written as an .eml file under the outbox directory."""

    def __init__(self, directory: Path, *, sender: str) -> None:
        self.directory = directory
        self.sender = sender

    def send(self, *, to: list[str], content: EmailContent, when: datetime | None = None) -> str:
        from core.models import utcnow

        when = when or utcnow()
        self.directory.mkdir(parents=True, exist_ok=True)
        msg = build_message(sender=self.sender, to=to, content=content, when=when)
        slug = re.sub(r"[^a-z0-9]+", "-", content.subject.lower()).strip("-")[:60]
        path = self.directory / f"{when.strftime('%Y%m%dT%H%M%S')}-{slug}.eml"
        path.write_bytes(bytes(msg))
        return str(path)


def digest_view(*, bot_name: str, bot_slug: str, suggestions: list[SuggestionView],
                generated_at: datetime, base_url: str, limit: int = 10,
                announcements: list[AnnouncementView] | None = None) -> DigestView:
    """A digest of the most urgent pending suggestions, in the review door's order."""
    items = [
        DigestItem(id=s.id, priority=s.priority, kind=s.kind, confidence=s.confidence,
                   question=s.question, answer=s.answer, variants=list(s.variants),
                   reason=s.reason, warning=s.warning)
        for s in suggestions[:limit]
    ]
    return DigestView(bot_name=bot_name, bot_slug=bot_slug, generated_at=generated_at,
                      items=items, announcements=[n.text for n in announcements or []],
                      review_url=f"{base_url}/api/v1/bots/{bot_slug}/suggestions?status=pending")
