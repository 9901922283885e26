"""The analysis cycle: new conversations → signals → gaps → priorities → one suggestion per gap."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, delete, func, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from core.answering import NEIGHBOURS, rank_entries
from core.bots import BotSettings, bot_settings
from core.db import session_scope
from core.embeddings import Embedder
from core.errors import CycleRunning
from core.generation import Draft, GapContext, Generator, RejectedDraft, TokenUsage
from core.index import IndexUnavailable, PhrasingIndex, entry_phrasings
from core.metrics import THIN_DATA_CONVERSATIONS, SatisfactionBook
from core.models import (
    AuditEvent,
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
from core.pipeline import recluster
from core.pipeline.checks import (
    REPLAY_QUESTIONS,
    KnownAnswer,
    contradicted_by,
    duplicate_of,
    evidence_replay,
)
from core.pipeline.gaps import GapState, assign
from core.pipeline.priorities import PRIORITY_ORDER, GapFacts, adds_information, prioritise
from core.pipeline.proposals import (
    LOW_CONFIDENCE,
    NO_EVIDENCE_CONFIDENCE,
    PLACEHOLDER_ANSWERS,
    SAME_ANSWER,
    Candidate,
    EntryView,
    Evidence,
    Proposal,
    classify,
    propose,
)
from core.pipeline.signals import Signal, detect, transcript_from_row
from core.policy.categories import CategoryClassifier
from core.policy.limits import weekly_allowance
from core.policy.notify import NotificationKind, announce
from core.policy.service import Policy

log = logging.getLogger(__name__)

BATCH = 2_000
# A full re-analysis reads stored conversations in pages of this many (memory stays bounded).
FULL_BATCH = 5_000
# Gap lifecycle (docs/signals.md): failures join open gaps, and also rejected and published
# ones, which are frozen (they collect without moving). A published gap closes once no failure
# joined it for QUIET_DAYS; merged and superseded gaps handed their evidence to another gap.
ASSIGNABLE = ("open", "rejected", "published")
FROZEN = ("rejected", "published")
DECIDED = ("rejected", "published", "closed")
OPEN_SUGGESTION = ("pending", "deferred")
QUIET_DAYS = 14
# A cycle lease (an unfinished run) older than this belongs to a process that died.
STALE_CYCLE = timedelta(hours=6)
# IN-lists are chunked to stay under every backend's bound-parameter limit.
CHUNK = 500
# Signals that point at a missing or wrong answer; abandonment alone is too weak to act on.
ACTIONABLE = ("unanswered", "negative_feedback")
# A rejected gap comes back only if it has grown this much since the rejection.
REJECTED_GROWTH = 2.0
# A gap rejected as off-topic / not a real gap never comes back; one rejected as sensitive
# comes back only once it has grown (REJECTED_GROWTH). Other reasons judge the proposal.
OFF_TOPIC = "not_a_gap"
SCOPE_REJECTIONS = (OFF_TOPIC, "sensitive")
# KB entries considered as the home of a gap (nearest to its questions).
CANDIDATES = 3
# An entry's satisfaction says whether its answer is the problem only once it has been given
# this many times in the window.
MIN_RATED = 5


@dataclass
class CycleResult:
    conversations_analyzed: int = 0
    gaps: int = 0
    suggestions_created: int = 0
    suggestions_updated: int = 0
    auto_published: int = 0
    seconds: float = 0.0
    signals: Counter[str] = field(default_factory=Counter)
    gaps_merged: int = 0
    gaps_split: int = 0
    gaps_closed: int = 0
    suggestions_carried: int = 0
    suggestions_withdrawn: int = 0
    tokens: TokenUsage = field(default_factory=TokenUsage)
    generation_seconds: float = 0.0  # drafting answers (the generator's share of `seconds`)
    paused: bool = False  # auto-training is paused: nothing was analysed or proposed
    held_by_plan: int = 0  # new suggestions the plan's weekly allowance held back
    excluded: int = 0  # suggestions not made: their category is excluded from auto-training
    deferred_returned: int = 0
    rollbacks_suggested: int = 0
    rolled_back: int = 0  # auto-published changes rolled back by the watch (advanced)

    def public(self) -> dict[str, Any]:
        return {
            "conversations_analyzed": self.conversations_analyzed,
            "gaps": self.gaps,
            "suggestions_created": self.suggestions_created,
            "auto_published": self.auto_published,
            "seconds": round(self.seconds, 3),
            "paused": self.paused,
            "held_by_plan": self.held_by_plan,
            "excluded": self.excluded,
            "rollbacks_suggested": self.rollbacks_suggested,
            "rolled_back": self.rolled_back,
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


class KnownFirst:
    """An embedder that serves texts already embedded this cycle from memory (a full
    re-analysis then embeds no evidence again) and asks the real one for the rest."""

    def __init__(self, inner: Embedder, known: dict[str, np.ndarray]) -> None:
        self.inner, self.known, self.model_id = inner, known, inner.model_id

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        missing = sorted({t for t in texts if t not in self.known})
        fresh = dict(zip(missing, self.inner.embed(missing), strict=True)) if missing else {}
        if not texts:
            return self.inner.embed([])
        return np.stack([self.known[t] if t in self.known else fresh[t] for t in texts])


@dataclass
class SuggestionPlan:
    gap_id: str
    bot_id: str
    fields: dict[str, Any]
    occurrences_total: int
    # True when the reviewers already refused this: the gap was judged not a real gap (or
    # sensitive), or the same proposal was rejected before. Such a gap stays quiet until it
    # grows markedly; a different proposal for a wrongly-answered gap is offered at once.
    repeats_rejection: bool = False
    # For the drafting step (`Cycle._finish`): what the generator writes from (None when the
    # answer is the entry's own, as for add_variants), the proposal with its vectors, the
    # candidate entries' answers (duplicates, contradictions) and the earlier rejections.
    context: GapContext | None = None
    proposal: Proposal | None = None
    known: list[KnownAnswer] = field(default_factory=list)
    rejected: list[RejectedProposal] = field(default_factory=list)


@dataclass(frozen=True)
class RejectedProposal:
    kind: str
    entry_id: str | None
    answer: str
    reason: str | None
    comment: str | None = None

    def same_as(self, kind: str, entry_id: str | None, answer: str) -> bool:
        if self.reason in SCOPE_REJECTIONS:
            return True
        return (self.kind, self.entry_id) == (kind, entry_id) and (
            kind == "add_variants" or _norm(self.answer) == _norm(answer))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


class Cycle:
    def __init__(self, *, engine: Engine, embedder: Embedder, index: PhrasingIndex,
                 generator: Generator | None = None, policy: Policy | None = None) -> None:
        self.engine = engine
        self.embedder = embedder
        self.index = index
        # None: the most representative agent reply is proposed as it is.
        self.generator = generator
        # Auto-publishing and the watch after publish go through the policy core; without
        # one (some tests) the cycle only proposes.
        self.policy = policy
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def run(self, *, bot_id: str, as_of: datetime | None = None, full: bool = False,
            reembed: bool = False) -> CycleResult:
        """One cycle for one bot. Safe to run twice: only unanalysed conversations are read,
        and a per-bot lock keeps two cycles of the same bot in this process from interleaving.
        `full` re-analyses every stored conversation instead (see `reanalyze`).
        """
        with self._lock_for(bot_id):
            return self._run(bot_id=bot_id, as_of=as_of, full=full, reembed=reembed)

    def reanalyze(self, *, bot_id: str, as_of: datetime | None = None,
                  reembed: bool = False) -> CycleResult:
        """Re-assign every stored conversation's failures from scratch (e.g. after changing
        gap_similarity). Decided history is kept: published, closed and rejected gaps keep
        their evidence (a rejected gap keeps suppressing what it covered) and their
        suggestions. Open gaps are rebuilt; each pending or deferred suggestion moves to the
        rebuilt gap holding most of its evidence, or is withdrawn if that gap already has one
        (or none holds any). Conversations are streamed in pages of FULL_BATCH.

        Question and reply vectors already stored with the evidence are reused (a vector
        depends on its text only); pass `reembed` after switching the embedding model.
        Interrupted, it is simply run again: suggestions still on superseded gaps are carried
        over then."""
        return self.run(bot_id=bot_id, as_of=as_of, full=True, reembed=reembed)

    def _lock_for(self, bot_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(bot_id, threading.Lock())

    def _run(self, *, bot_id: str, as_of: datetime | None, full: bool = False,
             reembed: bool = False) -> CycleResult:
        started = time.perf_counter()
        as_of = as_utc(as_of) if as_of else utcnow()
        run_id, settings = self._take_lease(bot_id=bot_id, as_of=as_of)
        try:
            return self._cycle(run_id, bot_id=bot_id, as_of=as_of, settings=settings,
                               started=started, full=full, reembed=reembed)
        except BaseException as exc:
            # Release the lease, or every later cycle of this bot would wait for it to go
            # stale; an interrupted cycle is simply run again.
            with session_scope(self.engine) as session:
                run = session.get(CycleRun, run_id)
                if run is not None and run.finished_at is None:
                    run.finished_at = utcnow()
                    run.stats = {**run.stats, "failed": type(exc).__name__}
                    session.add(run)
            raise

    def _take_lease(self, *, bot_id: str, as_of: datetime) -> tuple[str, BotSettings]:
        """Start the bot's run record, which is also its cycle lease across processes (one
        unfinished run per bot). A lease without a sign of life for STALE_CYCLE (a killed
        process) is taken over."""
        for _ in range(3):
            try:
                with session_scope(self.engine) as session:
                    bot = session.get(Bot, bot_id)
                    if bot is None:
                        raise LookupError(f"bot {bot_id} not found")
                    run = CycleRun(bot_id=bot_id, as_of=as_of)
                    session.add(run)
                    session.flush()
                return run.id, bot_settings(bot)
            except IntegrityError:
                with session_scope(self.engine) as session:
                    running = session.exec(select(CycleRun).where(
                        CycleRun.bot_id == bot_id, col(CycleRun.finished_at).is_(None))).first()
                    if running is None:
                        continue  # it ended meanwhile
                    since = as_utc(running.started_at)
                    if since > utcnow() - STALE_CYCLE:
                        raise CycleRunning(
                            f"a cycle for this bot is already running (started "
                            f"{since.isoformat(timespec='seconds')}, in another process); "
                            "it will pick up everything new, or try again when it ends"
                        ) from None
                    running.finished_at = utcnow()
                    running.stats = {**running.stats, "failed": "abandoned (stale lease)"}
                    session.add(running)
        raise CycleRunning("could not start a cycle for this bot: another one keeps starting")

    def _cycle(self, run_id: str, *, bot_id: str, as_of: datetime, settings: BotSettings,
               started: float, full: bool, reembed: bool) -> CycleResult:
        result = CycleResult()
        with session_scope(self.engine) as session:
            result.deferred_returned = self._return_deferred(session, bot_id=bot_id,
                                                             as_of=as_of)
        if not settings.enabled:
            # Published changes stay watched while paused: a harmful one still gets flagged.
            result.paused = True
            self._watch(bot_id=bot_id, as_of=as_of, result=result)
            self._record(run_id, bot_id=bot_id, started=started, full=full, result=result)
            return result

        if full:
            touched, joined, odd = self._analyse_all(bot_id=bot_id, as_of=as_of,
                                                     settings=settings, result=result,
                                                     reembed=reembed)
        else:
            touched, joined, odd = self._analyse_new(bot_id=bot_id, as_of=as_of,
                                                     settings=settings, result=result)
        with session_scope(self.engine) as session:
            touched = self._reshape(session, bot_id=bot_id, touched=touched, joined=joined,
                                    disagreeing=odd, full=full, result=result)
        with Session(self.engine) as session:
            allowance = weekly_allowance(session, bot_id=bot_id, settings=settings, at=as_of)
            if allowance:
                # A limited plan with room again (a new week): gaps it held back earlier get
                # their turn even if nothing new joined them.
                offered = select(Suggestion.id).where(col(Suggestion.gap_id) == Gap.id)
                touched |= set(session.exec(select(Gap.id).where(
                    Gap.bot_id == bot_id, Gap.status == "open", ~offered.exists())).all())

        with Session(self.engine) as session:
            thin = len(session.exec(
                select(Conversation.id).where(Conversation.bot_id == bot_id)
                .limit(THIN_DATA_CONVERSATIONS)).all()) < THIN_DATA_CONVERSATIONS
        entries: dict[str, EntryView | None] = {}
        answers = self._answer_matrix(bot_id=bot_id) if touched else AnswerMatrix([], None)
        satisfaction = SatisfactionBook(self.engine, bot_id=bot_id, as_of=as_of)
        plans = [(gap_id, self._plan(gap_id=gap_id, as_of=as_of, entries=entries, thin=thin,
                                     settings=settings, satisfaction=satisfaction,
                                     answers=answers)) for gap_id in sorted(touched)]
        live = [plan for _, plan in plans if plan is not None]
        known = self._finish(live, threshold=settings.answer_threshold, result=result)
        self._categorise(live, bot_id=bot_id, settings=settings, vectors=known)
        for gap_id in [g for g, plan in plans if plan is None]:
            with session_scope(self.engine) as session:
                self._close_empty_gap(session, gap_id=gap_id)
        # Most urgent first, so a limited plan's allowance goes to what matters most.
        live.sort(key=lambda p: (PRIORITY_ORDER.get(p.fields["priority"], 9),
                                 -p.fields["score"], p.gap_id))
        for plan in live:
            with session_scope(self.engine) as session:
                outcome = self._write_suggestion(session, plan, as_of=as_of, settings=settings,
                                                 allowance=allowance)
            if outcome == "created" and allowance is not None:
                allowance -= 1
            result.suggestions_created += outcome == "created"
            result.suggestions_updated += outcome == "updated"
            result.held_by_plan += outcome == "held"
            result.excluded += outcome == "excluded"

        with session_scope(self.engine) as session:
            self._close_quiet(session, bot_id=bot_id, as_of=as_of, result=result)
        self._watch(bot_id=bot_id, as_of=as_of, result=result)
        if self.policy is not None:
            result.auto_published = len(self.policy.auto_publish(bot_id=bot_id,
                                                                 at=as_of).published)
        self._record(run_id, bot_id=bot_id, started=started, full=full, result=result)
        return result

    def _watch(self, *, bot_id: str, as_of: datetime, result: CycleResult) -> None:
        if self.policy is None:
            return
        report = self.policy.check_watches(bot_id=bot_id, at=as_of)
        result.rollbacks_suggested += len(report.alerted)
        result.rolled_back += len(report.rolled_back)

    def _record(self, run_id: str, *, bot_id: str, started: float, full: bool,
                result: CycleResult) -> None:
        """Finish the cycle's run record with its figures."""
        with session_scope(self.engine) as session:
            result.gaps = len(session.exec(
                select(Gap.id).where(Gap.bot_id == bot_id, Gap.status == "open")).all())
            stored = session.get(CycleRun, run_id)
            assert stored is not None
            result.seconds = time.perf_counter() - started
            stored.finished_at = utcnow()
            stored.stats = {**result.public(), "signals": dict(result.signals),
                            "suggestions_updated": result.suggestions_updated, "full": full,
                            "gaps_merged": result.gaps_merged, "gaps_split": result.gaps_split,
                            "gaps_closed": result.gaps_closed,
                            "suggestions_carried": result.suggestions_carried,
                            "suggestions_withdrawn": result.suggestions_withdrawn,
                            "generator": self.generator.name if self.generator else None,
                            "generation_seconds": round(result.generation_seconds, 3),
                            "tokens": {"prompt": result.tokens.prompt_tokens,
                                       "completion": result.tokens.completion_tokens},
                            "deferred_returned": result.deferred_returned}
            session.add(stored)

    # -- reading conversations -----------------------------------------------------------------

    def _signals(self, rows: list[Any], result: CycleResult,
                 skip: set[tuple[str, str]] | None = None,
                 known: dict[str, np.ndarray] | None = None) -> EmbeddedSignals:
        """The actionable failures of `rows` (id, started_at, messages, feedback, csat, ...),
        embedded; failures keyed (conversation id, question) in `skip` are left out, and
        texts in `known` are not embedded again."""
        signals: list[Signal] = []
        for cid, started_at, messages, feedback, csat, *_ in rows:
            found, _ = detect(transcript_from_row(id=cid, started_at=started_at,
                                                  messages=messages, feedback=feedback,
                                                  csat=csat))
            signals.extend(found)
        result.conversations_analyzed += len(rows)
        for sig in signals:
            result.signals[sig.kind] += 1
        actionable = [sig for sig in signals if sig.kind in ACTIONABLE
                      and (not skip or (sig.conversation_id, sig.question) not in skip)]
        if known is None:
            return self._embed(actionable)
        return self._embed_reusing(actionable, known)

    def _embed_reusing(self, signals: list[Signal], known: dict[str, np.ndarray]
                       ) -> EmbeddedSignals:
        """As `_embed`, but a text whose vector is in `known` (text -> vector, e.g. read
        back from stored evidence) is not embedded again: a vector depends on the text only."""
        if not signals:
            return self._embed(signals)
        texts = [s.question for s in signals] + [s.agent_reply for s in signals
                                                  if s.agent_reply]
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            known.update(zip(missing, self.embedder.embed(missing), strict=True))
        return EmbeddedSignals(signals, np.stack([known[s.question] for s in signals]),
                               [known[s.agent_reply] if s.agent_reply else None
                                for s in signals])

    def _mark_analyzed(self, session: Session, *, ids: list[str], read_at: datetime) -> None:
        # A transcript re-sent while we worked stays unanalysed for the next pass.
        for start in range(0, len(ids), CHUNK):
            session.execute(
                update(Conversation)
                .where(col(Conversation.id).in_(ids[start:start + CHUNK]),
                       col(Conversation.received_at) <= read_at)
                .values(analyzed_at=utcnow())
                .execution_options(synchronize_session=False)
            )

    def _analyse_new(self, *, bot_id: str, as_of: datetime, settings: BotSettings,
                     result: CycleResult) -> tuple[set[str], set[str], set[str]]:
        """Assign the failures of conversations not analysed yet. Returns the gaps touched
        (new, joined or lost evidence), the gaps that new failures joined, and those whose new
        agents' replies disagree with the rest (split candidates)."""
        touched: set[str] = set()
        joined: set[str] = set()
        odd: set[str] = set()
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
            batch = self._signals(rows, result)
            lost, new, disagree = self._assign_batch(
                bot_id=bot_id, batch=batch, threshold=settings.gap_similarity,
                withdraw=[r[0] for r in rows], analysed=[r[0] for r in rows], read_at=read_at)
            touched |= lost | new
            joined |= new
            odd |= disagree
        return touched, joined, odd

    def _assign_batch(self, *, bot_id: str, batch: EmbeddedSignals, threshold: float,
                      withdraw: list[str], analysed: list[str], read_at: datetime
                      ) -> tuple[set[str], set[str], set[str]]:
        """One write transaction per batch: drop the old evidence of `withdraw`, assign the
        batch's failures to gaps, mark `analysed` as read. Returns the gaps that lost evidence,
        the gaps that gained some, and the gaps whose agents' replies now disagree."""
        with session_scope(self.engine) as session:
            lost = self._withdraw(session, conversation_ids=withdraw)
            new, disagree = self._cluster(session, bot_id=bot_id, batch=batch,
                                          threshold=threshold)
            self._mark_analyzed(session, ids=analysed, read_at=read_at)
        return lost, new, disagree

    def _analyse_all(self, *, bot_id: str, as_of: datetime, settings: BotSettings,
                     result: CycleResult, reembed: bool = False
                     ) -> tuple[set[str], set[str], set[str]]:
        """The full re-analysis (see `reanalyze`): supersede the open gaps, then stream every
        conversation up to `as_of` through the assignment again, leaving out failures that
        are already evidence of a decided gap."""
        with session_scope(self.engine) as session:
            session.execute(
                update(Gap).where(Gap.bot_id == bot_id, Gap.status == "open")
                .values(status="superseded", updated_at=utcnow())
                .execution_options(synchronize_session=False))
        touched: set[str] = set()
        joined: set[str] = set()
        odd: set[str] = set()
        after: tuple[datetime, str] | None = None
        while True:
            read_at = utcnow()
            with Session(self.engine) as session:
                query = (select(Conversation.id, Conversation.started_at, Conversation.messages,
                                Conversation.feedback, Conversation.csat,
                                Conversation.analyzed_at)
                         .where(Conversation.bot_id == bot_id,
                                col(Conversation.started_at) <= as_of))
                if after is not None:
                    # Keyset pagination: no OFFSET rescans, and each conversation once.
                    query = query.where(or_(col(Conversation.started_at) > after[0], and_(
                        col(Conversation.started_at) == after[0], col(Conversation.id) > after[1])))
                rows = list(session.exec(query.order_by(col(Conversation.started_at),
                                                        col(Conversation.id)).limit(FULL_BATCH)))
                if not rows:
                    break
                after = (rows[-1][1], rows[-1][0])
                kept, known = self._stored_evidence(session, conversation_ids=[
                    r[0] for r in rows], decided_for={r[0] for r in rows if r[5] is not None},
                    vectors=not reembed)
            batch = self._signals(rows, result, skip=kept, known=known if not reembed else None)
            # Never analysed, or re-sent since: its old evidence goes, as in a normal cycle.
            lost, new, disagree = self._assign_batch(
                bot_id=bot_id, batch=batch, threshold=settings.gap_similarity,
                withdraw=[r[0] for r in rows if r[5] is None], analysed=[r[0] for r in rows],
                read_at=read_at)
            touched |= lost | new
            joined |= new
            odd |= disagree
        return touched, joined, odd

    def _stored_evidence(self, session: Session, *, conversation_ids: list[str],
                         decided_for: set[str], vectors: bool
                         ) -> tuple[set[tuple[str, str]], dict[str, np.ndarray]]:
        """What the evidence already stored for these conversations tells a re-analysis:
        the (conversation, question) failures that belong to a decided gap (only for
        conversations in `decided_for`, the ones analysed before and unchanged since), and
        (if `vectors`) the stored question and reply vectors by text."""
        keys: set[tuple[str, str]] = set()
        known: dict[str, np.ndarray] = {}
        dim = getattr(self.embedder, "dimension", None)
        for start in range(0, len(conversation_ids), CHUNK):
            chunk = conversation_ids[start:start + CHUNK]
            keys.update((c, q) for c, q in session.exec(
                select(GapEvidence.conversation_id, GapEvidence.question)
                .join(Gap, col(Gap.id) == col(GapEvidence.gap_id))
                .where(col(GapEvidence.conversation_id).in_(chunk),
                       col(Gap.status).in_(DECIDED))).all() if c in decided_for)
            if not vectors:
                continue
            for q, qv, reply, rv in session.exec(
                    select(GapEvidence.question, GapEvidence.embedding, GapEvidence.agent_reply,
                           GapEvidence.reply_embedding)
                    .where(col(GapEvidence.conversation_id).in_(chunk))).all():
                for text, blob in ((q, qv), (reply, rv)):
                    if text and blob and text not in known:
                        v = _vec(blob)
                        if dim is None or len(v) == dim:
                            known[text] = v
        return keys, known

    # -- re-clustering and lifecycle -----------------------------------------------------------

    def _reshape(self, session: Session, *, bot_id: str, touched: set[str], joined: set[str],
                 disagreeing: set[str], full: bool, result: CycleResult) -> set[str]:
        """Merge converged open gaps, split disagreeing ones, carry suggestions over after a
        full re-analysis; returns the gaps whose suggestion must be (re)written."""
        added, removed = self._merge(session, bot_id=bot_id, disagreeing=disagreeing,
                                     result=result)
        joined = (joined | added) - removed
        for gap_id in sorted(disagreeing - removed):
            parts = self._split(session, gap_id=gap_id, result=result)
            added |= parts
            joined |= parts
        touched = (touched | added) - removed
        if full:
            self._carry_suggestions(session, bot_id=bot_id, result=result)
            touched |= set(session.exec(select(Gap.id).where(
                Gap.bot_id == bot_id, Gap.status == "open")).all())
        session.flush()
        status = {}
        ids = sorted(touched)
        for start in range(0, len(ids), CHUNK):
            status.update(session.exec(select(Gap.id, Gap.status).where(
                col(Gap.id).in_(ids[start:start + CHUNK]))).all())
        # A published gap gets a follow-up suggestion only for failures that joined it; one
        # that merely lost evidence (a re-sent transcript) has nothing new to propose.
        return {g for g in touched if status.get(g) in ("open", "rejected")
                or (status.get(g) == "published" and g in joined)}

    def _merge(self, session: Session, *, bot_id: str, disagreeing: set[str],
               result: CycleResult) -> tuple[set[str], set[str]]:
        """Merge open gaps whose question and reply centroids converged. Returns (survivors,
        merged-away gaps). The survivor keeps a single open suggestion."""
        gaps = list(session.exec(select(Gap).where(Gap.bot_id == bot_id, Gap.status == "open")
                                 .order_by(col(Gap.created_at), col(Gap.id))))
        groups = recluster.merge_groups([recluster.Centroids(
            _vec(g.centroid), _vec(g.reply_centroid) if g.reply_centroid else None, g.size)
            for g in gaps])
        survivors: set[str] = set()
        removed: set[str] = set()
        for group in groups:
            members = [gaps[i] for i in group]
            ids = [g.id for g in members]
            open_sugs = list(session.exec(select(Suggestion).where(
                col(Suggestion.gap_id).in_(ids), col(Suggestion.status).in_(OPEN_SUGGESTION))
                .order_by(col(Suggestion.created_at))))
            with_sug = {s.gap_id for s in open_sugs}
            # The survivor is the gap reviewers already see a suggestion for, else the largest
            # (then the oldest): what they know keeps its identity.
            survivor = max(members, key=lambda g: (g.id in with_sug, g.size, -ids.index(g.id)))
            others = [g for g in members if g is not survivor]
            q = recluster.merged_centroid([_vec(g.centroid) for g in members],
                                          [g.size for g in members])
            r = recluster.merged_centroid(
                [_vec(g.reply_centroid) if g.reply_centroid else None for g in members],
                [g.replies for g in members])
            assert q is not None
            survivor.centroid = _blob(q)
            survivor.reply_centroid = _blob(r) if r is not None else None
            survivor.size = sum(g.size for g in members)
            survivor.replies = sum(g.replies for g in members)
            lasts = [as_utc(g.last_failure_at) for g in members if g.last_failure_at]
            survivor.last_failure_at = max(lasts) if lasts else None
            survivor.updated_at = utcnow()
            session.add(survivor)
            session.execute(update(GapEvidence).where(
                col(GapEvidence.gap_id).in_([g.id for g in others]))
                .values(gap_id=survivor.id).execution_options(synchronize_session=False))
            for g in others:
                g.status, g.size, g.replies, g.updated_at = "merged", 0, 0, utcnow()
                session.add(g)
            # One open suggestion per gap: the survivor's own, else the one reviewers saw
            # first; any other is withdrawn (its evidence now backs the kept one).
            keep = next((s for s in open_sugs if s.gap_id == survivor.id),
                        open_sugs[0] if open_sugs else None)
            for sug in open_sugs:
                if sug is keep:
                    if sug.gap_id != survivor.id:
                        sug.gap_id = survivor.id
                        result.suggestions_carried += 1
                else:
                    sug.status = "withdrawn"
                    result.suggestions_withdrawn += 1
                sug.updated_at = utcnow()
                session.add(sug)
            if disagreeing & set(ids):
                disagreeing.add(survivor.id)
            survivors.add(survivor.id)
            removed |= {g.id for g in others}
            result.gaps_merged += len(others)
        session.flush()
        return survivors, removed

    def _split(self, session: Session, *, gap_id: str, result: CycleResult) -> set[str]:
        """Split an open gap whose agents' replies form clearly different groups. The largest
        part keeps the gap (and its open suggestion); each other part becomes a new open gap.
        Returns the gaps changed (empty when nothing split)."""
        gap = session.get(Gap, gap_id)
        if gap is None or gap.status != "open" or gap.replies < 2 * recluster.SPLIT_MIN_PART:
            return set()
        rows = list(session.exec(select(GapEvidence.id, GapEvidence.embedding,
                                        GapEvidence.reply_embedding, GapEvidence.at)
                                 .where(GapEvidence.gap_id == gap_id)
                                 .order_by(col(GapEvidence.id))))
        if not rows:
            return set()
        questions = np.stack([_vec(r[1]) for r in rows])
        replies = [_vec(r[2]) if r[2] else None for r in rows]
        labels = recluster.split_parts(questions, replies)
        if labels is None:
            return set()
        changed = {gap.id}
        for part in range(int(labels.max()) + 1):
            members = np.nonzero(labels == part)[0]
            target = gap if part == 0 else Gap(bot_id=gap.bot_id, kind=gap.kind, centroid=b"",
                                               created_at=gap.created_at)
            q = recluster.unit(questions[members].sum(axis=0))
            with_reply = [replies[i] for i in members if replies[i] is not None]
            target.centroid = _blob(q)
            target.reply_centroid = _blob(recluster.unit(np.sum(with_reply, axis=0))) \
                if with_reply else None
            target.size = len(members)
            target.replies = len(with_reply)
            target.last_failure_at = max(as_utc(rows[i][3]) for i in members)
            target.updated_at = utcnow()
            session.add(target)
            if part == 0:
                continue
            session.flush()
            ev_ids = [rows[i][0] for i in members]
            for start in range(0, len(ev_ids), CHUNK):
                session.execute(update(GapEvidence).where(
                    col(GapEvidence.id).in_(ev_ids[start:start + CHUNK]))
                    .values(gap_id=target.id).execution_options(synchronize_session=False))
            changed.add(target.id)
            result.gaps_split += 1
        session.flush()
        return changed

    def _carry_suggestions(self, session: Session, *, bot_id: str, result: CycleResult) -> None:
        """After a full re-analysis: each open suggestion of a superseded gap moves to the
        rebuilt open gap that holds most of its evidence (the strongest claim first, one
        suggestion per gap) or is withdrawn; then the superseded gaps' evidence is dropped."""
        superseded = list(session.exec(select(Gap.id).where(
            Gap.bot_id == bot_id, Gap.status == "superseded")).all())
        sugs: list[Suggestion] = []
        for start in range(0, len(superseded), CHUNK):
            sugs += session.exec(select(Suggestion).where(
                col(Suggestion.gap_id).in_(superseded[start:start + CHUNK]),
                col(Suggestion.status).in_(OPEN_SUGGESTION))).all()
        old, new = aliased(GapEvidence), aliased(GapEvidence)
        claims: list[tuple[int, str, str]] = []
        old_gaps = sorted({s.gap_id for s in sugs if s.gap_id})
        for start in range(0, len(old_gaps), CHUNK):
            claims += [(int(n), o, g) for o, g, n in session.exec(
                select(old.gap_id, new.gap_id, func.count())
                .join(new, and_(new.conversation_id == old.conversation_id,
                                new.question == old.question))
                .join(Gap, col(Gap.id) == new.gap_id)
                .where(col(old.gap_id).in_(old_gaps[start:start + CHUNK]),
                       Gap.status == "open")
                .group_by(old.gap_id, new.gap_id)).all()]
        claims.sort(key=lambda c: (-c[0], c[1], c[2]))
        by_gap: dict[str, list[Suggestion]] = {}
        for sug in sorted(sugs, key=lambda s: as_utc(s.created_at)):
            by_gap.setdefault(sug.gap_id or "", []).append(sug)
        taken: set[str] = set()
        placed: set[str] = set()
        for _, old_gap, new_gap in claims:
            if new_gap in taken:
                continue
            sug = next((s for s in by_gap.get(old_gap, []) if s.id not in placed), None)
            if sug is None:
                continue
            sug.gap_id = new_gap
            sug.updated_at = utcnow()
            session.add(sug)
            taken.add(new_gap)
            placed.add(sug.id)
            result.suggestions_carried += 1
        for sug in sugs:
            if sug.id not in placed:
                sug.status = "withdrawn"
                sug.updated_at = utcnow()
                session.add(sug)
                result.suggestions_withdrawn += 1
        session.flush()
        for start in range(0, len(superseded), CHUNK):
            chunk = superseded[start:start + CHUNK]
            session.execute(delete(GapEvidence).where(col(GapEvidence.gap_id).in_(chunk))
                            .execution_options(synchronize_session=False))
            session.execute(update(Gap).where(col(Gap.id).in_(chunk)).values(size=0, replies=0)
                            .execution_options(synchronize_session=False))

    def _close_quiet(self, session: Session, *, bot_id: str, as_of: datetime,
                     result: CycleResult) -> None:
        """Close published gaps no failure joined for QUIET_DAYS (and none awaits review)."""
        cutoff = as_of - timedelta(days=QUIET_DAYS)
        for gap in session.exec(select(Gap).where(Gap.bot_id == bot_id,
                                                  Gap.status == "published")):
            moments = [as_utc(t) for t in (gap.published_at, gap.last_failure_at) if t]
            if (max(moments) if moments else as_utc(gap.updated_at)) > cutoff:
                continue
            if session.exec(select(Suggestion.id).where(
                    Suggestion.gap_id == gap.id,
                    col(Suggestion.status).in_(OPEN_SUGGESTION))).first() is not None:
                continue
            gap.status = "closed"
            gap.updated_at = utcnow()
            session.add(gap)
            result.gaps_closed += 1

    # -- stages wired to storage -------------------------------------------------------------

    def _return_deferred(self, session: Session, *, bot_id: str, as_of: datetime) -> int:
        """Deferred suggestions whose date came return to the queue, with a reminder."""
        due = list(session.exec(select(Suggestion).where(
            Suggestion.bot_id == bot_id, Suggestion.status == "deferred",
            col(Suggestion.defer_until) <= as_of)))
        for sug in due:
            sug.status = "pending"
            sug.updated_at = utcnow()
            session.add(sug)
            when = as_utc(sug.decided_at).date().isoformat() if sug.decided_at else "earlier"
            announce(session, bot_id=bot_id, kind=NotificationKind.deferred_returned,
                     suggestion_id=sug.id, entry_id=sug.entry_id, at=as_of,
                     text=f'Back in the queue: "{sug.question}" (deferred by {sug.decided_by} '
                          f"on {when}).", payload={"priority": sug.priority})
        return len(due)

    def _categorise(self, plans: list[SuggestionPlan], *, bot_id: str, settings: BotSettings,
                    vectors: dict[str, np.ndarray]) -> None:
        """Each suggestion's topic category: the entry's own when a person set one, a
        person's earlier correction for this gap, else the classifier's."""
        if not plans:
            return
        with Session(self.engine) as session:
            corrections = [(q, c) for q, c in session.exec(
                select(Suggestion.question, Suggestion.category).where(
                    Suggestion.bot_id == bot_id, Suggestion.category_source == "admin")).all()]
            entry_ids = {p.fields["entry_id"] for p in plans if p.fields["entry_id"]}
            entry_category = dict(session.exec(select(KBEntry.id, KBEntry.category).where(
                col(KBEntry.id).in_(entry_ids), col(KBEntry.category).is_not(None)))
                .all()) if entry_ids else {}
            gap_ids = [p.gap_id for p in plans]
            corrected: dict[str, str | None] = {}
            for start in range(0, len(gap_ids), CHUNK):
                for gap_id, category in session.exec(
                        select(Suggestion.gap_id, Suggestion.category).where(
                            col(Suggestion.gap_id).in_(gap_ids[start:start + CHUNK]),
                            Suggestion.category_source == "admin")
                        .order_by(col(Suggestion.updated_at))).all():
                    corrected[gap_id or ""] = category
        classifier = CategoryClassifier(KnownFirst(self.embedder, vectors),
                                        settings.categories(), corrections)
        known = set(settings.category_names())
        matches = classifier.classify_many(
            [(p.fields["question"], p.fields["answer"], p.fields["variants"]) for p in plans])
        for plan, match in zip(plans, matches, strict=True):
            fields = plan.fields
            if plan.gap_id in corrected:
                fields["category"] = corrected[plan.gap_id]
                fields["category_source"] = "admin"
                continue
            if entry_category.get(fields["entry_id"]) in known:
                # An entry's own label counts only when it is one the policy knows; a
                # free-form KB label ("returns") says nothing about pricing or legal risk.
                fields["category"] = entry_category[fields["entry_id"]]
                fields["evidence"]["category_why"] = "the entry's category"
            else:
                fields["category"] = match.name if match else None
                if match is not None:
                    fields["evidence"]["category_why"] = match.why
            fields["category_source"] = "auto"

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
                 threshold: float) -> tuple[set[str], set[str]]:
        """Assign a batch of failures to gaps. Returns the gaps they joined or seeded, and
        those among them whose new agents' replies disagree with the gap (split candidates).
        """
        if not batch.signals:
            return set(), set()
        # Rejected and published gaps stay candidates so their failures accumulate there
        # (suppressed, or as a follow-up of what was published) instead of seeding a
        # look-alike gap; both are frozen so that they never drift onto other topics.
        gaps = list(session.exec(select(Gap).where(
            Gap.bot_id == bot_id, col(Gap.status).in_(ASSIGNABLE))))
        states = [GapState(id=g.id, centroid=_vec(g.centroid).copy(), size=g.size,
                           reply_centroid=_vec(g.reply_centroid).copy() if g.reply_centroid
                           else None, replies=g.replies, frozen=g.status in FROZEN)
                  for g in gaps]
        changed = assign(batch.vectors, states, threshold=threshold, replies=batch.replies)
        touched: set[str] = set()
        odd: set[str] = set()
        by_id = {g.id: g for g in gaps}
        rows: list[dict[str, Any]] = []
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
            newest = max(as_utc(batch.signals[i].at) for i in state.members)
            gap.last_failure_at = max(newest, as_utc(gap.last_failure_at)) \
                if gap.last_failure_at else newest
            gap.updated_at = utcnow()
            session.add(gap)
            member_replies = [batch.replies[i] for i in state.members
                              if batch.replies[i] is not None]
            if not state.frozen and member_replies and recluster.disagrees(
                    state.reply_centroid, np.stack(member_replies)):  # type: ignore[arg-type]
                odd.add(gap.id)
            for i in state.members:
                s = batch.signals[i]
                reply = batch.replies[i]
                rows.append({
                    "gap_id": gap.id, "conversation_id": s.conversation_id,
                    "question": s.question, "agent_reply": s.agent_reply, "signal": s.kind,
                    "at": s.at, "embedding": _blob(batch.vectors[i]),
                    "bot_entry_id": s.bot_entry_id,
                    "reply_embedding": _blob(reply) if reply is not None else None,
                })
            touched.add(gap.id)
        session.flush()
        if rows:
            # One executemany of plain rows: an ORM object per failure costs more than the
            # insert at the scale of a full re-analysis.
            session.execute(insert(GapEvidence), rows)
        return touched, odd

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
            rejected = self._rejections(session, gap_id=gap_id)
            # A reviewer who rejected "this belongs to entry E" has said E is not the home of
            # these questions: E is not offered again, so the gap gets another proposal
            # (another entry, or a new answer) instead of the same wrong one.
            refused = {r.entry_id for r in rejected if r.entry_id}
            candidates: list[Candidate] = []
            for entry_id in dict.fromkeys(
                    [m.entry_id for m in matches[:CANDIDATES]]
                    + ([answered_with] if answered_with else []) + ([said] if said else [])):
                if entry_id in refused:
                    continue
                view = self._entry_view(session, entry_id, entries)
                if view is not None:
                    rated_entry = satisfaction.of(entry_id)
                    candidates.append(Candidate(
                        view, float(np.max(view.phrasing_vectors @ centroid)),
                        rated_entry.share if rated_entry.answered >= MIN_RATED else None))
        kind, entry = classify(evidence, candidates, bot_answered_with=answered_with,
                               poor_satisfaction=settings.medium_satisfaction / 100)
        refused_answers = [r.answer for r in rejected if r.kind == "new_answer"]
        refused_vectors = self.embedder.embed(refused_answers) if refused_answers else None
        proposal = propose(kind, evidence, entry, max_variants=settings.max_triggers,
                           refused_answers=refused_vectors)
        known = [KnownAnswer(c.entry.id, c.entry.question, c.entry.answer_vector,
                             c.entry.phrasing_vectors) for c in candidates]
        same = duplicate_of(proposal.answer_vector, known) \
            if kind == "new_answer" and proposal.answer_vector is not None else None
        if same is not None:
            # The answer would repeat an entry's: teach that entry these phrasings instead
            # of creating its twin.
            kind = "add_variants"
            entry = next(c.entry for c in candidates if c.entry.id == same.entry_id)
            proposal = propose(kind, evidence, entry, max_variants=settings.max_triggers,
                               refused_answers=refused_vectors)
        context = None if kind == "add_variants" else GapContext(
            gap_id=gap_id, kind=kind, questions=proposal.asked, agent_replies=proposal.sources,
            entry_question=entry.question if entry else None,
            entry_answer=entry.answer if entry else None,
            kb_answers=[c.entry.answer for c in candidates],
            rejected=[RejectedDraft(r.answer, r.reason or "other", r.comment)
                      for r in rejected if r.kind != "add_variants"])

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
        return SuggestionPlan(
            gap_id=gap_id, bot_id=gap.bot_id, fields=fields,
            occurrences_total=facts.occurrences_total,
            repeats_rejection=any(r.same_as(kind, proposal.entry_id, proposal.answer)
                                  for r in rejected),
            context=context, proposal=proposal, known=known, rejected=rejected)

    def _finish(self, plans: list[SuggestionPlan], *, threshold: int,
                result: CycleResult) -> dict[str, np.ndarray]:
        """Draft the answers (all gaps in one call, so an LLM generator can work on several at
        once), then check each draft before it is proposed: how well the evidence supports it,
        duplicates and contradictions in the KB, and the evidence replay."""
        drafting = [p for p in plans if p.context is not None]
        if self.generator is not None and drafting:
            started = time.perf_counter()
            drafts = self.generator.draft_all([p.context for p in drafting if p.context])
            result.generation_seconds += time.perf_counter() - started
            for plan, draft in zip(drafting, drafts, strict=True):
                self._apply_draft(plan, draft)
                result.tokens = result.tokens + draft.usage
        # Most answers are an agent's reply or the entry's answer, whose vectors are at hand;
        # only texts a generator rewrote are embedded (a full re-analysis embeds no evidence).
        known: dict[str, np.ndarray] = {}
        for p in plans:
            if p.proposal is not None and p.proposal.answer_vector is not None:
                known[p.proposal.answer] = p.proposal.answer_vector
            if p.proposal is not None and p.proposal.source_vectors is not None:
                known.update(zip(p.proposal.sources, p.proposal.source_vectors, strict=True))
        fresh = sorted({p.fields["answer"] for p in plans} - set(known))
        if fresh:
            known.update(zip(fresh, self.embedder.embed(fresh), strict=True))
        for plan in plans:
            self._check(plan, known[plan.fields["answer"]], threshold=threshold)
        for p in plans:
            if p.proposal is not None and p.proposal.asked_vectors is not None:
                known.update(zip(p.proposal.asked, p.proposal.asked_vectors, strict=True))
        return known

    def _apply_draft(self, plan: SuggestionPlan, draft: Draft) -> None:
        fields = plan.fields
        fields["answer"] = draft.answer
        notes = list(draft.warnings)
        if draft.placeholder:
            fields["confidence"] = min(fields["confidence"], NO_EVIDENCE_CONFIDENCE)
            # Whatever the generator's wording, the reviewer must write the answer.
            fields["evidence"]["needs_answer"] = True
            notes.insert(0, "No answer to propose: write it before approving.")
        elif draft.self_check is not None:
            # The LLM's own check of its draft against the evidence can only lower the score.
            fields["confidence"] = round(fields["confidence"] * (0.5 + 0.5 * draft.self_check))
        fields["evidence"]["generator"] = draft.generator
        if draft.language:
            fields["evidence"]["language"] = draft.language
        plan.repeats_rejection = any(
            r.same_as(fields["kind"], fields["entry_id"], draft.answer) for r in plan.rejected)
        self._warn(plan, *notes)

    def _check(self, plan: SuggestionPlan, vector: np.ndarray, *, threshold: int) -> None:
        fields, proposal = plan.fields, plan.proposal
        if proposal is None or proposal.asked_vectors is None:
            return
        drafted = fields["answer"] not in PLACEHOLDER_ANSWERS \
            and not fields["evidence"].get("needs_answer")
        if not drafted:
            fields["evidence"]["needs_answer"] = True
        if plan.context is not None and proposal.source_vectors is not None and drafted:
            # How much of the draft the agents' replies support: a draft far from what they
            # said is a guess, whatever the evidence's volume.
            support = float(np.max(proposal.source_vectors @ vector))
            fields["evidence"]["support"] = round(support, 3)
            fields["confidence"] = min(fields["confidence"],
                                       round(100 * min(1.0, max(0.0, (support - 0.5) / 0.4))))
        if fields["kind"] == "new_answer" and drafted:
            same = duplicate_of(vector, plan.known)
            if same is not None:
                fields["evidence"]["duplicate_of"] = same.entry_id
                self._warn(plan, f'The KB already says this in "{same.question}": consider '
                                 "adding these phrasings to that entry instead.")
        if drafted:
            clashes = contradicted_by(vector, proposal.asked_vectors, plan.known,
                                      skip=fields["entry_id"])
            if clashes:
                fields["evidence"]["contradicts"] = [c.entry_id for c in clashes]
                self._warn(plan, "May contradict: " + "; ".join(
                    f'"{c.question}" is asked alike but answered differently'
                    for c in clashes) + ".")
        try:
            asked = proposal.asked_vectors[:REPLAY_QUESTIONS]
            figures = evidence_replay(
                question_vectors=asked,
                hits=self.index.query_many(bot_id=plan.bot_id, vectors=asked, k=NEIGHBOURS),
                phrasing_vectors=proposal.new_phrasing_vectors
                if proposal.new_phrasing_vectors is not None else asked[:0],
                target=fields["entry_id"], threshold=threshold)
        except IndexUnavailable as exc:
            log.warning("evidence replay skipped for gap %s: %s", plan.gap_id, exc)
        else:
            fields["evidence"]["evidence_replay"] = figures.public()
            fields["evidence"]["evidence_replay_summary"] = figures.sentence()
        if fields["confidence"] < LOW_CONFIDENCE and "Low confidence" not in (
                fields["warning"] or ""):
            self._warn(plan, f"Low confidence ({fields['confidence']}/100): check the answer "
                             "before approving.")

    @staticmethod
    def _warn(plan: SuggestionPlan, *notes: str) -> None:
        text = " ".join(n for n in [plan.fields.get("warning"), *notes] if n)
        plan.fields["warning"] = text or None

    def _rejections(self, session: Session, *, gap_id: str) -> list[RejectedProposal]:
        """The gap's rejected suggestions, with the reviewer's reason and comment (the comment
        lives in the rejection's audit row)."""
        rows = session.exec(
            select(Suggestion.id, Suggestion.kind, Suggestion.entry_id, Suggestion.answer,
                   Suggestion.reject_reason)
            .where(Suggestion.gap_id == gap_id, Suggestion.status == "rejected")).all()
        if not rows:
            return []
        comments = {sid: (after or {}).get("comment") for sid, after in session.exec(
            select(AuditEvent.suggestion_id, AuditEvent.after).where(
                col(AuditEvent.suggestion_id).in_([r[0] for r in rows]),
                AuditEvent.action == "suggestion.rejected")).all()}
        return [RejectedProposal(kind, entry_id, answer, reason, comments.get(sid))
                for sid, kind, entry_id, answer, reason in rows]

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

    def _write_suggestion(self, session: Session, plan: SuggestionPlan, *, as_of: datetime,
                          settings: BotSettings, allowance: int | None) -> str:
        """Create or refresh the gap's one open suggestion. Returns what happened: created,
        updated, held (the plan's weekly allowance is used up), excluded (its category is
        excluded from auto-training) or skipped."""
        gap = session.get(Gap, plan.gap_id)
        assert gap is not None
        gap.kind = plan.fields["kind"]
        # A published gap stays tied to the entry it published, whatever a follow-up says.
        gap.entry_id = plan.fields["entry_id"] or (gap.entry_id if gap.status == "published"
                                                   else None)
        session.add(gap)
        # The open suggestion, wherever it sits in the gap's history (one carried over by
        # a merge or a re-analysis may be older than a withdrawn one).
        current = session.exec(select(Suggestion).where(
            Suggestion.gap_id == plan.gap_id, col(Suggestion.status).in_(OPEN_SUGGESTION))
            .order_by(col(Suggestion.created_at).desc())).first()
        excluded = plan.fields.get("category") in settings.training_excluded_categories
        if current is not None:
            # New evidence updates the open suggestion; it never adds a second one. A
            # category a person set stays.
            keep = ("category", "category_source") if current.category_source == "admin" \
                else ()
            for k, v in plan.fields.items():
                if k not in keep:
                    setattr(current, k, v)
            current.updated_at = utcnow()
            if current.category in settings.training_excluded_categories:
                current.status = "withdrawn"
                current.evidence = {**current.evidence,
                                    "withdrawn_for_category": current.category}
                session.add(current)
                return "excluded"
            session.add(current)
            return "updated"
        if gap.status == "published" and plan.fields["kind"] == "add_variants" \
                and not plan.fields["variants"]:
            # A follow-up that would add nothing to the published entry is not worth a review.
            return "skipped"
        if excluded:
            # The topic stays under manual control: its failures keep gathering in the gap
            # (metrics and a later change of settings see them) but nobody is asked.
            return "excluded"
        latest = session.exec(select(Suggestion).where(Suggestion.gap_id == plan.gap_id)
                              .order_by(col(Suggestion.created_at).desc())).first()
        if any(r.reason == OFF_TOPIC for r in plan.rejected):
            # Its failures keep joining it (so they seed no look-alike gap) and stay silent.
            return "skipped"
        if latest is not None and latest.status == "rejected":
            size_then = int((latest.evidence or {}).get("occurrences_total", 0))
            if plan.repeats_rejection and \
                    plan.occurrences_total < REJECTED_GROWTH * max(size_then, 1):
                return "skipped"
        if allowance is not None and allowance <= 0:
            return "held"
        # Stamped with the cycle's time: the plan's weekly allowance counts by it.
        session.add(Suggestion(bot_id=plan.bot_id, gap_id=plan.gap_id, status="pending",
                               created_at=as_of, updated_at=as_of, **plan.fields))
        return "created"
