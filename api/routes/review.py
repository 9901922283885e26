"""The cycle, suggestions and decisions, the audit trail, metrics and index health."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import TypeAdapter

from api.checked import CheckedRoute
from api.deps import BOT_ADMIN, REVIEWER, BotDep, CallerDep, ServicesDep, SuggestionBotDep
from api.schemas import (
    ActorIn,
    AuditList,
    CategoryList,
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
    QuestionList,
    QuestionOut,
    SuggestionList,
    SuggestionOut,
    SuggestionPatch,
    WatchList,
)
from core.metrics import Bucket
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
from core.review import (
    AnnouncementView,
    AuditView,
    Period,
    QuestionKind,
    StatsView,
    SuggestionView,
)
from core.status import SuggestionStatus, WatchStatus

router = APIRouter(prefix="/api/v1", tags=["review"], route_class=CheckedRoute)


def suggestion_out(v: SuggestionView) -> SuggestionOut:
    return SuggestionOut(
        id=v.id, kind=v.kind, priority=v.priority, confidence=v.confidence, question=v.question,
        answer=v.answer, variants=v.variants, entry_id=v.entry_id, category=v.category,
        warning=v.warning, evidence=v.evidence, status=v.status, created_at=v.created_at,
        decided_by=v.decided.by if v.decided else None,
        decided_at=v.decided.at if v.decided else None,
        decided_channel=v.decided.channel if v.decided else None,
        defer_until=v.defer_until, category_source=v.category_source,
        reason=v.reason, samples=v.samples, replay=v.replay, autonomy=v.autonomy,
        entry_question=v.entry_question, low_confidence=v.low_confidence,
        needs_answer=v.needs_answer, status_words=v.status_words,
        withdrawn_because=v.withdrawn_because,
    )


@router.post("/bots/{slug}/cycles", dependencies=[REVIEWER], response_model=CycleOut)
def run_cycle(bot: BotDep, svc: ServicesDep, body: CycleIn | None = None) -> CycleOut:
    """Analyse new conversations and refresh suggestions now, treating `as_of` as now
    (`full`: re-analyse everything). 409 while another process runs this bot's cycle."""
    if body is not None and body.reembed and not body.full:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "reembed"], "type": "value_error",
            "msg": "reembed only applies to a full re-analysis: set full to true"}])
    result = svc.review.run_cycle(bot, as_of=body.as_of if body else None,
                                  full=body.full if body else False,
                                  reembed=body.reembed if body else False)
    return CycleOut(**result.public())


@router.get("/bots/{slug}/questions", dependencies=[REVIEWER], response_model=QuestionList)
def questions(bot: BotDep, svc: ServicesDep, kind: QuestionKind = QuestionKind.one_off,
              days: Annotated[int, Query(ge=1, le=365)] = 7,
              limit: Annotated[int, Query(ge=1, le=1_000)] = 100) -> QuestionList:
    """Failed questions kept out of the review queue, newest first: `one_off` (asked once,
    with no similar question; a second customer asking alike makes it a suggestion) or
    `declined` (the agents turned them away with the same stock refusal)."""
    view = svc.review.questions(bot, kind, days=days, limit=limit)
    return QuestionList(kind=view.kind, days=view.days, total=view.total, items=[
        QuestionOut(question=q.question, at=q.at, signal=q.signal,
                    conversation_id=q.conversation_id, agent_reply=q.agent_reply)
        for q in view.items])


@router.get("/bots/{slug}/suggestions", dependencies=[REVIEWER], response_model=SuggestionList)
def suggestions(bot: BotDep, svc: ServicesDep,
                status_: Annotated[SuggestionStatus | None, Query(alias="status")] = None,
                limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
                ) -> SuggestionList:
    """Suggestions in the review queue's order: most urgent level first, then the highest
    score; on a tie the surest, then the one waiting longest."""
    return SuggestionList(items=[suggestion_out(v) for v in svc.review.queue(
        bot, status=status_, limit=limit)])


@router.get("/suggestions/{suggestion_id}", dependencies=[REVIEWER], response_model=SuggestionOut)
def suggestion(suggestion_id: str, svc: ServicesDep, bot: SuggestionBotDep) -> SuggestionOut:
    return suggestion_out(svc.review.card(suggestion_id, bot=bot))


@router.post("/suggestions/{suggestion_id}/decision",
             dependencies=[REVIEWER], response_model=DecisionOut)
def decide(suggestion_id: str, body: DecisionIn, svc: ServicesDep, who: CallerDep,
           bot: SuggestionBotDep) -> DecisionOut:
    """Approve, edit-and-approve, reject or defer. 409 if someone already decided it
    (a deferred suggestion can be decided again)."""
    actor = who.actor(body.actor)
    match body.action:
        case DecisionAction.approve:
            cmd: Approve | EditAndApprove | Reject | Defer = Approve(
                suggestion_id=suggestion_id, actor=actor)
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
    done = svc.review.execute(cmd, bot=bot)
    published = done.status == SuggestionStatus.approved and done.entry is not None
    return DecisionOut(status=str(done.status), entry_id=done.entry.id if published and done.entry
                       else None,
                       entry_version=done.entry.version if published and done.entry else None)


@router.patch("/suggestions/{suggestion_id}", dependencies=[REVIEWER], response_model=SuggestionOut)
def correct_suggestion(suggestion_id: str, body: SuggestionPatch, svc: ServicesDep,
                       who: CallerDep, bot: SuggestionBotDep) -> SuggestionOut:
    """Correct a suggestion's category; the cycle keeps it and the classifier learns from
    it. Moving it into a category excluded from auto-training withdraws it."""
    done = svc.review.execute(SetCategory(suggestion_id=suggestion_id, category=body.category,
                                          actor=who.actor(body.actor)), bot=bot)
    assert done.suggestion is not None
    return suggestion_out(done.suggestion)


@router.post("/suggestions/{suggestion_id}/undo", dependencies=[REVIEWER])
def undo(suggestion_id: str, svc: ServicesDep, who: CallerDep, bot: SuggestionBotDep,
         body: ActorIn | None = None) -> dict[str, Any]:
    """Take back a published (approved or auto-published) suggestion: its entry returns to
    the version before, or is switched off if the suggestion created it. 409 if the entry
    changed since."""
    done = svc.review.execute(UndoSuggestion(
        suggestion_id=suggestion_id, actor=who.actor(body.actor if body else None)), bot=bot)
    assert done.entry is not None
    return {**done.entry.public(), "entry_action": done.entry_action}


@router.post("/bots/{slug}/pause", dependencies=[BOT_ADMIN])
def pause(bot: BotDep, svc: ServicesDep, who: CallerDep,
          body: ActorIn | None = None) -> dict[str, Any]:
    """Pause auto-training (settings.enabled = false): no analysis, no new suggestions,
    nothing auto-published until resumed. 409 if already paused."""
    done = svc.review.execute(SetPaused(bot_id=bot.id, paused=True,
                                        actor=who.actor(body.actor if body else None)), bot=bot)
    return done.settings or {}


@router.post("/bots/{slug}/resume", dependencies=[BOT_ADMIN])
def resume(bot: BotDep, svc: ServicesDep, who: CallerDep,
           body: ActorIn | None = None) -> dict[str, Any]:
    """Resume auto-training. 409 if it is not paused."""
    done = svc.review.execute(SetPaused(bot_id=bot.id, paused=False,
                                        actor=who.actor(body.actor if body else None)), bot=bot)
    return done.settings or {}


@router.get("/bots/{slug}/categories", dependencies=[REVIEWER], response_model=CategoryList)
def categories(bot: BotDep, svc: ServicesDep) -> CategoryList:
    """The built-in and custom categories, and what each is excluded from."""
    return CategoryList(items=svc.review.categories(bot))


def notification_out(n: AnnouncementView) -> NotificationOut:
    return NotificationOut(id=n.id, kind=n.kind, text=n.text, suggestion_id=n.suggestion_id,
                           entry_id=n.entry_id, payload=n.payload, created_at=n.created_at,
                           delivered_at=min(n.delivered.values()) if n.delivered else None,
                           delivered_to=n.delivered)


@router.get("/bots/{slug}/notifications", dependencies=[REVIEWER], response_model=NotificationList)
def notifications(bot: BotDep, svc: ServicesDep, undelivered: bool = False,
                  channel: Annotated[str | None, Query(pattern="^(slack|email)$")] = None,
                  limit: Annotated[int, Query(ge=1, le=1_000)] = 100) -> NotificationList:
    """What the reviewers were told (auto-published changes, rollbacks, deferred suggestions
    back in the queue, pauses), newest first. Each channel delivers each announcement once;
    `undelivered` keeps those not yet delivered on `channel` (without one: on no channel)."""
    return NotificationList(items=[notification_out(n) for n in svc.review.announcements(
        bot, undelivered=undelivered, channel=channel, limit=limit)])


@router.get("/bots/{slug}/watches", dependencies=[REVIEWER], response_model=WatchList)
def watches(bot: BotDep, svc: ServicesDep, entry_id: str | None = None,
            status_: Annotated[WatchStatus | None, Query(alias="status")] = None) -> WatchList:
    """Published changes under watch and what the watch concluded, newest first."""
    return WatchList(items=svc.review.watches(bot, entry_id=entry_id, status=status_))


@router.get("/bots/{slug}/audit", dependencies=[REVIEWER], response_model=AuditList,
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
    items = svc.review.audit(bot, entry_id=entry_id, suggestion_id=suggestion_id,
                             action=action, limit=limit)
    if format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["at", "actor", "channel", "action", "entry_id", "suggestion_id",
                         "before", "after"])
        for it in items:
            d = TypeAdapter(AuditView).dump_python(it, mode="json")
            # Before/after as JSON, so a spreadsheet or a script can read them back.
            writer.writerow([d["at"], d["actor"], d["channel"], d["action"], d["entry_id"] or "",
                             d["suggestion_id"] or "",
                             json.dumps(d["before"], ensure_ascii=False) if d["before"] else "",
                             json.dumps(d["after"], ensure_ascii=False) if d["after"] else ""])
        disposition = f'attachment; filename="{bot.slug}-audit.csv"'
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": disposition})
    return AuditList(items=items)


@router.get("/bots/{slug}/metrics", dependencies=[REVIEWER], response_model=MetricsOut)
def metrics(bot: BotDep, svc: ServicesDep, bucket: Bucket = Bucket.week) -> MetricsOut:
    got = svc.review.metrics(bot, bucket=bucket)
    return MetricsOut(buckets=[MetricsBucket(**b) for b in got["buckets"]],
                      activated_at=got["activated_at"], thin_data=got["thin_data"])


@router.get("/bots/{slug}/stats", dependencies=[REVIEWER], response_model=StatsView)
def stats(bot: BotDep, svc: ServicesDep, period: Period = Period.week) -> StatsView:
    """This period (the last day, 7 or 30 days) against the one before: resolution,
    escalations, CSAT, negative feedback, suggestions decided and auto-published — the
    figures `/autotrain stats` and the digest show."""
    return svc.review.stats(bot, period)


@router.get("/bots/{slug}/index",
            dependencies=[BOT_ADMIN], response_model=IndexStatus, tags=["operations"])
def index_status(bot: BotDep, svc: ServicesDep) -> IndexStatus:
    """Drift between SQL (the truth) and the vector index; fix with `autotrain reindex`."""
    report = svc.review.index_health(bot)
    return IndexStatus(**{k: v for k, v in report.items() if k in IndexStatus.model_fields})
