"""Planning a gap's suggestion from its evidence: kind, home entry, proposal, priority, context."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from core.answering import rank_entries
from core.bots import BotSettings
from core.cycle.deps import CycleDeps, vec
from core.cycle.template import bot_template
from core.embeddings import Embedder
from core.generation import GapContext, RejectedDraft
from core.index import entry_phrasings
from core.metrics import THIN_DATA_CONVERSATIONS, SatisfactionBook
from core.models import AuditEvent, Conversation, Gap, GapEvidence, KBEntry, Suggestion, as_utc
from core.pipeline.checks import KnownAnswer, duplicate_of
from core.pipeline.macros import Template
from core.pipeline.priorities import GapFacts, adds_information, prioritise
from core.pipeline.proposals import (
    SAME_ANSWER,
    Candidate,
    EntryView,
    Evidence,
    Proposal,
    classify,
    propose,
    says_otherwise,
)
from core.policy.commands import RejectReason
from core.status import SuggestionKind, SuggestionStatus

# A gap rejected as off-topic / not a real gap never comes back; one rejected as sensitive
# comes back only once it has grown (core.cycle.write.REJECTED_GROWTH). Other reasons judge the
# proposal.
OFF_TOPIC = RejectReason.not_a_gap
SCOPE_REJECTIONS = (OFF_TOPIC, RejectReason.sensitive)
# KB entries considered as the home of a gap (nearest to its questions).
CANDIDATES = 3
# An entry's satisfaction says whether its answer is the problem only once it has been given
# this many times in the window.
MIN_RATED = 5


@dataclass
class AnswerMatrix:
    """Every active entry's answer vector, and the bot's agents' reply template: answers and
    replies are compared by their distinctive parts (core.pipeline.macros), so a KB written
    from the agents' macros does not make every entry look like every reply."""

    entry_ids: list[str]
    vectors: np.ndarray | None
    template: Template = field(default_factory=Template)

    def closest(self, reply: np.ndarray, *, at_least: float = SAME_ANSWER) -> str | None:
        """The entry whose answer is most like `reply`, if it is alike enough."""
        if self.vectors is None or not self.entry_ids:
            return None
        sims = self.vectors @ reply
        best = int(np.argmax(sims))
        return self.entry_ids[best] if float(sims[best]) >= at_least else None


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
            kind == SuggestionKind.add_variants or _norm(self.answer) == _norm(answer))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


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
    # For the drafting step (`core.cycle.draft.finish`): what the generator writes from (None
    # when the answer is the entry's own, as for add_variants), the proposal with its vectors,
    # the candidate entries' answers (duplicates, contradictions) and the earlier rejections.
    context: GapContext | None = None
    proposal: Proposal | None = None
    known: list[KnownAnswer] = field(default_factory=list)
    rejected: list[RejectedProposal] = field(default_factory=list)


def answer_matrix(deps: CycleDeps, *, bot_id: str) -> AnswerMatrix:
    """Every active entry's answer without the agents' template, embedded once per cycle."""
    with Session(deps.engine) as session:
        rows = session.exec(select(KBEntry.id, KBEntry.answer).where(
            KBEntry.bot_id == bot_id, col(KBEntry.active))).all()
        template = bot_template(session, bot_id=bot_id)
    if not rows:
        return AnswerMatrix([], None, template)
    return AnswerMatrix([r[0] for r in rows],
                        deps.embedder.embed([template.distinctive(r[1]) for r in rows]),
                        template)


def plan_gap(deps: CycleDeps, *, gap_id: str, as_of: datetime,
             entries: dict[str, EntryView | None], thin: bool, settings: BotSettings,
             satisfaction: SatisfactionBook, answers: AnswerMatrix) -> SuggestionPlan | None:
    """Everything a gap's suggestion needs, computed with reads only (None: no evidence is
    left, every transcript behind the gap was corrected)."""
    with Session(deps.engine) as session:
        gap = session.get(Gap, gap_id)
        assert gap is not None
        rows = list(session.exec(select(GapEvidence).where(GapEvidence.gap_id == gap_id)
                                 .order_by(col(GapEvidence.at))))
        if not rows:
            return None
        # The chatbot knows its conversations by its own ids.
        external = dict(session.exec(select(Conversation.id, Conversation.external_id).where(
            col(Conversation.id).in_({r.conversation_id for r in rows}))).all())
        evidence = [Evidence(r.question, vec(r.embedding), r.agent_reply,
                             vec(r.reply_embedding) if r.reply_embedding else None)
                    for r in rows]
        centroid = vec(gap.centroid)
        matches = rank_entries(index=deps.index, bot_id=gap.bot_id, vector=centroid)
        bot_answers = Counter(r.bot_entry_id for r in rows if r.bot_entry_id)
        answered_with = bot_answers.most_common(1)[0][0] if bot_answers else None
        # The entry whose answer the agents' replies repeat is a candidate even when the
        # customers' wording is far from its phrasings: that is exactly a missed variant, and
        # proposing a new entry instead would split the answer in two.
        said = answers.closest(vec(gap.reply_centroid)) if gap.reply_centroid else None
        rejected = _rejections(session, gap_id=gap_id)
        # A reviewer who rejected "this belongs to entry E" has said E is not the home of
        # these questions: E is not offered again, so the gap gets another proposal (another
        # entry, or a new answer) instead of the same wrong one.
        refused = {r.entry_id for r in rejected if r.entry_id}
        candidates: list[Candidate] = []
        for entry_id in dict.fromkeys(
                [m.entry_id for m in matches[:CANDIDATES]]
                + ([answered_with] if answered_with else []) + ([said] if said else [])):
            if entry_id in refused:
                continue
            view = _entry_view(session, deps.embedder, entry_id, entries, answers.template)
            if view is not None:
                rated_entry = satisfaction.of(entry_id)
                candidates.append(Candidate(
                    view, float(np.max(view.phrasing_vectors @ centroid)),
                    rated_entry.share if rated_entry.answered >= MIN_RATED else None))
        answered_view = _entry_view(session, deps.embedder, answered_with, entries,
                                    answers.template) if answered_with else None
    wrong = _wrong_match(rows, evidence, answered_view, answers.template)
    kind, entry = classify(evidence, candidates, bot_answered_with=answered_with,
                           poor_satisfaction=settings.medium_satisfaction / 100,
                           wrong_match=wrong is not None)
    refused_answers = [r.answer for r in rejected if r.kind == SuggestionKind.new_answer]
    refused_vectors = deps.embedder.embed(
        [answers.template.distinctive(a) for a in refused_answers]) if refused_answers else None
    proposal = propose(kind, evidence, entry, max_variants=settings.max_triggers,
                       refused_answers=refused_vectors)
    known = [KnownAnswer(c.entry.id, c.entry.question, c.entry.answer_vector,
                         c.entry.phrasing_vectors) for c in candidates]
    same = duplicate_of(proposal.answer_vector, known) \
        if kind == SuggestionKind.new_answer and proposal.answer_vector is not None else None
    if same is not None:
        # The answer would repeat an entry's: teach that entry these phrasings instead of
        # creating its twin.
        kind = SuggestionKind.add_variants
        entry = next(c.entry for c in candidates if c.entry.id == same.entry_id)
        proposal = propose(kind, evidence, entry, max_variants=settings.max_triggers,
                           refused_answers=refused_vectors)
    context = None if kind == SuggestionKind.add_variants else GapContext(
        gap_id=gap_id, kind=kind, questions=proposal.asked, agent_replies=proposal.sources,
        entry_question=entry.question if entry else None,
        entry_answer=entry.answer if entry else None,
        kb_answers=[c.entry.answer for c in candidates],
        rejected=[RejectedDraft(r.answer, r.reason or "other", r.comment)
                  for r in rejected if r.kind != SuggestionKind.add_variants])

    week_ago = as_of - timedelta(days=7)
    recent = [r for r in rows if week_ago < as_utc(r.at) <= as_of]
    previous = [r for r in rows if week_ago - timedelta(days=7) < as_utc(r.at) <= week_ago]
    kinds = Counter(r.signal for r in rows)
    # An existing answer's priority: how it fares with everyone it was given to lately, and
    # whether the agents in this gap had to add to it after the bot gave it.
    improve = kind == SuggestionKind.improve_answer
    rated = satisfaction.of(entry.id) if improve and entry else None
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
    if wrong is not None:
        n = wrong["conversations"]
        note = (f"Answered with “{wrong['question']}”; agents said otherwise "
                f"({n} conversation{'s' if n != 1 else ''}).")
        warning = f"{note} {warning}" if warning else note
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
        if facts.answered_30d and improve else None,
        "incomplete": facts.incomplete if improve else None,
        # The bot answered these customers with an entry whose answer the agents then
        # contradicted: the entry is not what they asked about (null otherwise).
        "wrong_match": wrong,
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


def _wrong_match(rows: list[GapEvidence], evidence: list[Evidence],
                 answered: EntryView | None, template: Template) -> dict[str, Any] | None:
    """Whether the bot's answer was a wrong match for this gap: in most of the gap's
    conversations where the bot answered with that entry and an agent replied afterwards,
    the agent said otherwise (`says_otherwise`, on distinctive parts). Returns the evidence
    record (the entry, its question, how many conversations), else None."""
    if answered is None:
        return None
    distinct = template.distinctive(answered.answer)
    otherwise: set[str] = set()
    agreed: set[str] = set()
    for row, ev in zip(rows, evidence, strict=True):
        if row.bot_entry_id != answered.id or ev.agent_reply is None or ev.reply_vector is None:
            continue
        if says_otherwise(template.distinctive(ev.agent_reply), ev.reply_vector, distinct,
                          answered.answer_vector):
            otherwise.add(row.conversation_id)
        else:
            agreed.add(row.conversation_id)
    if len(otherwise) <= len(agreed):
        return None
    return {"entry_id": answered.id, "question": answered.question,
            "conversations": len(otherwise)}


def _entry_view(session: Session, embedder: Embedder, entry_id: str,
                cache: dict[str, EntryView | None], template: Template) -> EntryView | None:
    if entry_id not in cache:
        cache[entry_id] = _load_entry_view(session, embedder, entry_id, template)
    return cache[entry_id]


def _load_entry_view(session: Session, embedder: Embedder, entry_id: str,
                     template: Template) -> EntryView | None:
    entry = session.get(KBEntry, entry_id)
    if entry is None or not entry.active:
        return None
    phr = entry_phrasings(bot_id=entry.bot_id, entry_id=entry.id, question=entry.question,
                          variants=list(entry.variants), active=True)
    # The answer is compared with agents' replies, so by its distinctive part as they are.
    vecs = embedder.embed([p.text for p in phr] + [template.distinctive(entry.answer)])
    return EntryView(entry.id, entry.question, entry.answer, list(entry.variants),
                     vecs[:-1], vecs[-1])


def _rejections(session: Session, *, gap_id: str) -> list[RejectedProposal]:
    """The gap's rejected suggestions, with the reviewer's reason and comment (the comment
    lives in the rejection's audit row)."""
    rows = session.exec(
        select(Suggestion.id, Suggestion.kind, Suggestion.entry_id, Suggestion.answer,
               Suggestion.reject_reason)
        .where(Suggestion.gap_id == gap_id,
               Suggestion.status == SuggestionStatus.rejected)).all()
    if not rows:
        return []
    comments = {sid: (after or {}).get("comment") for sid, after in session.exec(
        select(AuditEvent.suggestion_id, AuditEvent.after).where(
            col(AuditEvent.suggestion_id).in_([r[0] for r in rows]),
            AuditEvent.action == "suggestion.rejected")).all()}
    return [RejectedProposal(kind, entry_id, answer, reason, comments.get(sid))
            for sid, kind, entry_id, answer, reason in rows]
