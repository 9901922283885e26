"""Loads the Voltcart demo into a running service: bot, KB, two weeks of chats, one cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import select

from core.bots import create_bot
from core.conversations import ConversationIn, store_conversations
from core.db import session_scope
from core.demo import load_demo_conversations, load_demo_kb
from core.models import Bot
from core.policy.commands import Actor, Channel, CreateEntry
from core.review import SuggestionView
from core.services import Services

DEMO_SLUG = "voltcart"
DEMO_ACTOR = Actor(name="demo loader", channel=Channel.cli)


@dataclass
class DemoSummary:
    bot_slug: str
    entries: int
    conversations: int
    already_loaded: bool
    cycle: dict[str, Any]
    suggestions: list[SuggestionView] = field(default_factory=list)
    digest_path: str | None = None

    def report(self, *, base_url: str) -> str:
        lines = [
            f"Demo bot '{self.bot_slug}': {self.entries} KB entries, "
            f"{self.conversations} conversations"
            + (" (already loaded; kept as is)" if self.already_loaded else " loaded"),
            f"Cycle: {self.cycle}",
            "",
            f"What it found ({len(self.suggestions)} pending suggestions, most urgent first):",
        ]
        for s in self.suggestions[:15]:
            lines.append(
                f"  [{s.priority:8}] {s.kind:14} conf {s.confidence:3}  "
                f"{s.question[:60]!r}  — {s.reason}"
            )
        lines += [
            "",
            "Where to look:",
            f"  API docs        {base_url}/docs",
            f"  Suggestions     GET {base_url}/api/v1/bots/{self.bot_slug}/suggestions",
            f"  Ask the bot     POST {base_url}/api/v1/bots/{self.bot_slug}/answer",
            f"  Metrics         GET {base_url}/api/v1/bots/{self.bot_slug}/metrics?bucket=day",
        ]
        if self.digest_path:
            lines.append(f"  Email digest    {self.digest_path}  (email is off: written as .eml)")
        return "\n".join(lines)


def _resolve_placeholders(conv: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    for m in conv["messages"]:
        ref = m.get("entry_id")
        if isinstance(ref, str) and ref.startswith("kb:"):
            m["entry_id"] = ids[int(ref[3:])]
    return conv


def load_demo(svc: Services, *, now: datetime) -> DemoSummary:
    """Create the demo bot with its KB and conversations (once), then run a cycle at `now`."""
    with session_scope(svc.engine) as session:
        bot = session.exec(select(Bot).where(Bot.slug == DEMO_SLUG)).first()
        already = bot is not None
        if bot is None:
            bot = create_bot(session, slug=DEMO_SLUG, name="Voltcart support (demo)")
    kb = load_demo_kb()
    conversations = load_demo_conversations(now)
    if not already:
        ids = [created["id"] for created in svc.policy.create_entries([
            CreateEntry(bot_id=bot.id, question=e["question"], answer=e["answer"],
                        variants=e["variants"], category=e["category"], actor=DEMO_ACTOR)
            for e in kb])]
        parsed = [
            ConversationIn.model_validate(_resolve_placeholders(c, ids)) for c in conversations
        ]
        with session_scope(svc.engine) as session:
            store_conversations(session, bot_id=bot.id, conversations=parsed)
    result = svc.cycle.run(bot_id=bot.id, as_of=now)
    pending = svc.review.queue(svc.review.bot(DEMO_SLUG))
    return DemoSummary(DEMO_SLUG, len(kb), len(conversations), already, result.public(), pending)
