"""The cycle, suggestions and decisions, the audit trail, metrics and index health."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlmodel import Session, col, select

from api.deps import BotDep, CallerDep, ServicesDep
from api.schemas import (
    ActorIn,
    AuditList,
    AuditOut,
    CategoryList,
    CategoryOut,
    CycleIn,
    CycleOut,
    DecisionAction,
    DecisionIn,
    DecisionOut,
    IndexStatus,
    MetricsBucket,
    MetricsOut,
    NotificationList,
    NotificationOut,
    SuggestionList,
    SuggestionOut,
    SuggestionPatch,
    SuggestionStatus,
    WatchList,
    WatchOut,
)
from core.bots import bot_settings
from core.metrics import THIN_DATA_CONVERSATIONS, Bucket, activated_at, compute_metrics
from core.models import AuditEvent, EntryWatch, IndexOutbox, Notification, Suggestion
from core.pipeline.priorities import PRIORITY_ORDER
from core.policy.commands import (
    Approve,
    Defer,
    EditAndApprove,
    Reject,
    RejectReason,
    SetCategory,
    SetPaused,
    UndoSuggestion,
)

router = APIRouter(prefix="/api/v1", tags=["review"])


def suggestion_out(s: Suggestion) -> SuggestionOut:
    return SuggestionOut(
        id=s.id, kind=s.kind, priority=s.priority, confidence=s.confidence, question=s.question,
        answer=s.answer, variants=list(s.variants), entry_id=s.entry_id, category=s.category,
        warning=s.warning, evidence=dict(s.evidence), status=s.status, created_at=s.created_at,
        decided_by=s.decided_by, decided_at=s.decided_at, decided_channel=s.decided_channel,
        defer_until=s.defer_until, category_source=s.category_source,
    )


@router.post("/bots/{slug}/cycles", response_model=CycleOut)
def run_cycle(bot: BotDep, svc: ServicesDep, body: CycleIn | None = None) -> CycleOut:
    """Analyse new conversations and refresh suggestions now, treating `as_of` as now
    (`full`: re-analyse everything). 409 while another process runs this bot's cycle."""
    if body is not None and body.reembed and not body.full:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "reembed"], "type": "value_error",
            "msg": "reembed only applies to a full re-analysis: set full to true"}])
    result = svc.cycle.run(bot_id=bot.id, as_of=body.as_of if body else None,
                           full=body.full if body else False,
                           reembed=body.reembed if body else False)
    return CycleOut(**result.public())


@router.get("/bots/{slug}/suggestions", response_model=SuggestionList)
def suggestions(bot: BotDep, svc: ServicesDep,
                status_: Annotated[SuggestionStatus | None, Query(alias="status")] = None,
                ) -> SuggestionList:
    """Suggestions, highest priority first (then by score, then newest)."""
    with Session(svc.engine) as session:
        stmt = select(Suggestion).where(Suggestion.bot_id == bot.id)
        if status_ is not None:
            stmt = stmt.where(Suggestion.status == status_.value)
        rows = list(session.exec(stmt))
    rows.sort(key=lambda s: (PRIORITY_ORDER.get(s.priority, 9), -s.score,
                             -s.created_at.timestamp()))
    return SuggestionList(items=[suggestion_out(s) for s in rows])


def _suggestion_for(svc: ServicesDep, who: CallerDep, suggestion_id: str) -> Suggestion:
    with Session(svc.engine) as session:
        sug = session.get(Suggestion, suggestion_id)
    if sug is None or (not who.is_admin and sug.bot_id != who.bot_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"suggestion {suggestion_id!r} not found")
    return sug


@router.get("/suggestions/{suggestion_id}", response_model=SuggestionOut)
def suggestion(suggestion_id: str, svc: ServicesDep, who: CallerDep) -> SuggestionOut:
    return suggestion_out(_suggestion_for(svc, who, suggestion_id))


@router.post("/suggestions/{suggestion_id}/decision", response_model=DecisionOut)
def decide(suggestion_id: str, body: DecisionIn, svc: ServicesDep,
           who: CallerDep) -> DecisionOut:
    """Approve, edit-and-approve, reject or defer. 409 if someone already decided it
    (a deferred suggestion can be decided again)."""
    _suggestion_for(svc, who, suggestion_id)
    actor = who.actor(body.actor)
    match body.action:
        case DecisionAction.approve:
            cmd = Approve(suggestion_id=suggestion_id, actor=actor)
        case DecisionAction.edit:
            if body.answer is None and body.variants is None:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
                    "loc": ["body", "answer"], "type": "missing",
                    "msg": "edit needs an answer or variants"}])
            cmd = EditAndApprove(suggestion_id=suggestion_id, actor=actor, answer=body.answer,
                                 variants=body.variants)
        case DecisionAction.reject:
            cmd = Reject(suggestion_id=suggestion_id, actor=actor,
                         reason=body.reason or RejectReason.other, comment=body.comment)
        case DecisionAction.defer:
            cmd = Defer(suggestion_id=suggestion_id, actor=actor, until=body.until)
    result = svc.policy.decide(cmd)
    return DecisionOut(status=result.status, entry_id=result.entry_id,
                       entry_version=result.entry_version)


@router.patch("/suggestions/{suggestion_id}", response_model=SuggestionOut)
def correct_suggestion(suggestion_id: str, body: SuggestionPatch, svc: ServicesDep,
                       who: CallerDep) -> SuggestionOut:
    """Correct a suggestion's category; the cycle keeps it and the classifier learns from
    it. Moving it into a category excluded from auto-training withdraws it."""
    _suggestion_for(svc, who, suggestion_id)
    return suggestion_out(svc.policy.set_category(SetCategory(
        suggestion_id=suggestion_id, category=body.category, actor=who.actor(body.actor))))


@router.post("/suggestions/{suggestion_id}/undo")
def undo(suggestion_id: str, svc: ServicesDep, who: CallerDep,
         body: ActorIn | None = None) -> dict[str, Any]:
    """Take back a published (approved or auto-published) suggestion: its entry returns to
    the version before, or is switched off if the suggestion created it. 409 if the entry
    changed since."""
    _suggestion_for(svc, who, suggestion_id)
    return svc.policy.undo(UndoSuggestion(suggestion_id=suggestion_id,
                                          actor=who.actor(body.actor if body else None)))


@router.post("/bots/{slug}/pause")
def pause(bot: BotDep, svc: ServicesDep, who: CallerDep,
          body: ActorIn | None = None) -> dict[str, Any]:
    """Pause auto-training (settings.enabled = false): no analysis, no new suggestions,
    nothing auto-published until resumed. 409 if already paused."""
    return svc.policy.set_paused(SetPaused(bot_id=bot.id, paused=True,
                                           actor=who.actor(body.actor if body else None)))


@router.post("/bots/{slug}/resume")
def resume(bot: BotDep, svc: ServicesDep, who: CallerDep,
           body: ActorIn | None = None) -> dict[str, Any]:
    """Resume auto-training. 409 if it is not paused."""
    return svc.policy.set_paused(SetPaused(bot_id=bot.id, paused=False,
                                           actor=who.actor(body.actor if body else None)))


@router.get("/bots/{slug}/categories", response_model=CategoryList)
def categories(bot: BotDep) -> CategoryList:
    """The built-in and custom categories, and what each is excluded from."""
    settings = bot_settings(bot)
    cats = settings.categories()
    return CategoryList(items=[CategoryOut(
        name=c.name, description=c.description, keywords=list(c.keywords), builtin=c.builtin,
        excluded_from_auto_publish=c.name in settings.excluded_categories,
        excluded_from_training=c.name in settings.training_excluded_categories) for c in cats])


@router.get("/bots/{slug}/notifications", response_model=NotificationList)
def notifications(bot: BotDep, svc: ServicesDep, undelivered: bool = False,
                  limit: Annotated[int, Query(ge=1, le=1_000)] = 100) -> NotificationList:
    """What the reviewers were told (auto-published changes, rollbacks, deferred suggestions
    back in the queue, pauses), newest first."""
    with Session(svc.engine) as session:
        stmt = select(Notification).where(Notification.bot_id == bot.id)
        if undelivered:
            stmt = stmt.where(col(Notification.delivered_at).is_(None))
        rows = list(session.exec(stmt.order_by(col(Notification.created_at).desc(),
                                               col(Notification.id).desc()).limit(limit)))
    return NotificationList(items=[NotificationOut.model_validate(r, from_attributes=True)
                                   for r in rows])


@router.get("/bots/{slug}/watches", response_model=WatchList)
def watches(bot: BotDep, svc: ServicesDep, entry_id: str | None = None,
            status_: Annotated[str | None, Query(alias="status")] = None) -> WatchList:
    """Published changes under watch and what the watch concluded, newest first."""
    with Session(svc.engine) as session:
        stmt = select(EntryWatch).where(EntryWatch.bot_id == bot.id)
        if entry_id:
            stmt = stmt.where(EntryWatch.entry_id == entry_id)
        if status_:
            stmt = stmt.where(EntryWatch.status == status_)
        rows = list(session.exec(stmt.order_by(col(EntryWatch.started_at).desc())))
    return WatchList(items=[WatchOut(
        id=w.id, entry_id=w.entry_id, suggestion_id=w.suggestion_id,
        from_version=w.from_version, to_version=w.to_version, auto=w.auto,
        started_at=w.started_at, ends_at=w.ends_at, status=w.status,
        baseline={"answered": w.baseline_answered, "satisfied": w.baseline_satisfied,
                  "negative": w.baseline_negative},
        checked_at=w.checked_at, result=w.result) for w in rows])


@router.get("/bots/{slug}/audit", response_model=AuditList,
            responses={200: {"content": {"text/csv": {}}}})
def audit(bot: BotDep, svc: ServicesDep, entry_id: str | None = None,
          suggestion_id: str | None = None,
          action: Annotated[str | None, Query(max_length=64,
                                              description="e.g. suggestion.auto_published")
                            ] = None,
          format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
          limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000) -> AuditList | Response:
    """Every change, newest first, per bot, entry, suggestion or action; `format=csv`
    exports it."""
    with Session(svc.engine) as session:
        stmt = select(AuditEvent).where(AuditEvent.bot_id == bot.id)
        if entry_id:
            stmt = stmt.where(AuditEvent.entry_id == entry_id)
        if suggestion_id:
            stmt = stmt.where(AuditEvent.suggestion_id == suggestion_id)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        rows = list(session.exec(stmt.order_by(col(AuditEvent.at).desc(),
                                               col(AuditEvent.id).desc()).limit(limit)))
    items = [AuditOut(at=r.at, actor=r.actor, channel=r.channel, action=r.action,
                      entry_id=r.entry_id, suggestion_id=r.suggestion_id, before=r.before,
                      after=r.after) for r in rows]
    if format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["at", "actor", "channel", "action", "entry_id", "suggestion_id",
                         "before", "after"])
        for it in items:
            d = it.model_dump(mode="json")
            # Before/after as JSON, so a spreadsheet or a script can read them back.
            writer.writerow([d["at"], d["actor"], d["channel"], d["action"], d["entry_id"] or "",
                             d["suggestion_id"] or "",
                             json.dumps(d["before"], ensure_ascii=False) if d["before"] else "",
                             json.dumps(d["after"], ensure_ascii=False) if d["after"] else ""])
        disposition = f'attachment; filename="{bot.slug}-audit.csv"'
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": disposition})
    return AuditList(items=items)


@router.get("/bots/{slug}/metrics", response_model=MetricsOut)
def metrics(bot: BotDep, svc: ServicesDep, bucket: Bucket = Bucket.week) -> MetricsOut:
    buckets = compute_metrics(svc.engine, bot_id=bot.id, bucket=bucket)
    total = sum(b["conversations"] for b in buckets)
    return MetricsOut(buckets=[MetricsBucket(**b) for b in buckets],
                      activated_at=activated_at(svc.engine, bot_id=bot.id),
                      thin_data=total < THIN_DATA_CONVERSATIONS)


@router.get("/bots/{slug}/index", response_model=IndexStatus, tags=["operations"])
def index_status(bot: BotDep, svc: ServicesDep) -> IndexStatus:
    """Drift between SQL (the truth) and the vector index; fix with `autotrain reindex`."""
    report = svc.index_sync.reconcile(bot_id=bot.id)
    with Session(svc.engine) as session:
        pending = len(session.exec(select(IndexOutbox.id).where(
            IndexOutbox.bot_id == bot.id, col(IndexOutbox.processed_at).is_(None))).all())
    return IndexStatus(pending_outbox=pending, **{k: v for k, v in report.items()
                                                  if k in IndexStatus.model_fields})
