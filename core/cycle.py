"""The analysis cycle: new conversations → signals → gaps → priorities → one suggestion per gap."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from core.answering import rank_entries
from core.bots import BotSettings, bot_settings
from core.db import session_scope
from core.embeddings import Embedder
from core.index import PhrasingIndex, entry_phrasings
from core.metrics import THIN_DATA_CONVERSATIONS, SatisfactionBook
from core.models import (
    Bot,
    Conversation,
    CycleRun,
    Gap,
    GapEvidence,
    KBEntry,
    Suggestion,
    as_utc,
    utcnow,
)
from core.pipeline.gaps import GapState, assign
from core.pipeline.priorities import GapFacts, adds_information, prioritise
from core.pipeline.proposals import (
    SAME_ANSWER,
    Candidate,
    EntryView,
    Evidence,
    classify,
    propose,
)
from core.pipeline.signals import Signal, detect, transcript_from_row

log = logging.getLogger(__name__)

BATCH = 2_000
# Signals that point at a missing or wrong answer; abandonment alone is too weak to act on.
ACTIONABLE = ("unanswered", "negative_feedback")
# A rejected gap comes back only if it has grown this much since the rejection.
REJECTED_GROWTH = 2.0
# KB entries considered as the home of a gap (nearest to its questions).
CANDIDATES = 3


@dataclass
class CycleResult:
    conversations_analyzed: int = 0
    gaps: int = 0
    suggestions_created: int = 0
    suggestions_updated: int = 0
    auto_published: int = 0
    seconds: float = 0.0
    signals: Counter[str] = field(default_factory=Counter)

    def public(self) -> dict[str, Any]:
        return {
            "conversations_analyzed": self.conversations_analyzed,
            "gaps": self.gaps,
            "suggestions_created": self.suggestions_created,
            "auto_published": self.auto_published,
            "seconds": round(self.seconds, 3),
        }


def _vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


def _blob(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype=np.float32).tobytes()


@dataclass
class EmbeddedSignals:
    signals: list[Signal]
    vectors: np.ndarray
    replies: list[np.ndarray | None]


@dataclass
class AnswerMatrix:
    entry_ids: list[str]
    vectors: np.ndarray | None

    def closest(self, reply: np.ndarray, *, at_least: float = SAME_ANSWER) -> str | None:
        """The entry whose answer is most like `reply`, if it is alike enough."""
        if self.vectors is None or not self.entry_ids:
            return None
        sims = self.vectors @ reply
        best = int(np.argmax(sims))
        return self.entry_ids[best] if float(sims[best]) >= at_least else None


@dataclass
class SuggestionPlan:
    gap_id: str
    bot_id: str
    fields: dict[str, Any]
    occurrences_total: int


class Cycle:
    def __init__(self, *, engine: Engine, embedder: Embedder, index: PhrasingIndex) -> None:
        self.engine = engine
        self.embedder = embedder
        self.index = index
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def run(self, *, bot_id: str, as_of: datetime | None = None) -> CycleResult:
        """One cycle for one bot. Safe to run twice: only unanalysed conversations are read,
        and a per-bot lock keeps two cycles of the same bot in this process from interleaving.
        """
        with self._lock_for(bot_id):
            return self._run(bot_id=bot_id, as_of=as_of)

    def _lock_for(self, bot_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(bot_id, threading.Lock())

    def _run(self, *, bot_id: str, as_of: datetime | None) -> CycleResult:
        started = time.perf_counter()
        as_of = as_utc(as_of) if as_of else utcnow()
        result = CycleResult()
        with session_scope(self.engine) as session:
            bot = session.get(Bot, bot_id)
            if bot is None:
                raise LookupError(f"bot {bot_id} not found")
            settings = bot_settings(bot)
            run = CycleRun(bot_id=bot_id, as_of=as_of)
            session.add(run)
            self._return_deferred(session, bot_id=bot_id, as_of=as_of)

        touched: set[str] = set()
        while True:
            # Read and embed outside any write transaction: on SQLite a write transaction
            # blocks every other writer, and embedding takes a while.
            read_at = utcnow()
            with Session(self.engine) as session:
                rows = list(session.exec(
                    select(Conversation.id, Conversation.started_at, Conversation.messages,
                           Conversation.feedback, Conversation.csat)
                    .where(Conversation.bot_id == bot_id, col(Conversation.analyzed_at).is_(None),
                           col(Conversation.started_at) <= as_of)
                    .order_by(col(Conversation.started_at)).limit(BATCH)
                ))
            if not rows:
                break
            signals: list[Signal] = []
            for cid, started_at, messages, feedback, csat in rows:
                found, _ = detect(transcript_from_row(id=cid, started_at=started_at,
                                                      messages=messages, feedback=feedback,
                                                      csat=csat))
                signals.extend(found)
            result.conversations_analyzed += len(rows)
            for sig in signals:
                result.signals[sig.kind] += 1
            batch = self._embed([sig for sig in signals if sig.kind in ACTIONABLE])
            with session_scope(self.engine) as session:
                touched |= self._withdraw(session, conversation_ids=[r[0] for r in rows])
                touched |= self._cluster(session, bot_id=bot_id, batch=batch,
                                         threshold=settings.gap_similarity)
                # A transcript re-sent while we worked stays unanalysed for the next pass.
                session.execute(
                    update(Conversation)
                    .where(col(Conversation.id).in_([r[0] for r in rows]),
                           col(Conversation.received_at) <= read_at)
                    .values(analyzed_at=utcnow())
                    .execution_options(synchronize_session=False)
                )

        with Session(self.engine) as session:
            thin = len(session.exec(
                select(Conversation.id).where(Conversation.bot_id == bot_id)
                .limit(THIN_DATA_CONVERSATIONS)).all()) < THIN_DATA_CONVERSATIONS
        entries: dict[str, EntryView | None] = {}
        answers = self._answer_matrix(bot_id=bot_id) if touched else AnswerMatrix([], None)
        satisfaction = SatisfactionBook(self.engine, bot_id=bot_id, as_of=as_of)
        for gap_id in sorted(touched):
            plan = self._plan(gap_id=gap_id, as_of=as_of, entries=entries, thin=thin,
                              settings=settings, satisfaction=satisfaction,
                              answers=answers)
            with session_scope(self.engine) as session:
                if plan is None:
                    self._close_empty_gap(session, gap_id=gap_id)
                    continue
                created, updated = self._write_suggestion(session, plan)
            result.suggestions_created += created
            result.suggestions_updated += updated

        with session_scope(self.engine) as session:
            result.gaps = len(session.exec(
                select(Gap.id).where(Gap.bot_id == bot_id, Gap.status == "open")).all())
            stored = session.get(CycleRun, run.id)
            assert stored is not None
            result.seconds = time.perf_counter() - started
            stored.finished_at = utcnow()
            stored.stats = {**result.public(), "signals": dict(result.signals),
                            "suggestions_updated": result.suggestions_updated}
            session.add(stored)
        return result

    # -- stages wired to storage -------------------------------------------------------------

    def _return_deferred(self, session: Session, *, bot_id: str, as_of: datetime) -> None:
        session.execute(
            update(Suggestion)
            .where(Suggestion.bot_id == bot_id, Suggestion.status == "deferred",
                   col(Suggestion.defer_until) <= as_of)
            .values(status="pending", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    def _embed(self, signals: list[Signal]) -> EmbeddedSignals:
        if not signals:
            return EmbeddedSignals([], np.zeros((0, 0), dtype=np.float32), [])
        vectors = self.embedder.embed([s.question for s in signals])
        reply_idx = [i for i, s in enumerate(signals) if s.agent_reply]
        reply_vecs = self.embedder.embed([signals[i].agent_reply or "" for i in reply_idx])
        replies: list[np.ndarray | None] = [None] * len(signals)
        for k, i in enumerate(reply_idx):
            replies[i] = reply_vecs[k]
        return EmbeddedSignals(signals, vectors, replies)

    def _withdraw(self, session: Session, *, conversation_ids: list[str]) -> set[str]:
        """Drop the evidence a re-sent transcript contributed before; it is analysed afresh.

        Returns the gaps that lost evidence, so their suggestions are recounted.
        """
        old = list(session.exec(select(GapEvidence).where(
            col(GapEvidence.conversation_id).in_(conversation_ids))))
        lost = Counter(e.gap_id for e in old)
        for e in old:
            session.delete(e)
        for gap_id, n in lost.items():
            gap = session.get(Gap, gap_id)
            if gap is not None:
                gap.size = max(0, gap.size - n)
                session.add(gap)
        session.flush()
        return set(lost)

    def _cluster(self, session: Session, *, bot_id: str, batch: EmbeddedSignals,
                 threshold: float) -> set[str]:
        if not batch.signals:
            return set()
        # Rejected gaps stay candidates so their failures accumulate there (and stay suppressed)
        # instead of seeding a look-alike gap.
        gaps = list(session.exec(select(Gap).where(
            Gap.bot_id == bot_id, col(Gap.status).in_(("open", "rejected")))))
        states = [GapState(id=g.id, centroid=_vec(g.centroid).copy(), size=g.size,
                           reply_centroid=_vec(g.reply_centroid).copy() if g.reply_centroid
                           else None, replies=g.replies, frozen=g.status == "rejected")
                  for g in gaps]
        changed = assign(batch.vectors, states, threshold=threshold, replies=batch.replies)
        touched: set[str] = set()
        by_id = {g.id: g for g in gaps}
        for state in changed:
            if state.id is None:
                gap = Gap(bot_id=bot_id, kind="new_answer", centroid=b"")
            else:
                gap = by_id[state.id]
            gap.centroid = _blob(state.centroid)
            gap.reply_centroid = _blob(state.reply_centroid) \
                if state.reply_centroid is not None else None
            gap.size = state.size
            gap.replies = state.replies
            gap.updated_at = utcnow()
            session.add(gap)
            session.flush()
            for i in state.members:
                s = batch.signals[i]
                reply = batch.replies[i]
                session.add(GapEvidence(
                    gap_id=gap.id, conversation_id=s.conversation_id, question=s.question,
                    agent_reply=s.agent_reply, signal=s.kind, at=s.at,
                    embedding=_blob(batch.vectors[i]),
                    bot_entry_id=s.bot_entry_id,
                    reply_embedding=_blob(reply) if reply is not None else None,
                ))
            touched.add(gap.id)
        session.flush()
        return touched

    def _entry_view(self, session: Session, entry_id: str,
                    cache: dict[str, EntryView | None]) -> EntryView | None:
        if entry_id in cache:
            return cache[entry_id]
        cache[entry_id] = self._load_entry_view(session, entry_id)
        return cache[entry_id]

    def _load_entry_view(self, session: Session, entry_id: str) -> EntryView | None:
        entry = session.get(KBEntry, entry_id)
        if entry is None or not entry.active:
            return None
        phr = entry_phrasings(bot_id=entry.bot_id, entry_id=entry.id, question=entry.question,
                              variants=list(entry.variants), active=True)
        vecs = self.embedder.embed([p.text for p in phr] + [entry.answer])
        return EntryView(entry.id, entry.question, entry.answer, list(entry.variants),
                         vecs[:-1], vecs[-1])

    def _answer_matrix(self, *, bot_id: str) -> AnswerMatrix:
        """Every active entry's answer, embedded once per cycle (cached across cycles)."""
        with Session(self.engine) as session:
            rows = session.exec(select(KBEntry.id, KBEntry.answer).where(
                KBEntry.bot_id == bot_id, col(KBEntry.active))).all()
        if not rows:
            return AnswerMatrix([], None)
        return AnswerMatrix([r[0] for r in rows], self.embedder.embed([r[1] for r in rows]))

    def _plan(self, *, gap_id: str, as_of: datetime, entries: dict[str, EntryView | None],
              thin: bool, settings: BotSettings, satisfaction: SatisfactionBook,
              answers: AnswerMatrix) -> SuggestionPlan | None:
        """Everything a gap's suggestion needs, computed with reads only (None: no evidence
        is left, every transcript behind the gap was corrected)."""
        with Session(self.engine) as session:
            gap = session.get(Gap, gap_id)
            assert gap is not None
            rows = list(session.exec(select(GapEvidence).where(GapEvidence.gap_id == gap_id)
                                     .order_by(col(GapEvidence.at))))
            if not rows:
                return None
            # The chatbot knows its conversations by its own ids.
            external = dict(session.exec(select(Conversation.id, Conversation.external_id).where(
                col(Conversation.id).in_({r.conversation_id for r in rows}))).all())
            evidence = [Evidence(r.question, _vec(r.embedding), r.agent_reply,
                                 _vec(r.reply_embedding) if r.reply_embedding else None)
                        for r in rows]
            centroid = _vec(gap.centroid)
            matches = rank_entries(index=self.index, bot_id=gap.bot_id, vector=centroid)
            bot_answers = Counter(r.bot_entry_id for r in rows if r.bot_entry_id)
            answered_with = bot_answers.most_common(1)[0][0] if bot_answers else None
            # The entry whose answer the agents' replies repeat is a candidate even when the
            # customers' wording is far from its phrasings: that is exactly a missed variant,
            # and proposing a new entry instead would split the answer in two.
            said = answers.closest(_vec(gap.reply_centroid)) if gap.reply_centroid else None
            candidates: list[Candidate] = []
            for entry_id in dict.fromkeys(
                    [m.entry_id for m in matches[:CANDIDATES]]
                    + ([answered_with] if answered_with else []) + ([said] if said else [])):
                view = self._entry_view(session, entry_id, entries)
                if view is not None:
                    candidates.append(Candidate(view, float(np.max(
                        view.phrasing_vectors @ centroid))))
        kind, entry = classify(evidence, candidates, bot_answered_with=answered_with)
        proposal = propose(kind, evidence, entry)

        week_ago = as_of - timedelta(days=7)
        recent = [r for r in rows if week_ago < as_utc(r.at) <= as_of]
        previous = [r for r in rows if week_ago - timedelta(days=7) < as_utc(r.at) <= week_ago]
        kinds = Counter(r.signal for r in rows)
        # An existing answer's priority: how it fares with everyone it was given to lately,
        # and whether the agents in this gap had to add to it after the bot gave it.
        rated = satisfaction.of(entry.id) if kind == "improve_answer" and entry else None
        given = {r.conversation_id for r in rows if entry and r.bot_entry_id == entry.id}
        added = {r.conversation_id for r in rows if entry and r.conversation_id in given
                 and r.agent_reply and adds_information(r.agent_reply, entry.answer)}
        facts = GapFacts(kind=kind, occurrences_7d=len({r.conversation_id for r in recent}),
                         occurrences_total=len({r.conversation_id for r in rows}),
                         unanswered=kinds["unanswered"],
                         negative_feedback=kinds["negative_feedback"],
                         abandoned=kinds["abandoned"],
                         previous_7d=len({r.conversation_id for r in previous}),
                         answered_30d=rated.answered if rated else 0,
                         satisfied_30d=rated.satisfied if rated else 0,
                         answered_in_gap=len(given), agent_additions=len(added))
        priority = prioritise(facts, critical_weekly=settings.critical_weekly_occurrences,
                              medium_satisfaction=settings.medium_satisfaction)
        warning = proposal.warning
        if thin:
            note = (f"Thin data: fewer than {THIN_DATA_CONVERSATIONS} conversations so far, "
                    "so this gap may not be representative.")
            warning = f"{warning} {note}" if warning else note
        evidence_doc = {
            "conversation_ids": [external.get(c, c) for c in
                                 dict.fromkeys(r.conversation_id for r in reversed(rows))][:50],
            "occurrences_7d": facts.occurrences_7d,
            "occurrences_total": facts.occurrences_total,
            "signals": dict(kinds),
            "reason": priority.reason,
            "agent_replies": sum(1 for r in rows if r.agent_reply),
            "thin_data": thin,
            # improve_answer only: the entry's satisfaction (null without data) and how often
            # agents added to its answer in this gap.
            "satisfaction": {"percent": facts.satisfied_30d * 100 // facts.answered_30d,
                             "answered_30d": facts.answered_30d}
            if facts.answered_30d and kind == "improve_answer" else None,
            "incomplete": facts.incomplete if kind == "improve_answer" else None,
        }
        fields: dict[str, Any] = {
            "kind": kind, "priority": priority.level, "score": priority.score,
            "confidence": proposal.confidence, "question": proposal.question,
            "answer": proposal.answer, "variants": proposal.variants,
            "entry_id": proposal.entry_id, "warning": warning, "evidence": evidence_doc,
        }
        return SuggestionPlan(gap_id=gap_id, bot_id=gap.bot_id, fields=fields,
                              occurrences_total=facts.occurrences_total)

    def _close_empty_gap(self, session: Session, *, gap_id: str) -> None:
        gap = session.get(Gap, gap_id)
        if gap is None or gap.status != "open":
            return
        gap.status = "closed"
        session.add(gap)
        for sug in session.exec(select(Suggestion).where(
                Suggestion.gap_id == gap_id, col(Suggestion.status).in_(("pending", "deferred")))):
            # Nothing is left to fix: the question stops being asked of the reviewers.
            sug.status = "withdrawn"
            sug.updated_at = utcnow()
            session.add(sug)

    def _write_suggestion(self, session: Session, plan: SuggestionPlan) -> tuple[int, int]:
        """Create or refresh the gap's one open suggestion. Returns (created, updated)."""
        gap = session.get(Gap, plan.gap_id)
        assert gap is not None
        gap.kind = plan.fields["kind"]
        gap.entry_id = plan.fields["entry_id"]
        session.add(gap)
        latest = session.exec(select(Suggestion).where(Suggestion.gap_id == plan.gap_id)
                              .order_by(col(Suggestion.created_at).desc())).first()
        if latest is not None and latest.status in ("pending", "deferred"):
            # New evidence updates the open suggestion; it never adds a second one.
            for k, v in plan.fields.items():
                setattr(latest, k, v)
            latest.updated_at = utcnow()
            session.add(latest)
            return 0, 1
        if latest is not None and latest.status == "rejected":
            size_then = int((latest.evidence or {}).get("occurrences_total", 0))
            if plan.occurrences_total < REJECTED_GROWTH * max(size_then, 1):
                return 0, 0
        session.add(Suggestion(bot_id=plan.bot_id, gap_id=plan.gap_id, status="pending",
                               **plan.fields))
        return 1, 0
