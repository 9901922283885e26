"""A bot driven straight through core (no HTTP) for the gap re-clustering, lifecycle and
re-analysis tests: store transcripts, run cycles at chosen times, decide, look at gaps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.bots import create_bot
from core.conversations import ConversationIn, store_conversations
from core.cycle import CycleResult
from core.db import session_scope
from core.models import Bot, Gap, GapEvidence, Suggestion
from core.policy.commands import Actor, Approve, Channel, Reject, RejectReason
from core.services import Services
from tests.helpers import escalated_conversation

REVIEWER = Actor(name="alice", channel=Channel.api)


class GapWorld:
    def __init__(self, services: Services, slug: str = "shop") -> None:
        self.svc = services
        with session_scope(services.engine) as session:
            self.bot_id = create_bot(session, slug=slug, name=slug.title()).id

    def settings(self, **changes: Any) -> None:
        with session_scope(self.svc.engine) as session:
            bot = session.get(Bot, self.bot_id)
            assert bot is not None
            bot.settings = {**bot.settings, **changes}
            session.add(bot)

    def escalate(self, prefix: str, questions: list[str], replies: list[str | None],
                 at: datetime) -> list[str]:
        """One escalated conversation per question (the bot fell back, an agent replied)."""
        convs = [escalated_conversation(f"{prefix}-{i}", q, replies[i % len(replies)], at)
                 for i, q in enumerate(questions)]
        with session_scope(self.svc.engine) as session:
            store_conversations(session, bot_id=self.bot_id, conversations=[
                ConversationIn.model_validate(c) for c in convs])
        return [c["id"] for c in convs]

    def cycle(self, as_of: datetime, *, full: bool = False) -> CycleResult:
        return self.svc.cycle.run(bot_id=self.bot_id, as_of=as_of, full=full)

    def suggestions(self, *statuses: str) -> list[Suggestion]:
        with Session(self.svc.engine) as session:
            query = select(Suggestion).where(Suggestion.bot_id == self.bot_id)
            if statuses:
                query = query.where(col(Suggestion.status).in_(statuses))
            return list(session.exec(query.order_by(col(Suggestion.created_at))))

    def open_suggestions(self) -> list[Suggestion]:
        return self.suggestions("pending", "deferred")

    def gaps(self, *statuses: str) -> list[Gap]:
        with Session(self.svc.engine) as session:
            query = select(Gap).where(Gap.bot_id == self.bot_id)
            if statuses:
                query = query.where(col(Gap.status).in_(statuses))
            return list(session.exec(query.order_by(col(Gap.created_at))))

    def gap(self, gap_id: str | None) -> Gap:
        with Session(self.svc.engine) as session:
            gap = session.get(Gap, gap_id)
            assert gap is not None
            return gap

    def questions_of(self, gap_id: str | None) -> set[str]:
        with Session(self.svc.engine) as session:
            return set(session.exec(select(GapEvidence.question).where(
                GapEvidence.gap_id == gap_id)).all())

    def evidence_count(self, gap_id: str | None) -> int:
        with Session(self.svc.engine) as session:
            return len(session.exec(select(GapEvidence.id).where(
                GapEvidence.gap_id == gap_id)).all())

    def approve(self, suggestion: Suggestion) -> str:
        result = self.svc.policy.decide(Approve(suggestion_id=suggestion.id, actor=REVIEWER))
        assert result.entry_id is not None
        return result.entry_id

    def reject(self, suggestion: Suggestion,
               reason: RejectReason = RejectReason.not_a_gap) -> None:
        self.svc.policy.decide(Reject(suggestion_id=suggestion.id, actor=REVIEWER,
                                      reason=reason))
