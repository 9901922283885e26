"""Executes policy commands: each is one transaction with its audit row, then the index sync."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col

from core.bots import bot_settings, merge_settings
from core.db import session_scope
from core.errors import AlreadyDecided, InvalidInput, NotFound
from core.kb import IndexSync, change_entry, entry_public, get_entry, insert_entry, list_versions
from core.models import AuditEvent, Bot, Gap, KBEntry, Suggestion, utcnow
from core.pipeline.proposals import PLACEHOLDER_ANSWERS
from core.policy.commands import (
    Actor,
    Approve,
    CreateEntry,
    Decision,
    Defer,
    EditAndApprove,
    Reject,
    RevertEntry,
    SetEntryActive,
    UpdateEntry,
    UpdateSettings,
)

log = logging.getLogger(__name__)

OPEN_STATUSES = ("pending", "deferred")
DEFAULT_DEFER = timedelta(days=7)


@dataclass(frozen=True)
class DecisionResult:
    status: str
    entry_id: str | None
    entry_version: int | None


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

    def _after_commit(self) -> None:
        # Make the change visible to `answer` before the call returns; if the index is down
        # the outbox keeps the change and the background relay retries.
        self.index_sync.relay()

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
        self._after_commit()
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
        with session_scope(self.engine) as session:
            entry = get_entry(session, bot_id=cmd.bot_id, entry_id=cmd.entry_id)
            after = self._write_version(
                session, entry=entry, actor=cmd.actor, action="entry.updated",
                reason=cmd.reason or "edited", question=cmd.question, answer=cmd.answer,
                variants=cmd.variants, category=cmd.category)
        self._after_commit()
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
        self._after_commit()
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
        self._after_commit()
        return after

    # -- settings -------------------------------------------------------------------------

    def update_settings(self, cmd: UpdateSettings) -> dict[str, Any]:
        with session_scope(self.engine) as session:
            bot = session.get(Bot, cmd.bot_id)
            if bot is None:
                raise NotFound("bot not found")
            before = bot_settings(bot).model_dump(mode="json")
            after = merge_settings(bot_settings(bot), cmd.patch).model_dump(mode="json")
            if after != before:
                bot.settings = after
                session.add(bot)
                changed = {k for k in after if after[k] != before.get(k)}
                audit(session, bot_id=bot.id, actor=cmd.actor, action="settings.updated",
                      before={k: before.get(k) for k in changed},
                      after={k: after[k] for k in changed})
            return after

    # -- decisions --------------------------------------------------------------------------

    def decide(self, cmd: Decision) -> DecisionResult:
        """Record one decision. Exactly one of several concurrent decisions wins; the others
        get AlreadyDecided naming who decided and when."""
        new_status = {Approve: "approved", EditAndApprove: "approved", Reject: "rejected",
                      Defer: "deferred"}[type(cmd)]
        now = utcnow()
        result: DecisionResult
        with session_scope(self.engine) as session:
            sug = session.get(Suggestion, cmd.suggestion_id)
            if sug is None:
                raise NotFound(f"suggestion {cmd.suggestion_id!r} not found")
            values: dict[str, Any] = {
                "status": new_status, "decided_at": now, "decided_by": cmd.actor.name,
                "decided_channel": cmd.actor.channel.value, "updated_at": now,
            }
            if isinstance(cmd, Defer):
                values["defer_until"] = cmd.until or now + DEFAULT_DEFER
            if isinstance(cmd, Reject):
                values["reject_reason"] = cmd.reason.value
            if isinstance(cmd, Approve) and (sug.answer in PLACEHOLDER_ANSWERS
                                             or (sug.evidence or {}).get("needs_answer")):
                raise InvalidInput("this suggestion has no answer yet: use edit with an answer",
                                   field="answer")
            # The conditional update is the lock: whoever flips the status first wins.
            won = session.execute(
                update(Suggestion)
                .where(col(Suggestion.id) == sug.id, col(Suggestion.status).in_(OPEN_STATUSES))
                .values(**values)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won != 1:
                session.rollback()
                session.expire_all()
                current = session.get(Suggestion, cmd.suggestion_id)
                assert current is not None
                raise AlreadyDecided(
                    f"already {current.status} by {current.decided_by} at "
                    f"{current.decided_at.isoformat() if current.decided_at else 'an earlier time'}"
                )
            session.refresh(sug)
            result = self._apply(session, sug, cmd)
        if result.entry_id is not None:
            self._after_commit()
        return result

    def _apply(self, session: Session, sug: Suggestion, cmd: Decision) -> DecisionResult:
        actor = cmd.actor
        gap = session.get(Gap, sug.gap_id) if sug.gap_id else None
        if isinstance(cmd, Reject):
            if gap is not None:
                gap.status = "rejected"
                session.add(gap)
            audit(session, bot_id=sug.bot_id, actor=actor, action="suggestion.rejected",
                  suggestion_id=sug.id, entry_id=sug.entry_id,
                  after={"reason": cmd.reason.value, "comment": cmd.comment})
            return DecisionResult("rejected", None, None)
        if isinstance(cmd, Defer):
            audit(session, bot_id=sug.bot_id, actor=actor, action="suggestion.deferred",
                  suggestion_id=sug.id, entry_id=sug.entry_id,
                  after={"until": sug.defer_until.isoformat() if sug.defer_until else None})
            return DecisionResult("deferred", None, None)

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
        if sug.kind == "new_answer" or sug.entry_id is None:
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
                         answer=answer if sug.kind == "improve_answer" or
                         isinstance(cmd, EditAndApprove) else None)
            action = "entry.updated"
        sug.entry_id = entry.id
        if isinstance(cmd, EditAndApprove):
            sug.answer = answer
            sug.variants = variants
        session.add(sug)
        if gap is not None:
            # Watched, not closed: the cycle closes it once its questions stop failing.
            gap.status = "published"
            gap.published_at = sug.decided_at
            gap.entry_id = entry.id
            session.add(gap)
        audit(session, bot_id=sug.bot_id, actor=actor,
              action="suggestion.edited_and_approved" if isinstance(cmd, EditAndApprove)
              else "suggestion.approved",
              suggestion_id=sug.id, entry_id=entry.id, before=before,
              after={**entry_public(entry), "entry_action": action})
        return DecisionResult("approved", entry.id, entry.version)
