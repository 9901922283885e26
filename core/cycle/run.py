"""Running a cycle for one bot: the lease, then analyse → reshape → plan → draft → write → watch."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.bots import BotSettings, bot_settings
from core.cycle import declines
from core.cycle.analyse import analyse_all, analyse_new
from core.cycle.deps import CycleDeps
from core.cycle.draft import categorise, finish
from core.cycle.plan import AnswerMatrix, answer_matrix, plan_gap
from core.cycle.reshape import close_quiet, reshape
from core.cycle.result import CycleResult
from core.cycle.write import Outcome, close_empty_gap, was_one_off, write_suggestion
from core.db import session_scope
from core.embeddings import Embedder
from core.errors import CycleRunning
from core.generation import Generator
from core.index import PhrasingIndex
from core.learning import Taught, learn
from core.metrics import THIN_DATA_CONVERSATIONS, SatisfactionBook
from core.models import Bot, Conversation, CycleRun, Gap, Suggestion, as_utc, utcnow
from core.pipeline.proposals import EntryView
from core.policy.limits import weekly_allowance
from core.policy.queue import return_deferred
from core.policy.service import Policy
from core.status import GapStatus, priority_rank

# A cycle lease (an unfinished run) older than this belongs to a process that died.
STALE_CYCLE = timedelta(hours=6)


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
        # The adapters as they are now (tests swap the embedder or generator between runs).
        deps = CycleDeps(engine=self.engine, embedder=self.embedder, index=self.index,
                         generator=self.generator, policy=self.policy)
        result = CycleResult()
        with session_scope(self.engine) as session:
            result.deferred_returned = return_deferred(session, bot_id=bot_id, as_of=as_of)
        if not settings.enabled:
            # Published changes stay watched while paused: a harmful one still gets flagged.
            result.paused = True
            self._watch(bot_id=bot_id, as_of=as_of, result=result)
            self._record(run_id, bot_id=bot_id, started=started, full=full, result=result)
            return result

        taught: list[Taught] | None = [] if settings.learn_from_agents else None
        if full:
            touched, joined, odd = analyse_all(deps, bot_id=bot_id, as_of=as_of,
                                               settings=settings, result=result,
                                               reembed=reembed, taught=taught)
        else:
            touched, joined, odd = analyse_new(deps, bot_id=bot_id, as_of=as_of,
                                               settings=settings, result=result, taught=taught)
        answers: AnswerMatrix | None = None
        if taught:
            answers = answer_matrix(deps, bot_id=bot_id)
            self._learn(bot_id=bot_id, taught=taught, answers=answers, result=result)
        with session_scope(self.engine) as session:
            touched = reshape(session, bot_id=bot_id, touched=touched, joined=joined,
                              disagreeing=odd, full=full, result=result)
        if joined or full:
            # Declined questions leave the gaps before anything is planned from them.
            with session_scope(self.engine) as session:
                # Gaps it emptied are closed: planning finds no evidence and leaves them.
                touched |= declines.sweep(session, bot_id=bot_id, result=result)
        with Session(self.engine) as session:
            allowance = weekly_allowance(session, bot_id=bot_id, settings=settings, at=as_of)
            if allowance:
                # A limited plan with room again (a new week): gaps it held back earlier get
                # their turn even if nothing new joined them.
                offered = select(Suggestion.id).where(col(Suggestion.gap_id) == Gap.id)
                touched |= set(session.exec(select(Gap.id).where(
                    Gap.bot_id == bot_id, Gap.status == GapStatus.open,
                    ~offered.exists())).all())

        with Session(self.engine) as session:
            thin = len(session.exec(
                select(Conversation.id).where(Conversation.bot_id == bot_id)
                .limit(THIN_DATA_CONVERSATIONS)).all()) < THIN_DATA_CONVERSATIONS
        entries: dict[str, EntryView | None] = {}
        if answers is None:
            answers = answer_matrix(deps, bot_id=bot_id) if touched else AnswerMatrix([], None)
        satisfaction = SatisfactionBook(self.engine, bot_id=bot_id, as_of=as_of)
        plans = [(gap_id, plan_gap(deps, gap_id=gap_id, as_of=as_of, entries=entries, thin=thin,
                                   settings=settings, satisfaction=satisfaction,
                                   answers=answers)) for gap_id in sorted(touched)]
        live = [plan for _, plan in plans if plan is not None]
        known = finish(deps, live, threshold=settings.answer_threshold, result=result)
        categorise(deps, live, bot_id=bot_id, settings=settings, vectors=known)
        for gap_id in [g for g, plan in plans if plan is None]:
            with session_scope(self.engine) as session:
                close_empty_gap(session, gap_id=gap_id)
        # Most urgent first, so a limited plan's allowance goes to what matters most.
        live.sort(key=lambda p: (priority_rank(p.fields["priority"]), -p.fields["score"],
                                 p.gap_id))
        for plan in live:
            with session_scope(self.engine) as session:
                outcome = write_suggestion(session, plan, as_of=as_of, settings=settings,
                                           allowance=allowance)
            if outcome == Outcome.created and allowance is not None:
                allowance -= 1
            result.suggestions_created += outcome == Outcome.created
            result.suggestions_updated += outcome == Outcome.updated
            result.held_by_plan += outcome == Outcome.held
            result.excluded += outcome == Outcome.excluded
            result.one_off += outcome == Outcome.one_off
            result.one_off_repeated += outcome == Outcome.created and was_one_off(plan)

        with session_scope(self.engine) as session:
            close_quiet(session, bot_id=bot_id, as_of=as_of, result=result)
        self._watch(bot_id=bot_id, as_of=as_of, result=result)
        if self.policy is not None:
            result.auto_published = len(self.policy.auto_publish(bot_id=bot_id,
                                                                 at=as_of).published)
        self._record(run_id, bot_id=bot_id, started=started, full=full, result=result)
        return result

    def _learn(self, *, bot_id: str, taught: list[Taught], answers: AnswerMatrix,
               result: CycleResult) -> None:
        """Questions the agents answered are learned (core.learning): as an entry's when
        they restated its answer, as nobody's when they said what no entry says. The index
        follows at once when the cycle has the policy's relay, else with the background
        relay."""
        with session_scope(self.engine) as session:
            changed, result.phrasings_learned = learn(
                session, bot_id=bot_id, taught=taught, entry_ids=answers.entry_ids,
                answers=answers.vectors)
        if changed and self.policy is not None:
            self.policy.index_sync.relay(bot_id=bot_id)

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
            result.gaps = len(session.exec(select(Gap.id).where(
                Gap.bot_id == bot_id, Gap.status == GapStatus.open)).all())
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
