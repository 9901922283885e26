"""The review door: the one entry point for every review channel (HTTP, Slack, email, links, CLI).

A channel resolves who acts and for which bot, then makes one call here with plain arguments
or a policy command, and renders the view it gets back. The tenant check, the queue's order,
the status vocabulary and the reading of evidence live here once; a channel never opens a
session or sees a table row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, Integer, cast, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core import kb as kb_store
from core.bots import (
    KeyScope,
    NotifyFrequency,
    authenticate,
    bot_settings,
    create_bot,
    get_bot,
    issue_key,
    revoke_key,
)
from core.cycle import Cycle, CycleResult
from core.db import session_scope
from core.embeddings import Embedder
from core.errors import NotFound
from core.generation.safety import redact_pii
from core.index import PhrasingIndex
from core.kb import IndexSync
from core.learning import learned_count
from core.metrics import THIN_DATA_CONVERSATIONS, Bucket, activated_at, compute_metrics
from core.models import (
    AuditEvent,
    Bot,
    Conversation,
    DigestSent,
    EntryWatch,
    Gap,
    GapEvidence,
    IndexOutbox,
    KBEntry,
    KBEntryVersion,
    Notification,
    NotificationDelivery,
    PostedCard,
    Suggestion,
    as_utc,
    utcnow,
)
from core.policy import notify
from core.policy.commands import (
    Actor,
    Approve,
    CreateEntry,
    Defer,
    EditAndApprove,
    Reject,
    RevertEntry,
    RollbackEntry,
    SetCategory,
    SetEntryActive,
    SetPaused,
    UndoSuggestion,
    UpdateEntry,
    UpdateSettings,
)
from core.policy.service import Policy
from core.policy.service import audit as policy_audit
from core.review.mailroom import Mailroom
from core.review.views import (
    PERIOD_DAYS,
    AnnouncementView,
    AuditView,
    BotRef,
    CategoryView,
    Decided,
    EntryHistory,
    EntryView,
    Figures,
    Outcome,
    Period,
    QuestionKind,
    QuestionsView,
    QuestionView,
    StatsView,
    SuggestionView,
    VersionView,
    WatchView,
)
from core.sandbox import SandboxAnswer, sandbox_answer
from core.status import (
    OPEN_SUGGESTION_STATUSES,
    GapStatus,
    Priority,
    SuggestionKind,
    SuggestionStatus,
    urgency_key,
)

log = logging.getLogger(__name__)

Command = (Approve | EditAndApprove | Reject | Defer | UndoSuggestion | SetCategory
           | CreateEntry | UpdateEntry | RevertEntry | RollbackEntry | SetEntryActive
           | SetPaused | UpdateSettings)
SuggestionCommand = (Approve, EditAndApprove, Reject, Defer, UndoSuggestion, SetCategory)
EntryCommand = (UpdateEntry, RevertEntry, RollbackEntry, SetEntryActive)
SAMPLES = 3
# Scheduled digests go out from this hour of the bot's own day.
DIGEST_HOUR = 9
# Audit actions that are a person's decision on a suggestion (stats count these).
DECISIONS = ("suggestion.approved", "suggestion.edited_and_approved", "suggestion.rejected",
             "suggestion.deferred")


def bot_ref(bot: Bot) -> BotRef:
    return BotRef(id=bot.id, slug=bot.slug, name=bot.name, settings=bot_settings(bot),
                  created_at=as_utc(bot.created_at))


def entry_view(entry: KBEntry) -> EntryView:
    return EntryView(id=entry.id, bot_id=entry.bot_id, question=entry.question,
                     answer=entry.answer, variants=list(entry.variants),
                     category=entry.category, active=entry.active, version=entry.version,
                     created_at=as_utc(entry.created_at), updated_at=as_utc(entry.updated_at))


def _audit_view(r: AuditEvent) -> AuditView:
    return AuditView(at=as_utc(r.at), actor=r.actor, channel=r.channel, action=r.action,
                     entry_id=r.entry_id, suggestion_id=r.suggestion_id, before=r.before,
                     after=r.after)


def _version_view(v: KBEntryVersion) -> VersionView:
    return VersionView(version=v.version, question=v.question, answer=v.answer,
                       variants=list(v.variants), category=v.category, active=v.active,
                       changed_by=v.changed_by, changed_at=as_utc(v.changed_at),
                       reason=v.reason, suggestion_id=v.suggestion_id)


def _autonomy_words(evidence: dict[str, Any]) -> str | None:
    verdict = evidence.get("autonomy")
    if not isinstance(verdict, dict):
        return None
    reason = str(verdict.get("reason") or "")
    return f"Published automatically: {reason}" if verdict.get("published") \
        else f"Not published automatically: {reason}"


def _decided(sug: Suggestion) -> Decided | None:
    """The last decision on it (a deferred suggestion back in the queue keeps its deferral)."""
    if sug.decided_by is None:
        return None
    return Decided(by=sug.decided_by, channel=sug.decided_channel,
                   at=as_utc(sug.decided_at) if sug.decided_at else None)


class Review:
    """The door. Built once per process (core.services) over the policy core."""

    def __init__(self, *, engine: Engine, policy: Policy, cycle: Cycle, index_sync: IndexSync,
                 index: PhrasingIndex, embedder: Embedder) -> None:
        self.engine = engine
        self.policy = policy
        self.cycle = cycle
        self.index_sync = index_sync
        # The answer path, for the sandbox.
        self.index = index
        self.embedder = embedder
        # The email channel's records (digest numbers, reply keys, the outgoing queue).
        self.mail = Mailroom(engine)

    # -- bots -------------------------------------------------------------------------------

    def key_holder(self, key: str, *, admin_key: str | None
                   ) -> tuple[str, str, str | None, KeyScope] | None:
        """Who holds a presented API key: (key id, key name, bot id or None for the admin,
        scope), or None when the key is unknown or revoked."""
        with Session(self.engine) as session:
            row = authenticate(session, key=key, configured_admin=admin_key)
            return None if row is None else (row.id, row.name, row.bot_id, KeyScope(row.scope))

    def bot(self, slug: str) -> BotRef:
        with Session(self.engine) as session:
            return bot_ref(get_bot(session, slug=slug))

    def bot_by_id(self, bot_id: str) -> BotRef:
        with Session(self.engine) as session:
            bot = session.get(Bot, bot_id)
            if bot is None:
                raise NotFound("bot not found")
            return bot_ref(bot)

    def bots(self, *, only: str | None = None) -> list[BotRef]:
        """Every bot, oldest first; `only`: just that bot id (a bot key sees itself)."""
        with Session(self.engine) as session:
            stmt = select(Bot).order_by(col(Bot.created_at))
            if only is not None:
                stmt = stmt.where(Bot.id == only)
            return [bot_ref(b) for b in session.exec(stmt)]

    def create_bot(self, *, slug: str, name: str) -> BotRef:
        with session_scope(self.engine) as session:
            return bot_ref(create_bot(session, slug=slug, name=name))

    def issue_key(self, bot: BotRef, *, name: str, scope: KeyScope = KeyScope.chatbot
                  ) -> tuple[str, str, str]:
        """A key for this bot's routes only, within `scope`: (id, name, the key shown once)."""
        with session_scope(self.engine) as session:
            row, key = issue_key(session, bot_id=bot.id, name=name, scope=scope)
            return row.id, row.name, key

    def revoke_key(self, bot: BotRef, *, key_id: str) -> None:
        with session_scope(self.engine) as session:
            revoke_key(session, bot_id=bot.id, key_id=key_id)

    def bot_for_slack_channel(self, channel_id: str) -> BotRef | None:
        """The bot whose review channel this is (a channel belongs to one bot), or None."""
        for bot in self.bots():
            if bot.settings.slack_channel == channel_id:
                return bot
        return None

    def owner_of(self, suggestion_id: str) -> BotRef:
        """The bot a suggestion belongs to: for callers that may act on every bot (the admin
        key, the CLI); everyone else passes their own bot and gets the tenant check."""
        with Session(self.engine) as session:
            sug = session.get(Suggestion, suggestion_id)
            bot = session.get(Bot, sug.bot_id) if sug is not None else None
            if bot is None:
                raise NotFound(f"suggestion {suggestion_id!r} not found")
            return bot_ref(bot)

    # -- the queue and its cards -----------------------------------------------------------

    def queue(self, bot: BotRef, *,
              status: SuggestionStatus | Sequence[SuggestionStatus] | None =
              SuggestionStatus.pending,
              limit: int | None = None, priority: Priority | None = None
              ) -> list[SuggestionView]:
        """Suggestions in the one priority order (core.status.urgency_key); `status` None:
        every status."""
        with Session(self.engine) as session:
            stmt = select(Suggestion).where(Suggestion.bot_id == bot.id)
            if isinstance(status, str):
                stmt = stmt.where(Suggestion.status == status)
            elif status is not None:
                stmt = stmt.where(col(Suggestion.status).in_(list(status)))
            if priority is not None:
                stmt = stmt.where(Suggestion.priority == priority)
            rows = sorted(session.exec(stmt), key=urgency_key)
            if limit is not None:
                rows = rows[:limit]
            return self._views(session, rows)

    def card(self, suggestion_id: str, *, bot: BotRef) -> SuggestionView:
        with Session(self.engine) as session:
            return self._views(session, [self._suggestion(session, suggestion_id, bot)])[0]

    @staticmethod
    def _suggestion(session: Session, suggestion_id: str, bot: BotRef) -> Suggestion:
        """The tenant check: another bot's suggestion does not exist for this caller."""
        sug = session.get(Suggestion, suggestion_id)
        if sug is None or sug.bot_id != bot.id:
            raise NotFound(f"suggestion {suggestion_id!r} not found")
        return sug

    def _views(self, session: Session, rows: list[Suggestion]) -> list[SuggestionView]:
        samples = self._samples(session, [s.gap_id for s in rows if s.gap_id])
        entry_ids = {s.entry_id for s in rows if s.entry_id}
        entries = dict(session.exec(select(KBEntry.id, KBEntry.question).where(
            col(KBEntry.id).in_(entry_ids))).all()) if entry_ids else {}
        out = []
        for s in rows:
            evidence = dict(s.evidence or {})
            out.append(SuggestionView(
                id=s.id, bot_id=s.bot_id, kind=s.kind, priority=s.priority, score=s.score,
                confidence=s.confidence, question=s.question, answer=s.answer,
                variants=list(s.variants), entry_id=s.entry_id,
                entry_question=entries.get(s.entry_id) if s.entry_id else None,
                category=s.category, category_source=s.category_source, warning=s.warning,
                reason=str(evidence.get("reason") or ""),
                samples=samples.get(s.gap_id or "", []),
                replay=evidence.get("evidence_replay_summary"),
                autonomy=_autonomy_words(evidence),
                needs_answer=bool(evidence.get("needs_answer")), status=s.status,
                created_at=as_utc(s.created_at), decided=_decided(s),
                defer_until=as_utc(s.defer_until) if s.defer_until else None,
                reject_reason=s.reject_reason,
                withdrawn_because=(str(evidence.get("withdrawn_because") or "nothing left to fix")
                                   if s.status == SuggestionStatus.withdrawn else None),
                evidence=evidence))
        return out

    @staticmethod
    def _samples(session: Session, gap_ids: list[str]) -> dict[str, list[str]]:
        """A few of each gap's customer questions, newest first, each wording once, with
        identifiers (e-mails, phones, card and account numbers) redacted: they leave the
        system in Slack messages and emails."""
        if not gap_ids:
            return {}
        ranked = select(
            GapEvidence.gap_id, GapEvidence.question,
            func.row_number().over(partition_by=GapEvidence.gap_id,
                                   order_by=(col(GapEvidence.at).desc(),
                                             col(GapEvidence.id).desc())).label("n"),
        ).where(col(GapEvidence.gap_id).in_(sorted(set(gap_ids)))).subquery()
        out: dict[str, list[str]] = {}
        for gap_id, question in session.exec(
                select(ranked.c.gap_id, ranked.c.question).where(ranked.c.n <= 4 * SAMPLES)
                .order_by(ranked.c.gap_id, ranked.c.n)).all():
            seen = out.setdefault(gap_id, [])
            text = redact_pii(" ".join(question.split()))
            if len(seen) < SAMPLES and text.lower() not in {t.lower() for t in seen}:
                seen.append(text)
        return out

    # -- commands ---------------------------------------------------------------------------

    def execute(self, command: Command, *, bot: BotRef) -> Outcome:
        """Run one policy command for `bot`. Whatever the channel, a suggestion or an entry of
        another bot is NotFound, and a bot command naming another bot too."""
        if isinstance(command, SuggestionCommand):
            with Session(self.engine) as session:
                self._suggestion(session, command.suggestion_id, bot)
            return self._on_suggestion(command, bot)
        if isinstance(command, EntryCommand):
            self._check_bot(command.bot_id, bot)
            with Session(self.engine) as session:
                kb_store.get_entry(session, bot_id=bot.id, entry_id=command.entry_id)
            return self._on_entry(command)
        if isinstance(command, CreateEntry):
            self._check_bot(command.bot_id, bot)
            created = self.policy.create_entry(command)
            return Outcome(message=f'Added "{created["question"]}" to the knowledge base.',
                           entry=self.entry(created["id"], bot=bot),
                           entry_action="entry.created")
        if isinstance(command, SetPaused):
            self._check_bot(command.bot_id, bot)
            after = self.policy.set_paused(command)
            return Outcome(message="Auto-training paused." if command.paused
                           else "Auto-training resumed.", settings=after)
        if isinstance(command, UpdateSettings):
            self._check_bot(command.bot_id, bot)
            after = self.policy.update_settings(command)
            return Outcome(message="Settings saved.", settings=after)
        raise TypeError(f"not a policy command: {type(command).__name__}")

    @staticmethod
    def _check_bot(bot_id: str, bot: BotRef) -> None:
        if bot_id != bot.id:
            raise NotFound("bot not found")

    def _on_suggestion(self, command: Any, bot: BotRef) -> Outcome:
        entry_action: str | None = None
        if isinstance(command, UndoSuggestion):
            after = self.policy.undo(command)
            entry_action = after.get("entry_action")
            message = "Undone: the entry is back to the version before." \
                if entry_action == "entry.reverted" else "Undone: the entry is switched off."
        elif isinstance(command, SetCategory):
            self.policy.set_category(command)
            message = f"Category set to {command.category}." if command.category \
                else "Category cleared."
        else:
            result = self.policy.decide(command)
            message = {
                SuggestionStatus.approved: "Approved: live now.",
                SuggestionStatus.rejected: "Rejected.",
                SuggestionStatus.deferred: "Deferred.",
            }.get(SuggestionStatus(result.status), str(result.status))
            if isinstance(command, EditAndApprove):
                message = "Edited and approved: live now."
            elif isinstance(command, Defer):
                view = self.card(command.suggestion_id, bot=bot)
                if view.defer_until is not None:
                    message = f"Deferred until {view.defer_until.date().isoformat()}."
        view = self.card(command.suggestion_id, bot=bot)
        entry = self.entry(view.entry_id, bot=bot) if view.entry_id and (
            view.status in (SuggestionStatus.approved, SuggestionStatus.undone)) else None
        if entry is not None and entry_action is None and \
                view.status == SuggestionStatus.approved:
            entry_action = "entry.created" if entry.version == 1 else "entry.updated"
        return Outcome(message=message, status=view.status, suggestion=view, entry=entry,
                       entry_action=entry_action)

    def _on_entry(self, command: Any) -> Outcome:
        if isinstance(command, UpdateEntry):
            after, message = self.policy.update_entry(command), "Entry updated."
        elif isinstance(command, RevertEntry):
            after = self.policy.revert_entry(command)
            message = f"Entry reverted to version {command.version}."
        elif isinstance(command, RollbackEntry):
            after = self.policy.rollback_entry(command)
            message = "Entry switched off." if after["entry_action"] == "entry.deactivated" \
                else "Entry rolled back to the version before."
        else:
            after = self.policy.set_entry_active(command)
            message = "Entry switched on." if command.active else "Entry switched off."
        with Session(self.engine) as session:
            entry = entry_view(kb_store.get_entry(session, bot_id=command.bot_id,
                                                  entry_id=command.entry_id))
        return Outcome(message=message, entry=entry,
                       entry_action=after.get("entry_action"))

    # -- the sandbox --------------------------------------------------------------------------

    def sandbox(self, bot: BotRef, *, question: str,
                suggestion_ids: list[str]) -> SandboxAnswer:
        """How the bot would answer `question` with these pending suggestions live, next to
        what it answers today; nothing is published."""
        return sandbox_answer(engine=self.engine, index=self.index,
                              embedder=self.embedder, bot_id=bot.id,
                              question=question, suggestion_ids=suggestion_ids,
                              threshold=bot.settings.answer_threshold)

    # -- the knowledge base --------------------------------------------------------------------

    def entries(self, bot: BotRef) -> list[EntryView]:
        with Session(self.engine) as session:
            return [entry_view(e) for e in kb_store.list_entries(session, bot_id=bot.id)]

    def entry(self, entry_id: str, *, bot: BotRef) -> EntryView:
        with Session(self.engine) as session:
            return entry_view(kb_store.get_entry(session, bot_id=bot.id, entry_id=entry_id))

    def find_entry(self, bot: BotRef, ref: str) -> EntryView:
        """An entry as a person names it in a command: its id, the start of its id (6+
        characters, as cards and history show it), or words of its question (the best match;
        NotFound naming the closest ones when several match equally)."""
        ref = ref.strip()
        if not ref:
            raise NotFound("name an entry: its id or words of its question")
        entries = self.entries(bot)
        exact = [e for e in entries if e.id == ref]
        if exact:
            return exact[0]
        if len(ref) >= 6 and " " not in ref:
            by_prefix = [e for e in entries if e.id.startswith(ref.lower())]
            if len(by_prefix) == 1:
                return by_prefix[0]
        words = {w for w in ref.lower().split() if len(w) > 2}
        if not words:
            raise NotFound(f"no entry {ref!r}")
        scored = sorted(((len(words & set(e.question.lower().replace("?", " ").split())), e)
                         for e in entries), key=lambda p: -p[0])
        if not scored or scored[0][0] == 0:
            raise NotFound(f"no entry matches {ref!r}")
        best = [e for n, e in scored if n == scored[0][0]]
        if len(best) > 1:
            names = "; ".join(f'{e.id[:8]} "{e.question}"' for e in best[:3])
            raise NotFound(f"{ref!r} matches several entries: {names} — use the id")
        return best[0]

    def history(self, entry_id: str, *, bot: BotRef, audit_limit: int = 50) -> EntryHistory:
        """An entry, its versions (oldest first) and the audit of its changes (newest first)."""
        with Session(self.engine) as session:
            entry = kb_store.get_entry(session, bot_id=bot.id, entry_id=entry_id)
            versions = [_version_view(v)
                        for v in kb_store.list_versions(session, entry_id=entry.id)]
        return EntryHistory(entry=entry_view(entry), versions=versions,
                            audit=self.audit(bot, entry_id=entry_id, limit=audit_limit))

    # -- stats --------------------------------------------------------------------------------

    def stats(self, bot: BotRef, period: Period = Period.week, *,
              at: datetime | None = None) -> StatsView:
        """This period (the last day, 7 or 30 days up to `at`) against the one before."""
        end = as_utc(at) if at else utcnow()
        span = timedelta(days=PERIOD_DAYS[period])
        with Session(self.engine) as session:
            current = self._figures(session, bot.id, end - span, end)
            previous = self._figures(session, bot.id, end - 2 * span, end - span)
            pending = session.exec(select(Suggestion.priority, func.count()).where(
                Suggestion.bot_id == bot.id, Suggestion.status == SuggestionStatus.pending)
                .group_by(Suggestion.priority)).all()
        counts = {p: int(n) for p, n in pending}
        return StatsView(bot_slug=bot.slug, period=period, current=current, previous=previous,
                         pending=sum(counts.values()),
                         critical_pending=counts.get(Priority.critical, 0))

    @staticmethod
    def _figures(session: Session, bot_id: str, start: datetime, end: datetime) -> Figures:
        n, resolved, escalated, negative, csat = session.exec(select(
            func.count(), func.sum(cast(Conversation.resolved_automatically, Integer)),
            func.sum(cast(Conversation.escalated, Integer)),
            func.sum(cast(Conversation.negative_feedback, Integer)),
            func.avg(Conversation.csat),
        ).where(Conversation.bot_id == bot_id, col(Conversation.started_at) >= start,
                col(Conversation.started_at) < end)).one()
        n = int(n or 0)
        actions = dict(session.exec(select(AuditEvent.action, func.count()).where(
            AuditEvent.bot_id == bot_id, col(AuditEvent.at) >= start, col(AuditEvent.at) < end,
            col(AuditEvent.action).in_((*DECISIONS, "suggestion.auto_published")))
            .group_by(AuditEvent.action)).all())

        def rate(k: int) -> float | None:
            return round(k / n, 4) if n else None

        def kept_out(kind: QuestionKind) -> int:
            return int(session.exec(select(func.count()).select_from(GapEvidence).where(
                *Review._kept_out(bot_id, kind, start, end))).one())

        return Figures(start=start, end=end, conversations=n,
                       resolution_rate=rate(int(resolved or 0)),
                       escalations=int(escalated or 0), escalation_rate=rate(int(escalated or 0)),
                       negative_feedback=int(negative or 0),
                       negative_feedback_rate=rate(int(negative or 0)),
                       csat=round(float(csat), 2) if csat is not None else None,
                       suggestions_decided=sum(int(actions.get(a, 0)) for a in DECISIONS),
                       auto_published=int(actions.get("suggestion.auto_published", 0)),
                       one_off_questions=kept_out(QuestionKind.one_off),
                       declined_questions=kept_out(QuestionKind.declined))

    def questions(self, bot: BotRef, kind: QuestionKind, *, days: int = 7, limit: int = 100,
                  at: datetime | None = None) -> QuestionsView:
        """Failed questions of the last `days` kept out of the queue: one-off questions (their
        gap has one conversation and no suggestion) or those the agents declined with a stock
        refusal. Newest first, identifiers redacted."""
        end = as_utc(at) if at else utcnow()
        start = end - timedelta(days=days)
        with Session(self.engine) as session:
            window = self._kept_out(bot.id, kind, start, end)
            total = int(session.exec(select(func.count()).select_from(GapEvidence)
                                     .where(*window)).one())
            rows = session.exec(
                select(GapEvidence.question, GapEvidence.at, GapEvidence.signal,
                       GapEvidence.agent_reply, Conversation.external_id, Conversation.id)
                .join(Conversation, col(Conversation.id) == col(GapEvidence.conversation_id))
                .where(*window)
                .order_by(col(GapEvidence.at).desc(), col(GapEvidence.id).desc())
                .limit(limit)).all()
        return QuestionsView(kind=kind, days=days, total=total, items=[
            QuestionView(question=redact_pii(" ".join(q.split())), at=as_utc(when),
                         signal=signal, conversation_id=external or cid,
                         agent_reply=redact_pii(reply) if reply else None)
            for q, when, signal, reply, external, cid in rows])

    @staticmethod
    def _kept_out(bot_id: str, kind: QuestionKind, start: datetime, end: datetime
                  ) -> tuple[Any, ...]:
        """Where-clauses on GapEvidence: the bot's one-off or declined questions asked in
        [start, end]. One-off: an open gap with one conversation, no open suggestion, and not
        an entry's unrecognised phrasing (those are proposed)."""
        if kind is QuestionKind.declined:
            gaps = select(Gap.id).where(Gap.bot_id == bot_id, Gap.status == GapStatus.declined)
        else:
            offered = select(Suggestion.id).where(
                col(Suggestion.gap_id) == Gap.id,
                col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))
            single = select(GapEvidence.gap_id).group_by(GapEvidence.gap_id).having(
                func.count(func.distinct(GapEvidence.conversation_id)) == 1)
            gaps = select(Gap.id).where(
                Gap.bot_id == bot_id, Gap.status == GapStatus.open,
                Gap.kind != SuggestionKind.add_variants, ~offered.exists(),
                col(Gap.id).in_(single))
        return (col(GapEvidence.gap_id).in_(gaps), col(GapEvidence.at) >= start,
                col(GapEvidence.at) <= end)

    def metrics(self, bot: BotRef, *, bucket: Bucket) -> dict[str, Any]:
        buckets = compute_metrics(self.engine, bot_id=bot.id, bucket=bucket)
        total = sum(b["conversations"] for b in buckets)
        return {"buckets": buckets, "activated_at": activated_at(self.engine, bot_id=bot.id),
                "thin_data": total < THIN_DATA_CONVERSATIONS}

    # -- announcements and their delivery per channel -------------------------------------------

    def pending_announcements(self, bot: BotRef, channel: str, *,
                              limit: int = 100) -> list[AnnouncementView]:
        """What `channel` has not delivered yet, oldest first. Each channel delivers each
        announcement once: Slack showing one does not keep it out of the next digest."""
        with Session(self.engine) as session:
            rows = notify.undelivered(session, bot_id=bot.id, channel=channel, limit=limit)
            return self._announcements(session, rows)

    def mark_delivered(self, bot: BotRef, channel: str, ids: Sequence[int], *,
                       at: datetime | None = None) -> None:
        with session_scope(self.engine) as session:
            mine = list(session.exec(select(Notification.id).where(
                col(Notification.id).in_(list(ids)), Notification.bot_id == bot.id)).all())
            notify.mark_delivered(session, ids=[i for i in mine if i is not None],
                                  channel=channel, at=at)

    def announcements(self, bot: BotRef, *, undelivered: bool = False,
                      channel: str | None = None, limit: int = 100) -> list[AnnouncementView]:
        """Newest first. `undelivered`: only those not delivered on `channel` (or, without a
        channel, on no channel at all)."""
        with Session(self.engine) as session:
            stmt = select(Notification).where(Notification.bot_id == bot.id)
            if undelivered:
                done = select(NotificationDelivery.notification_id).where(
                    NotificationDelivery.notification_id == Notification.id)
                if channel is not None:
                    done = done.where(NotificationDelivery.channel == channel)
                stmt = stmt.where(~done.exists())
            rows = list(session.exec(stmt.order_by(col(Notification.created_at).desc(),
                                                   col(Notification.id).desc()).limit(limit)))
            return self._announcements(session, rows)

    def announcement(self, announcement_id: int, *, bot: BotRef) -> AnnouncementView:
        """One announcement of `bot` (another bot's is NotFound, as for suggestions)."""
        with Session(self.engine) as session:
            row = session.get(Notification, announcement_id)
            if row is None or row.bot_id != bot.id:
                raise NotFound(f"announcement {announcement_id} not found")
            return self._announcements(session, [row])[0]

    @staticmethod
    def _announcements(session: Session, rows: list[Notification]) -> list[AnnouncementView]:
        ids = [r.id for r in rows if r.id is not None]
        delivered: dict[int, dict[str, datetime]] = {}
        if ids:
            for nid, channel, when in session.exec(select(
                    NotificationDelivery.notification_id, NotificationDelivery.channel,
                    NotificationDelivery.delivered_at).where(
                    col(NotificationDelivery.notification_id).in_(ids))).all():
                delivered.setdefault(nid, {})[channel] = as_utc(when)
        return [AnnouncementView(id=r.id or 0, kind=r.kind, text=r.text,
                                 suggestion_id=r.suggestion_id, entry_id=r.entry_id,
                                 payload=dict(r.payload), created_at=as_utc(r.created_at),
                                 delivered=delivered.get(r.id or 0, {})) for r in rows]

    # -- cards posted on a channel -------------------------------------------------------------

    def unposted(self, bot: BotRef, channel: str, *,
                 priority: Priority | None = None) -> list[SuggestionView]:
        """Pending suggestions without a card on `channel` yet, in the queue's order."""
        with Session(self.engine) as session:
            posted = select(PostedCard.suggestion_id).where(
                PostedCard.suggestion_id == Suggestion.id, PostedCard.channel == channel)
            stmt = select(Suggestion).where(Suggestion.bot_id == bot.id,
                                            Suggestion.status == SuggestionStatus.pending,
                                            ~posted.exists())
            if priority is not None:
                stmt = stmt.where(Suggestion.priority == priority)
            return self._views(session, sorted(session.exec(stmt), key=urgency_key))

    def unposted_count(self, bot: BotRef, channel: str) -> int:
        """How many pending suggestions have no card on `channel` yet."""
        with Session(self.engine) as session:
            posted = select(PostedCard.suggestion_id).where(
                PostedCard.suggestion_id == Suggestion.id, PostedCard.channel == channel)
            return int(session.exec(select(func.count()).select_from(Suggestion).where(
                Suggestion.bot_id == bot.id, Suggestion.status == SuggestionStatus.pending,
                ~posted.exists())).one())

    def record_post(self, bot: BotRef, view: SuggestionView, *, channel: str, address: str,
                    ref: str, message: str = "card") -> bool:
        """Remember where a card was posted (`message`: "card", or "digest" for a card inside
        a digest message). False when one was already recorded (the caller then deletes its
        duplicate): a card is never shown twice."""
        if view.bot_id != bot.id:
            raise NotFound(f"suggestion {view.id!r} not found")
        try:
            with session_scope(self.engine) as session:
                session.add(PostedCard(suggestion_id=view.id, channel=channel, bot_id=bot.id,
                                       address=address, ref=ref, message=message,
                                       shown_status=view.status))
        except IntegrityError:
            return False
        return True

    def posted(self, suggestion_id: str, *, channel: str) -> tuple[str, str, str] | None:
        """(address, ref, message kind) of the suggestion's card on `channel`, if posted."""
        with Session(self.engine) as session:
            row = session.get(PostedCard, (suggestion_id, channel))
            return (row.address, row.ref, row.message) if row is not None else None

    def message_cards(self, *, channel: str, address: str, ref: str) -> list[SuggestionView]:
        """The cards one message shows (a digest shows several), in the queue's order."""
        with Session(self.engine) as session:
            rows = session.exec(select(Suggestion).join(
                PostedCard, col(PostedCard.suggestion_id) == Suggestion.id).where(
                PostedCard.channel == channel, PostedCard.address == address,
                PostedCard.ref == ref)).all()
            return self._views(session, sorted(rows, key=urgency_key))

    def stale_cards(self, bot: BotRef, channel: str, *,
                    limit: int = 100) -> list[tuple[SuggestionView, str, str, str]]:
        """Posted cards whose suggestion changed since (decided on another channel, withdrawn,
        back from a deferral): (fresh view, address, ref, message kind) for each."""
        with Session(self.engine) as session:
            rows = session.exec(select(PostedCard, Suggestion).join(
                Suggestion, col(Suggestion.id) == PostedCard.suggestion_id).where(
                PostedCard.bot_id == bot.id, PostedCard.channel == channel,
                col(PostedCard.shown_status) != col(Suggestion.status)).limit(limit)).all()
            views = {v.id: v for v in self._views(session, [s for _, s in rows])}
            return [(views[s.id], p.address, p.ref, p.message) for p, s in rows]

    def digest_due(self, bot: BotRef, channel: str, *, at: datetime | None = None
                   ) -> str | None:
        """The period whose scheduled digest is due on `channel` and not yet sent, or None.
        `notify_frequency` daily: each day from DIGEST_HOUR in the bot's timezone; weekly:
        each week from Monday DIGEST_HOUR (a week that started before the bot existed gets
        its digest at once); critical_only: never (critical cards are posted as found)."""
        local = as_utc(at or utcnow()).astimezone(ZoneInfo(bot.settings.timezone))
        frequency = bot.settings.notify_frequency
        if frequency == NotifyFrequency.daily:
            period = local.date().isoformat()
            if local.hour < DIGEST_HOUR:
                return None
        elif frequency == NotifyFrequency.weekly:
            year, week, weekday = local.isocalendar()
            period = f"{year}-W{week:02d}"
            if weekday == 1 and local.hour < DIGEST_HOUR:
                return None
        else:
            return None
        with Session(self.engine) as session:
            sent = session.exec(select(DigestSent.id).where(
                DigestSent.bot_id == bot.id, DigestSent.channel == channel,
                DigestSent.period == period)).first()
        return None if sent is not None else period

    def record_digest(self, bot: BotRef, channel: str, period: str) -> bool:
        """Claim a period's digest; False if another process already sent it."""
        try:
            with session_scope(self.engine) as session:
                session.add(DigestSent(bot_id=bot.id, channel=channel, period=period))
        except IntegrityError:
            return False
        return True

    def card_shown(self, suggestion_id: str, *, channel: str, status: str) -> None:
        """The card on `channel` now shows `status`."""
        with session_scope(self.engine) as session:
            row = session.get(PostedCard, (suggestion_id, channel))
            if row is not None and row.shown_status != status:
                row.shown_status = status
                session.add(row)

    def refused(self, bot: BotRef, actor: Actor, *, what: str,
                suggestion_id: str | None = None, entry_id: str | None = None) -> None:
        """Audit an attempt by someone who may not decide (the refusal itself changes
        nothing, but an admin should see who tried)."""
        with session_scope(self.engine) as session:
            policy_audit(session, bot_id=bot.id, actor=actor, action="review.refused",
                         suggestion_id=suggestion_id, entry_id=entry_id,
                         after={"attempted": what})

    # -- audit, watches, categories, the cycle, the index --------------------------------------

    def audit(self, bot: BotRef, *, entry_id: str | None = None,
              suggestion_id: str | None = None, action: str | None = None,
              limit: int = 1_000) -> list[AuditView]:
        """Every change, newest first."""
        with Session(self.engine) as session:
            stmt = select(AuditEvent).where(AuditEvent.bot_id == bot.id)
            if entry_id:
                stmt = stmt.where(AuditEvent.entry_id == entry_id)
            if suggestion_id:
                stmt = stmt.where(AuditEvent.suggestion_id == suggestion_id)
            if action:
                stmt = stmt.where(AuditEvent.action == action)
            return [_audit_view(r) for r in session.exec(
                stmt.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
                .limit(limit))]

    def watches(self, bot: BotRef, *, entry_id: str | None = None,
                status: str | None = None) -> list[WatchView]:
        """Published changes under watch and what the watch concluded, newest first."""
        with Session(self.engine) as session:
            stmt = select(EntryWatch).where(EntryWatch.bot_id == bot.id)
            if entry_id:
                stmt = stmt.where(EntryWatch.entry_id == entry_id)
            if status:
                stmt = stmt.where(EntryWatch.status == status)
            return [WatchView(
                id=w.id, entry_id=w.entry_id, suggestion_id=w.suggestion_id,
                from_version=w.from_version, to_version=w.to_version, auto=w.auto,
                started_at=as_utc(w.started_at), ends_at=as_utc(w.ends_at), status=w.status,
                baseline={"answered": w.baseline_answered, "satisfied": w.baseline_satisfied,
                          "negative": w.baseline_negative},
                checked_at=as_utc(w.checked_at) if w.checked_at else None, result=w.result)
                for w in session.exec(stmt.order_by(col(EntryWatch.started_at).desc()))]

    @staticmethod
    def categories(bot: BotRef) -> list[CategoryView]:
        s = bot.settings
        return [CategoryView(name=c.name, description=c.description, keywords=list(c.keywords),
                             builtin=c.builtin,
                             excluded_from_auto_publish=c.name in s.excluded_categories,
                             excluded_from_training=c.name in s.training_excluded_categories)
                for c in s.categories()]

    def run_cycle(self, bot: BotRef, *, as_of: datetime | None = None, full: bool = False,
                  reembed: bool = False) -> CycleResult:
        """Analyse new conversations and refresh the queue now (`full`: re-analyse all)."""
        return self.cycle.run(bot_id=bot.id, as_of=as_of, full=full, reembed=reembed)

    def index_health(self, bot: BotRef) -> dict[str, Any]:
        """Drift between SQL (the truth) and the vector index, entry changes not yet relayed
        to it, and how many of the phrasings come from the agents (core.learning)."""
        report = self.index_sync.reconcile(bot_id=bot.id)
        with Session(self.engine) as session:
            report["pending_outbox"] = int(session.exec(
                select(func.count()).select_from(IndexOutbox).where(
                    IndexOutbox.bot_id == bot.id, col(IndexOutbox.processed_at).is_(None))
            ).one())
            report["learned_phrasings"] = learned_count(session, bot_id=bot.id)
            report["nobody_phrasings"] = learned_count(session, bot_id=bot.id, nobody=True)
        return report
