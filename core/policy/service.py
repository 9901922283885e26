"""Executes policy commands: each is one transaction with its audit row, then the index sync."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from core import learning
from core.bots import Autonomy, BotSettings, bot_settings, merge_settings
from core.db import session_scope
from core.errors import AlreadyDecided, Conflict, InvalidInput, NotFound
from core.kb import IndexSync, change_entry, entry_public, get_entry, insert_entry, list_versions
from core.models import (
    AuditEvent,
    Bot,
    EntryWatch,
    Gap,
    GapEvidence,
    KBEntry,
    Suggestion,
    as_utc,
    utcnow,
)
from core.pipeline.proposals import PLACEHOLDER_ANSWERS
from core.policy import queue
from core.policy.autonomy import auto_publish_verdict, risk_rank
from core.policy.commands import (
    Actor,
    Approve,
    Channel,
    CreateEntry,
    Decision,
    Defer,
    EditAndApprove,
    Reject,
    RejectReason,
    RevertEntry,
    RollbackEntry,
    SetCategory,
    SetEntryActive,
    SetPaused,
    UndoSuggestion,
    UpdateEntry,
    UpdateSettings,
)
from core.policy.limits import AUTO_ACTOR, auto_published_on
from core.policy.notify import NotificationKind, announce
from core.policy.watch import (
    Finding,
    end_watches,
    entry_record,
    evaluate,
    start_watch,
)
from core.status import (
    OPEN_SUGGESTION_STATUSES,
    PUBLISHED_SUGGESTION_STATUSES,
    GapStatus,
    Priority,
    SuggestionKind,
    SuggestionStatus,
    WatchStatus,
    urgency_key,
)

log = logging.getLogger(__name__)

DEFAULT_DEFER = timedelta(days=7)
AUTO = Actor(name=AUTO_ACTOR, channel=Channel.auto)
STATUS_WORDS = {SuggestionStatus.auto_published: "published automatically"}
WATCH = Actor(name=f"{AUTO_ACTOR} watch", channel=Channel.auto)


@dataclass(frozen=True)
class DecisionResult:
    status: str
    entry_id: str | None
    entry_version: int | None


@dataclass
class AutoPublishReport:
    published: list[str] = field(default_factory=list)  # suggestion ids
    held: dict[str, str] = field(default_factory=dict)  # suggestion id → why a person decides


@dataclass
class WatchReport:
    checked: int = 0
    passed: int = 0
    alerted: list[str] = field(default_factory=list)  # rollback suggestions raised
    rolled_back: list[str] = field(default_factory=list)  # entries rolled back automatically


def audit(session: Session, *, bot_id: str, actor: Actor, action: str,
          entry_id: str | None = None, suggestion_id: str | None = None,
          before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
    session.add(AuditEvent(bot_id=bot_id, actor=actor.name, channel=actor.channel.value,
                           action=action, entry_id=entry_id, suggestion_id=suggestion_id,
                           before=before, after=after))


class Policy:
    """The one place where the knowledge base and review state change."""

    def __init__(self, *, engine: Engine, index_sync: IndexSync) -> None:
        self.engine = engine
        self.index_sync = index_sync

    def _after_commit(self, *bot_ids: str) -> None:
        # Make the change visible to `answer` before the call returns; if the index is down
        # the outbox keeps the change and the background relay retries. Only the bots this
        # command changed: another bot's backlog is the background relay's work.
        for bot_id in dict.fromkeys(bot_ids):
            self.index_sync.relay(bot_id=bot_id)

    # -- knowledge base -----------------------------------------------------------------

    def create_entry(self, cmd: CreateEntry) -> dict[str, Any]:
        return self.create_entries([cmd])[0]

    def create_entries(self, cmds: list[CreateEntry]) -> list[dict[str, Any]]:
        """Create several entries in one transaction: all of them, or none if one is invalid."""
        created: list[dict[str, Any]] = []
        with session_scope(self.engine) as session:
            for cmd in cmds:
                entry = insert_entry(session, bot_id=cmd.bot_id, question=cmd.question,
                                     answer=cmd.answer, variants=cmd.variants,
                                     category=cmd.category, changed_by=cmd.actor.name,
                                     reason="created")
                after = entry_public(entry)
                audit(session, bot_id=cmd.bot_id, actor=cmd.actor, action="entry.created",
                      entry_id=entry.id, after=after)
                created.append(after)
        self._after_commit(*(cmd.bot_id for cmd in cmds))
        return created

    def _write_version(self, session: Session, *, entry: KBEntry, actor: Actor, action: str,
                       reason: str, **changes: Any) -> dict[str, Any]:
        """A new version of `entry` with `changes`, and its one audit row."""
        before = entry_public(entry)
        change_entry(session, entry=entry, changed_by=actor.name, reason=reason, **changes)
        after = entry_public(entry)
        audit(session, bot_id=entry.bot_id, actor=actor, action=action, entry_id=entry.id,
              before=before, after=after)
        return after

    def update_entry(self, cmd: UpdateEntry) -> dict[str, Any]:
        now = utcnow()
        with session_scope(self.engine) as session:
            entry = get_entry(session, bot_id=cmd.bot_id, entry_id=cmd.entry_id)
            was = entry.version
            said = (entry.answer, list(entry.variants))
            after = self._write_version(
                session, entry=entry, actor=cmd.actor, action="entry.updated",
                reason=cmd.reason or "edited", question=cmd.question, answer=cmd.answer,
                variants=cmd.variants, category=cmd.category)
            if (entry.answer, list(entry.variants)) != said:
                # What customers are told changed: watch it like an approved suggestion.
                start_watch(session, bot_id=entry.bot_id, entry_id=entry.id, from_version=was,
                            to_version=entry.version, suggestion_id=None, auto=False, at=now,
                            settings=self._settings(session, entry.bot_id))
        self._after_commit(cmd.bot_id)
        return after

    def revert_entry(self, cmd: RevertEntry) -> dict[str, Any]:
        with session_scope(self.engine) as session:
            entry = get_entry(session, bot_id=cmd.bot_id, entry_id=cmd.entry_id)
            target = next((v for v in list_versions(session, entry_id=entry.id)
                           if v.version == cmd.version), None)
            if target is None:
                raise NotFound(f"entry {entry.id!r} has no version {cmd.version}")
            after = self._write_version(
                session, entry=entry, actor=cmd.actor, action="entry.reverted",
                reason=f"reverted to version {cmd.version}", question=target.question,
                answer=target.answer, variants=list(target.variants),
                category=target.category or "", active=target.active)
            end_watches(session, entry_id=entry.id, at=utcnow())
        self._after_commit(cmd.bot_id)
        return after

    def rollback_entry(self, cmd: RollbackEntry) -> dict[str, Any]:
        """Back to the version before the latest one (switched off if there is none)."""
        with session_scope(self.engine) as session:
            entry = get_entry(session, bot_id=cmd.bot_id, entry_id=cmd.entry_id)
            if entry.version == 1 and not entry.active:
                raise Conflict(f"entry {entry.id!r} has no earlier version and is already off")
            before = entry_public(entry)
            action = _roll_back(session, entry=entry, actor=cmd.actor,
                                reason=f"rolled back from version {entry.version}",
                                to_version=entry.version - 1 if entry.version > 1 else None,
                                suggestion_id=None)
            end_watches(session, entry_id=entry.id, at=utcnow())
            after = {**entry_public(entry), "entry_action": action}
            audit(session, bot_id=entry.bot_id, actor=cmd.actor, action="entry.rolled_back",
                  entry_id=entry.id, before=before, after=after)
        self._after_commit(cmd.bot_id)
        return after

    def set_entry_active(self, cmd: SetEntryActive) -> dict[str, Any]:
        with session_scope(self.engine) as session:
            entry = get_entry(session, bot_id=cmd.bot_id, entry_id=cmd.entry_id)
            after = entry_public(entry)
            if entry.active != cmd.active:
                after = self._write_version(
                    session, entry=entry, actor=cmd.actor,
                    action="entry.reactivated" if cmd.active else "entry.deactivated",
                    reason="reactivated" if cmd.active else "deactivated", active=cmd.active)
                end_watches(session, entry_id=entry.id, at=utcnow())
        self._after_commit(cmd.bot_id)
        return after

    # -- settings -------------------------------------------------------------------------

    def update_settings(self, cmd: UpdateSettings) -> dict[str, Any]:
        with session_scope(self.engine) as session:
            bot = session.get(Bot, cmd.bot_id)
            if bot is None:
                raise NotFound("bot not found")
            before = bot_settings(bot).model_dump(mode="json")
            after = merge_settings(bot_settings(bot), cmd.patch).model_dump(mode="json")
            relearn = False
            channel = after.get("slack_channel")
            if channel and channel != before.get("slack_channel"):
                # A Slack channel reviews one bot: its cards and commands must not mix bots.
                for other in session.exec(select(Bot).where(Bot.id != bot.id)):
                    if bot_settings(other).slack_channel == channel:
                        raise InvalidInput(f"Slack channel {channel} already reviews bot "
                                           f"{other.slug!r}; a channel belongs to one bot",
                                           field="slack_channel")
            if after != before:
                bot.settings = after
                session.add(bot)
                changed = {k for k in after if after[k] != before.get(k)}
                audit(session, bot_id=bot.id, actor=cmd.actor, action="settings.updated",
                      before={k: before.get(k) for k in changed},
                      after={k: after[k] for k in changed})
                if "enabled" in changed:
                    # Pausing through the settings is still a pause the reviewers hear of.
                    _announce_pause(session, bot_id=bot.id, paused=not after["enabled"],
                                    actor=cmd.actor)
                relearn = "learn_from_agents" in changed
                if relearn:
                    learning.relearn(session, bot_id=bot.id)
        if after != before and relearn:
            # What the bot learned from its agents leaves (or rejoins) the index at once.
            self._after_commit(cmd.bot_id)
        return after

    def set_paused(self, cmd: SetPaused) -> dict[str, Any]:
        """Pause or resume auto-training: one audit row, and the reviewers are told."""
        with session_scope(self.engine) as session:
            bot = session.get(Bot, cmd.bot_id, with_for_update=True)
            if bot is None:
                raise NotFound("bot not found")
            current = bot_settings(bot)
            if current.enabled != cmd.paused:
                raise Conflict(f"auto-training is already {'paused' if cmd.paused else 'on'}")
            after = merge_settings(current, {"enabled": not cmd.paused}).model_dump(mode="json")
            bot.settings = after
            session.add(bot)
            action = "autotraining.paused" if cmd.paused else "autotraining.resumed"
            audit(session, bot_id=bot.id, actor=cmd.actor, action=action,
                  before={"enabled": current.enabled}, after={"enabled": not cmd.paused})
            _announce_pause(session, bot_id=bot.id, paused=cmd.paused, actor=cmd.actor)
            return after

    def set_category(self, cmd: SetCategory) -> Suggestion:
        """Correct a suggestion's category. A suggestion moved into a category excluded from
        auto-training entirely is withdrawn from the queue."""
        with session_scope(self.engine) as session:
            sug = session.get(Suggestion, cmd.suggestion_id)
            if sug is None:
                raise NotFound(f"suggestion {cmd.suggestion_id!r} not found")
            settings = self._settings(session, sug.bot_id)
            name = cmd.category.strip().lower() if cmd.category else None
            if name is not None:
                _known_category(settings, name)
            before = {"category": sug.category, "status": sug.status}
            sug.category = name
            sug.category_source = "admin"
            now = utcnow()
            if name in settings.training_excluded_categories:
                queue.withdraw(session, sug, because=queue.excluded_category(name), at=now,
                               category=name)
            else:
                # A correction undone: the suggestion comes back to the queue.
                queue.restore(session, sug, at=now)
            sug.updated_at = now
            session.add(sug)
            audit(session, bot_id=sug.bot_id, actor=cmd.actor, action="suggestion.category_set",
                  suggestion_id=sug.id, entry_id=sug.entry_id, before=before,
                  after={"category": name, "status": sug.status})
            return sug

    @staticmethod
    def _settings(session: Session, bot_id: str) -> BotSettings:
        bot = session.get(Bot, bot_id)
        if bot is None:
            raise NotFound("bot not found")
        return bot_settings(bot)

    # -- decisions --------------------------------------------------------------------------

    def decide(self, cmd: Decision) -> DecisionResult:
        """Record one decision. Exactly one of several concurrent decisions wins; the others
        get AlreadyDecided naming who decided and when."""
        now = as_utc(cmd.at) if cmd.at else utcnow()
        with session_scope(self.engine) as session:
            result = self._decide_in(session, cmd, now)
            decided = session.get(Suggestion, cmd.suggestion_id)
            bot_id = decided.bot_id if decided is not None else None
            # A rejection of an entry's suggestion may have blocked learned phrasings.
            unlearned = isinstance(cmd, Reject) and decided is not None \
                and decided.entry_id is not None
        if (result.entry_id is not None or unlearned) and bot_id is not None:
            self._after_commit(bot_id)
        return result

    def _decide_in(self, session: Session, cmd: Decision, now: datetime,
                   *, auto_reason: str | None = None) -> DecisionResult:
        new_status = SuggestionStatus.auto_published if auto_reason else {
            Approve: SuggestionStatus.approved, EditAndApprove: SuggestionStatus.approved,
            Reject: SuggestionStatus.rejected, Defer: SuggestionStatus.deferred}[type(cmd)]
        sug = session.get(Suggestion, cmd.suggestion_id)
        if sug is None:
            raise NotFound(f"suggestion {cmd.suggestion_id!r} not found")
        values: dict[str, Any] = {
            "status": new_status, "decided_at": now, "decided_by": cmd.actor.name,
            "decided_channel": cmd.actor.channel.value, "updated_at": now,
        }
        if isinstance(cmd, Defer):
            until = as_utc(cmd.until) if cmd.until else now + DEFAULT_DEFER
            if until <= now:
                raise InvalidInput("a suggestion can only be deferred to a later time",
                                   field="until")
            values["defer_until"] = until
        if isinstance(cmd, Reject):
            values["reject_reason"] = cmd.reason.value
        if isinstance(cmd, Approve) and (sug.answer in PLACEHOLDER_ANSWERS
                                         or (sug.evidence or {}).get("needs_answer")):
            raise InvalidInput("this suggestion has no answer yet: use edit with an answer",
                               field="answer")
        # The conditional update is the lock: whoever flips the status first wins.
        won = session.execute(
            update(Suggestion)
            .where(col(Suggestion.id) == sug.id,
                   col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            session.rollback()
            session.expire_all()
            current = session.get(Suggestion, cmd.suggestion_id)
            assert current is not None
            who, when = _closed_by(session, current)
            raise AlreadyDecided(
                f"already {STATUS_WORDS.get(current.status, current.status)} by {who} at "
                f"{when.isoformat() if when else 'an earlier time'}")
        session.refresh(sug)
        return self._apply(session, sug, cmd, now, auto_reason=auto_reason)

    def _apply(self, session: Session, sug: Suggestion, cmd: Decision, now: datetime,
               *, auto_reason: str | None = None) -> DecisionResult:
        actor = cmd.actor
        gap = session.get(Gap, sug.gap_id) if sug.gap_id else None
        if isinstance(cmd, Reject):
            if gap is not None:
                gap.status = GapStatus.rejected
                session.add(gap)
            if sug.entry_id and (sug.kind == SuggestionKind.add_variants
                                 or cmd.reason == RejectReason.not_a_gap):
                # "These questions are not this entry's": what the bot learned of them from
                # the agents for this entry is blocked too (core.learning).
                _unlearn(session, sug)
            audit(session, bot_id=sug.bot_id, actor=actor, action="suggestion.rejected",
                  suggestion_id=sug.id, entry_id=sug.entry_id,
                  after={"reason": cmd.reason.value, "comment": cmd.comment})
            return DecisionResult(SuggestionStatus.rejected, None, None)
        if isinstance(cmd, Defer):
            audit(session, bot_id=sug.bot_id, actor=actor, action="suggestion.deferred",
                  suggestion_id=sug.id, entry_id=sug.entry_id,
                  after={"until": sug.defer_until.isoformat() if sug.defer_until else None})
            return DecisionResult(SuggestionStatus.deferred, None, None)
        if sug.kind == SuggestionKind.rollback:
            return self._apply_rollback(session, sug, cmd)
        # These questions now have a home: they stop voting for "nobody" (core.learning).
        _release(session, sug)

        answer = sug.answer
        variants = list(sug.variants)
        if isinstance(cmd, EditAndApprove):
            if cmd.answer is not None:
                answer = cmd.answer
            if cmd.variants is not None:
                variants = list(cmd.variants)
        reason = f"suggestion {sug.id} ({sug.kind})"
        entry: KBEntry
        before: dict[str, Any] | None = None
        if sug.kind == SuggestionKind.new_answer or sug.entry_id is None:
            entry = insert_entry(session, bot_id=sug.bot_id, question=sug.question, answer=answer,
                                 variants=variants, category=sug.category,
                                 changed_by=actor.name, reason=reason, suggestion_id=sug.id)
            action = "entry.created"
        else:
            entry = get_entry(session, bot_id=sug.bot_id, entry_id=sug.entry_id)
            before = entry_public(entry)
            merged = list(entry.variants) + [v for v in variants if v not in entry.variants]
            change_entry(session, entry=entry, changed_by=actor.name, reason=reason,
                         suggestion_id=sug.id, variants=merged,
                         answer=answer if sug.kind == SuggestionKind.improve_answer or
                         isinstance(cmd, EditAndApprove) else None)
            action = "entry.updated"
        sug.entry_id = entry.id
        if isinstance(cmd, EditAndApprove):
            sug.answer = answer
            sug.variants = variants
        session.add(sug)
        if gap is not None:
            # Watched, not closed: the cycle closes it once its questions stop failing.
            gap.status = GapStatus.published
            gap.published_at = now
            gap.entry_id = entry.id
            session.add(gap)
        start_watch(session, bot_id=sug.bot_id, entry_id=entry.id,
                    from_version=before["version"] if before else None,
                    to_version=entry.version, suggestion_id=sug.id,
                    auto=actor.channel is Channel.auto, at=now,
                    settings=self._settings(session, sug.bot_id))
        after = {**entry_public(entry), "entry_action": action}
        if auto_reason:
            after["auto_reason"] = auto_reason
        audit(session, bot_id=sug.bot_id, actor=actor,
              action="suggestion.auto_published" if auto_reason
              else "suggestion.edited_and_approved" if isinstance(cmd, EditAndApprove)
              else "suggestion.approved",
              suggestion_id=sug.id, entry_id=entry.id, before=before, after=after)
        return DecisionResult(SuggestionStatus.auto_published if auto_reason
                              else SuggestionStatus.approved, entry.id,
                              entry.version)

    def _apply_rollback(self, session: Session, sug: Suggestion,
                        cmd: Approve | EditAndApprove) -> DecisionResult:
        """Approving "consider rolling back" undoes the watched change (back to the version
        before it, or switched off if it created the entry); editing it corrects the answer
        instead."""
        assert sug.entry_id is not None
        entry = get_entry(session, bot_id=sug.bot_id, entry_id=sug.entry_id)
        before = entry_public(entry)
        reason = f"suggestion {sug.id} (rollback)"
        if isinstance(cmd, EditAndApprove) and cmd.answer is not None:
            change_entry(session, entry=entry, changed_by=cmd.actor.name, reason=reason,
                         suggestion_id=sug.id, answer=cmd.answer, active=True)
            sug.answer = cmd.answer
            session.add(sug)
            action = "entry.updated"
        else:
            action = _roll_back(session, entry=entry, actor=cmd.actor, reason=reason,
                                to_version=(sug.evidence or {}).get("rollback_to"),
                                suggestion_id=sug.id)
        end_watches(session, entry_id=entry.id, at=utcnow())
        audit(session, bot_id=sug.bot_id, actor=cmd.actor,
              action="suggestion.edited_and_approved" if action == "entry.updated"
              else "suggestion.approved",
              suggestion_id=sug.id, entry_id=entry.id, before=before,
              after={**entry_public(entry), "entry_action": action})
        return DecisionResult(SuggestionStatus.approved, entry.id, entry.version)

    def undo(self, cmd: UndoSuggestion) -> dict[str, Any]:
        with session_scope(self.engine) as session:
            sug = session.get(Suggestion, cmd.suggestion_id)
            if sug is None:
                raise NotFound(f"suggestion {cmd.suggestion_id!r} not found")
            if sug.status not in PUBLISHED_SUGGESTION_STATUSES or sug.entry_id is None:
                raise Conflict("only a published suggestion can be undone; this one is "
                               f"{STATUS_WORDS.get(sug.status, sug.status)}")
            entry = get_entry(session, bot_id=sug.bot_id, entry_id=sug.entry_id)
            made = [v.version for v in list_versions(session, entry_id=entry.id)
                    if v.suggestion_id == sug.id]
            if not made or entry.version != made[-1]:
                raise Conflict(f"the entry changed after this suggestion (it is at version "
                               f"{entry.version}): revert it to the version you want instead")
            before = entry_public(entry)
            action = _roll_back(session, entry=entry, actor=cmd.actor,
                                reason=f"undo of suggestion {sug.id}",
                                to_version=made[-1] - 1 if made[-1] > 1 else None,
                                suggestion_id=sug.id)
            end_watches(session, entry_id=entry.id, at=utcnow())
            sug.status = SuggestionStatus.undone
            sug.updated_at = utcnow()
            session.add(sug)
            after = {**entry_public(entry), "entry_action": action}
            audit(session, bot_id=sug.bot_id, actor=cmd.actor, action="suggestion.undone",
                  suggestion_id=sug.id, entry_id=entry.id, before=before, after=after)
            bot_id = sug.bot_id
        self._after_commit(bot_id)
        return after

    # -- autonomy ---------------------------------------------------------------------------

    def auto_publish(self, *, bot_id: str, at: datetime | None = None) -> AutoPublishReport:
        """Publish the pending suggestions the bot's autonomy allows within its daily limit,
        the least risky kind first (new phrasings, then new answers, then changed answers),
        most urgent first within a kind; each is announced and can be undone like any other.
        Every pending suggestion records why it was or was not published
        (`evidence.autonomy`)."""
        now = as_utc(at) if at else utcnow()
        report = AutoPublishReport()
        with Session(self.engine) as session:
            settings = self._settings(session, bot_id)
            if settings.auto_publish_above() is None or not settings.enabled:
                return report
            pending = list(session.exec(select(Suggestion).where(
                Suggestion.bot_id == bot_id, Suggestion.status == SuggestionStatus.pending)))
        pending.sort(key=lambda s: (risk_rank(s.kind), urgency_key(s)))
        for candidate in pending:
            with session_scope(self.engine) as session:
                # Locking the bot row serialises auto-publishers of one bot (PostgreSQL), so
                # two workers cannot both take the day's last slot.
                bot = session.get(Bot, bot_id, with_for_update=True)
                assert bot is not None
                settings = bot_settings(bot)
                sug = session.get(Suggestion, candidate.id)
                if sug is None or sug.status != SuggestionStatus.pending:
                    continue
                verdict = auto_publish_verdict(
                    sug, settings,
                    published_today=auto_published_on(session, bot_id=bot_id, at=now,
                                                       timezone=settings.timezone),
                    rejected_before=_rejected_before(session, sug),
                    rolled_back_before=_rolled_back_before(session, sug))
                evidence = dict(sug.evidence or {})
                evidence["autonomy"] = {"published": verdict.publish, "reason": verdict.reason}
                if evidence != sug.evidence:
                    sug.evidence = evidence
                    session.add(sug)
                    session.flush()
                if not verdict.publish:
                    report.held[sug.id] = verdict.reason
                    continue
                try:
                    result = self._decide_in(session, Approve(suggestion_id=sug.id, actor=AUTO),
                                             now, auto_reason=verdict.reason)
                except AlreadyDecided:
                    continue  # a person decided it a moment ago: theirs stands
                announce(session, bot_id=bot_id, kind=NotificationKind.auto_published,
                         suggestion_id=sug.id, entry_id=result.entry_id, at=now,
                         text=f'Published automatically ({verdict.reason}): "{sug.question}". '
                              "It is live now; undo it if it is wrong.",
                         payload={"kind": sug.kind, "confidence": sug.confidence,
                                  "entry_version": result.entry_version})
                report.published.append(sug.id)
        if report.published:
            self._after_commit(bot_id)
        return report

    # -- watch after publish ------------------------------------------------------------------

    def check_watches(self, *, bot_id: str, at: datetime | None = None) -> WatchReport:
        """Check every watched change of the bot (core.policy.watch). A harmful change raises
        a critical rollback suggestion; in advanced autonomy one that autonomy published is
        rolled back at once and the reviewers are told."""
        now = as_utc(at) if at else utcnow()
        report = WatchReport()
        changed = False
        with session_scope(self.engine) as session:
            settings = self._settings(session, bot_id)
            watches = list(session.exec(select(EntryWatch).where(
                EntryWatch.bot_id == bot_id, EntryWatch.status == WatchStatus.watching)))
            for watch in watches:
                report.checked += 1
                ends = as_utc(watch.ends_at)
                after = entry_record(session, entry_id=watch.entry_id,
                                     since=as_utc(watch.started_at), until=min(now, ends))
                finding = evaluate(watch, after, settings)
                watch.checked_at = now
                session.add(watch)
                entry = session.get(KBEntry, watch.entry_id)
                if finding is None or entry is None or not entry.active:
                    if now >= ends or entry is None or not entry.active:
                        watch.status = WatchStatus.passed
                        watch.result = {"after": after.public()}
                        report.passed += 1
                    continue
                watch.result = finding.public()
                if watch.auto and settings.autonomy is Autonomy.advanced:
                    self._auto_roll_back(session, watch=watch, entry=entry, finding=finding,
                                         now=now)
                    report.rolled_back.append(entry.id)
                    changed = True
                else:
                    report.alerted.append(self._raise_rollback(
                        session, watch=watch, entry=entry, finding=finding, now=now))
        if changed:
            self._after_commit(bot_id)
        return report

    def _auto_roll_back(self, session: Session, *, watch: EntryWatch, entry: KBEntry,
                        finding: Finding, now: datetime) -> None:
        before = entry_public(entry)
        action = _roll_back(session, entry=entry, actor=WATCH,
                            reason=f"rolled back automatically: {finding.reason}",
                            to_version=watch.from_version, suggestion_id=watch.suggestion_id)
        watch.status = WatchStatus.rolled_back
        session.add(watch)
        audit(session, bot_id=entry.bot_id, actor=WATCH, action="entry.rolled_back",
              entry_id=entry.id, suggestion_id=watch.suggestion_id, before=before,
              after={**entry_public(entry), "entry_action": action, "reason": finding.reason})
        what = "switched off" if action == "entry.deactivated" else \
            f"reverted to version {watch.from_version}"
        announce(session, bot_id=entry.bot_id, kind=NotificationKind.auto_rolled_back,
                 entry_id=entry.id, suggestion_id=watch.suggestion_id, at=now,
                 text=f'The automatically published change to "{entry.question}" was {what}: '
                      f"{finding.reason}.", payload=finding.public())

    def _raise_rollback(self, session: Session, *, watch: EntryWatch, entry: KBEntry,
                        finding: Finding, now: datetime) -> str:
        previous = next((v for v in list_versions(session, entry_id=entry.id)
                         if v.version == watch.from_version), None) \
            if watch.from_version is not None else None
        action = f"revert to version {watch.from_version}" if previous else "switch it off"
        sug = Suggestion(
            bot_id=entry.bot_id, kind=SuggestionKind.rollback, priority=Priority.critical,
            score=1000.0 + finding.after.answered,
            # How sure: the share of customers the changed entry did not satisfy.
            confidence=round(100 * (1 - finding.after.satisfaction)),
            question=entry.question, answer=previous.answer if previous else entry.answer,
            variants=[], entry_id=entry.id, category=entry.category,
            warning=f"Consider rolling back ({action}): {finding.reason}.",
            evidence={"reason": f"Consider rolling back: {finding.reason}",
                      "rollback_to": watch.from_version, "watch_id": watch.id,
                      "changed_by_suggestion": watch.suggestion_id,
                      "action": "revert" if previous else "deactivate", **finding.public()},
            status=SuggestionStatus.pending, created_at=now, updated_at=now)
        session.add(sug)
        watch.status = WatchStatus.alerted
        session.add(watch)
        session.flush()
        announce(session, bot_id=entry.bot_id, kind=NotificationKind.rollback_suggested,
                 entry_id=entry.id, suggestion_id=sug.id, at=now,
                 text=f'Consider rolling back "{entry.question}" ({action}): {finding.reason}.',
                 payload=finding.public())
        return sug.id


def _announce_pause(session: Session, *, bot_id: str, paused: bool, actor: Actor) -> None:
    announce(session, bot_id=bot_id,
             kind=NotificationKind.paused if paused else NotificationKind.resumed,
             text=f"Auto-training {'paused' if paused else 'resumed'} by {actor.name} "
                  f"({actor.channel.value}).")


def _roll_back(session: Session, *, entry: KBEntry, actor: Actor, reason: str,
               to_version: int | None, suggestion_id: str | None) -> str:
    """Undo a change: back to `to_version`, or switched off when the change created the
    entry. Returns the entry action taken."""
    if to_version is None:
        change_entry(session, entry=entry, changed_by=actor.name, reason=reason,
                     suggestion_id=suggestion_id, active=False)
        return "entry.deactivated"
    target = next((v for v in list_versions(session, entry_id=entry.id)
                   if v.version == to_version), None)
    if target is None:
        raise NotFound(f"entry {entry.id!r} has no version {to_version}")
    change_entry(session, entry=entry, changed_by=actor.name, reason=reason,
                 suggestion_id=suggestion_id, question=target.question, answer=target.answer,
                 variants=list(target.variants), category=target.category or "",
                 active=target.active)
    return "entry.reverted"


def _known_category(settings: BotSettings, name: str) -> None:
    known = settings.category_names()
    if name not in known:
        raise InvalidInput(f"unknown category {name!r}: known are {', '.join(known)}",
                           field="category")


def _closed_by(session: Session, sug: Suggestion) -> tuple[str, datetime | None]:
    """Who took the suggestion out of the queue, and when: the decision for a decided one;
    the last audited act for one undone or withdrawn by a person; the cycle otherwise."""
    if sug.status in (SuggestionStatus.undone, SuggestionStatus.withdrawn):
        row = session.exec(select(AuditEvent).where(AuditEvent.suggestion_id == sug.id)
                           .order_by(col(AuditEvent.id).desc())).first()
        if row is not None and row.action in ("suggestion.undone", "suggestion.category_set"):
            return row.actor, as_utc(row.at)
        if sug.status == SuggestionStatus.withdrawn:
            because = (sug.evidence or {}).get("withdrawn_because", "nothing left to fix")
            return f"{AUTO_ACTOR} ({because})", as_utc(sug.updated_at)
    return sug.decided_by or AUTO_ACTOR, as_utc(sug.decided_at) if sug.decided_at else None


def _gap_questions(session: Session, sug: Suggestion) -> list[tuple[str, str]]:
    """(question, conversation id) of the suggestion's gap's evidence."""
    return [(q, c) for q, c in session.exec(
        select(GapEvidence.question, GapEvidence.conversation_id).where(
            GapEvidence.gap_id == sug.gap_id)).all()] if sug.gap_id else []


def _release(session: Session, sug: Suggestion) -> None:
    rows = _gap_questions(session, sug)
    learning.release(session, bot_id=sug.bot_id,
                     questions=[sug.question, *sug.variants, *(q for q, _ in rows)],
                     conversation_ids=[c for _, c in rows])


def _unlearn(session: Session, sug: Suggestion) -> int:
    """Block, for the suggestion's entry, what was learned from its gap's questions."""
    assert sug.entry_id is not None
    rows = _gap_questions(session, sug)
    return learning.block(session, bot_id=sug.bot_id, entry_id=sug.entry_id,
                          questions=[sug.question, *sug.variants, *(q for q, _ in rows)],
                          conversation_ids=[c for _, c in rows])


def _rejected_before(session: Session, sug: Suggestion) -> bool:
    if sug.gap_id is None:
        return False
    return session.exec(select(Suggestion.id).where(
        Suggestion.gap_id == sug.gap_id,
        col(Suggestion.status).in_((SuggestionStatus.rejected, SuggestionStatus.undone)))
    ).first() is not None


def _rolled_back_before(session: Session, sug: Suggestion) -> bool:
    if sug.entry_id is None:
        return False
    return session.exec(select(EntryWatch.id).where(
        EntryWatch.entry_id == sug.entry_id,
        col(EntryWatch.status).in_((WatchStatus.rolled_back, WatchStatus.alerted)))
    ).first() is not None
