"""The knowledge base, and the answer route the chatbot calls."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, status

from api.checked import CheckedRoute
from api.deps import BOT_ADMIN, CHATBOT, REVIEWER, BotDep, CallerDep, ServicesDep
from api.schemas import (
    AnswerIn,
    AnswerOut,
    EntryCreate,
    EntryList,
    EntryOut,
    EntryUpdate,
    RevertIn,
    SandboxIn,
    SandboxOut,
    VersionList,
    VersionOut,
)
from core.policy.commands import CreateEntry, RevertEntry, SetEntryActive, UpdateEntry
from core.review import EntryView, Outcome

router = APIRouter(prefix="/api/v1/bots/{slug}", tags=["knowledge base"],
                   route_class=CheckedRoute)


def entry_out(entry: EntryView | None) -> EntryOut:
    assert entry is not None
    return EntryOut.model_validate(entry, from_attributes=True)


def changed(done: Outcome) -> EntryOut:
    return entry_out(done.entry)


@router.post("/kb/entries",
             dependencies=[BOT_ADMIN], status_code=status.HTTP_201_CREATED, response_model=EntryOut)
def create_entry(body: EntryCreate, bot: BotDep, svc: ServicesDep, who: CallerDep) -> EntryOut:
    """Add an entry. It is served by `answer` as soon as this call returns."""
    return changed(svc.review.execute(CreateEntry(
        bot_id=bot.id, question=body.question, answer=body.answer, variants=body.variants,
        category=body.category, actor=who.actor()), bot=bot))


@router.get("/kb/entries", dependencies=[BOT_ADMIN], response_model=EntryList)
def entries(bot: BotDep, svc: ServicesDep) -> EntryList:
    return EntryList(items=[entry_out(e) for e in svc.review.entries(bot)])


@router.get("/kb/entries/{entry_id}", dependencies=[BOT_ADMIN], response_model=EntryOut)
def entry(entry_id: str, bot: BotDep, svc: ServicesDep) -> EntryOut:
    return entry_out(svc.review.entry(entry_id, bot=bot))


@router.patch("/kb/entries/{entry_id}", dependencies=[BOT_ADMIN], response_model=EntryOut)
def update_entry(entry_id: str, body: EntryUpdate, bot: BotDep, svc: ServicesDep,
                 who: CallerDep) -> EntryOut:
    """Edit an entry: writes a new version (the old one stays for revert)."""
    return changed(svc.review.execute(UpdateEntry(
        bot_id=bot.id, entry_id=entry_id, actor=who.actor(), question=body.question,
        answer=body.answer, variants=body.variants, category=body.category, reason=body.reason),
        bot=bot))


@router.get("/kb/entries/{entry_id}/versions", dependencies=[BOT_ADMIN], response_model=VersionList)
def versions(entry_id: str, bot: BotDep, svc: ServicesDep) -> VersionList:
    history = svc.review.history(entry_id, bot=bot, audit_limit=1)
    return VersionList(items=[VersionOut.model_validate(v, from_attributes=True)
                              for v in history.versions])


@router.post("/kb/entries/{entry_id}/revert", dependencies=[BOT_ADMIN], response_model=EntryOut)
def revert(entry_id: str, body: RevertIn, bot: BotDep, svc: ServicesDep,
           who: CallerDep) -> EntryOut:
    """Make version n current again, as a new version."""
    return changed(svc.review.execute(RevertEntry(
        bot_id=bot.id, entry_id=entry_id, version=body.version, actor=who.actor()), bot=bot))


@router.post("/kb/entries/{entry_id}/deactivate", dependencies=[BOT_ADMIN], response_model=EntryOut)
def deactivate(entry_id: str, bot: BotDep, svc: ServicesDep, who: CallerDep) -> EntryOut:
    """Instant rollback: the entry is no longer served."""
    return changed(svc.review.execute(SetEntryActive(
        bot_id=bot.id, entry_id=entry_id, active=False, actor=who.actor()), bot=bot))


@router.post("/kb/entries/{entry_id}/reactivate", dependencies=[BOT_ADMIN], response_model=EntryOut)
def reactivate(entry_id: str, bot: BotDep, svc: ServicesDep, who: CallerDep) -> EntryOut:
    return changed(svc.review.execute(SetEntryActive(
        bot_id=bot.id, entry_id=entry_id, active=True, actor=who.actor()), bot=bot))


@router.post("/answer", dependencies=[CHATBOT], response_model=AnswerOut, tags=["answering"])
def answer(body: AnswerIn, bot: BotDep, svc: ServicesDep, request: Request) -> AnswerOut:
    """Best active entry for a customer question, or `escalate: true` to hand over."""
    started = time.perf_counter()
    result = svc.answer(bot=bot, question=body.question)
    # The matching itself (/metrics: autotrain_answer_seconds); auth and parsing are not in it.
    request.app.state.answer_latency.observe(time.perf_counter() - started)
    return AnswerOut(answer=result.answer, entry_id=result.entry_id,
                     confidence=result.confidence, escalate=result.escalate)


@router.post("/sandbox", dependencies=[REVIEWER], response_model=SandboxOut, tags=["answering"])
def sandbox(body: SandboxIn, bot: BotDep, svc: ServicesDep) -> SandboxOut:
    """How the bot would answer with the given pending suggestions approved, next to what it
    answers today. Nothing is published."""
    got = svc.review.sandbox(bot, question=body.question, suggestion_ids=body.suggestion_ids)
    return SandboxOut(answer=got.answer, entry_id=got.entry_id, suggestion_id=got.suggestion_id,
                      confidence=got.confidence, escalate=got.escalate,
                      live=AnswerOut(answer=got.live.answer, entry_id=got.live.entry_id,
                                     confidence=got.live.confidence,
                                     escalate=got.live.escalate))
