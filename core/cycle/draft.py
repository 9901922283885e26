"""Drafting the planned answers and checking them: support, duplicates, contradictions, category."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from sqlmodel import Session, col, select

from core.answering import NEIGHBOURS
from core.bots import BotSettings
from core.cycle.deps import CHUNK, CycleDeps
from core.cycle.plan import SuggestionPlan
from core.cycle.result import CycleResult
from core.embeddings import Embedder
from core.generation import Draft
from core.index import IndexUnavailable, PhrasingIndex
from core.learning import release_keys, without_released
from core.models import KBEntry, Suggestion
from core.pipeline.checks import REPLAY_QUESTIONS, contradicted_by, duplicate_of, evidence_replay
from core.pipeline.proposals import LOW_CONFIDENCE, NO_EVIDENCE_CONFIDENCE, PLACEHOLDER_ANSWERS
from core.policy.categories import CategoryClassifier
from core.status import SuggestionKind

log = logging.getLogger(__name__)


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


def finish(deps: CycleDeps, plans: list[SuggestionPlan], *, threshold: int,
           result: CycleResult) -> dict[str, np.ndarray]:
    """Draft the answers (all gaps in one call, so an LLM generator can work on several at
    once), then check each draft before it is proposed: how well the evidence supports it,
    duplicates and contradictions in the KB, and the evidence replay. Returns the vectors of
    the texts embedded on the way (answers, agents' replies, questions) by text."""
    drafting = [p for p in plans if p.context is not None]
    if deps.generator is not None and drafting:
        started = time.perf_counter()
        drafts = deps.generator.draft_all([p.context for p in drafting if p.context])
        result.generation_seconds += time.perf_counter() - started
        for plan, draft in zip(drafting, drafts, strict=True):
            _apply_draft(plan, draft)
            result.tokens = result.tokens + draft.usage
    # Most answers are an agent's reply or the entry's answer, whose vectors are at hand; only
    # texts a generator rewrote are embedded (a full re-analysis embeds no evidence).
    known: dict[str, np.ndarray] = {}
    for p in plans:
        if p.proposal is not None and p.proposal.answer_vector is not None:
            known[p.proposal.answer] = p.proposal.answer_vector
        if p.proposal is not None and p.proposal.source_vectors is not None:
            known.update(zip(p.proposal.sources, p.proposal.source_vectors, strict=True))
    fresh = sorted({p.fields["answer"] for p in plans} - set(known))
    if fresh:
        known.update(zip(fresh, deps.embedder.embed(fresh), strict=True))
    for plan in plans:
        _check(deps.index, plan, known[plan.fields["answer"]], threshold=threshold)
    for p in plans:
        if p.proposal is not None and p.proposal.asked_vectors is not None:
            known.update(zip(p.proposal.asked, p.proposal.asked_vectors, strict=True))
    return known


def _apply_draft(plan: SuggestionPlan, draft: Draft) -> None:
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
    _warn(plan, *notes)


def _check(index: PhrasingIndex, plan: SuggestionPlan, vector: np.ndarray, *,
           threshold: int) -> None:
    fields, proposal = plan.fields, plan.proposal
    if proposal is None or proposal.asked_vectors is None:
        return
    drafted = fields["answer"] not in PLACEHOLDER_ANSWERS \
        and not fields["evidence"].get("needs_answer")
    if not drafted:
        fields["evidence"]["needs_answer"] = True
    if plan.context is not None and proposal.source_vectors is not None and drafted:
        # How much of the draft the agents' replies support: a draft far from what they said
        # is a guess, whatever the evidence's volume.
        support = float(np.max(proposal.source_vectors @ vector))
        fields["evidence"]["support"] = round(support, 3)
        fields["confidence"] = min(fields["confidence"],
                                   round(100 * min(1.0, max(0.0, (support - 0.5) / 0.4))))
    if fields["kind"] == SuggestionKind.new_answer and drafted:
        same = duplicate_of(vector, plan.known)
        if same is not None:
            fields["evidence"]["duplicate_of"] = same.entry_id
            _warn(plan, f'The KB already says this in "{same.question}": consider adding '
                        "these phrasings to that entry instead.")
    if drafted:
        clashes = contradicted_by(vector, proposal.asked_vectors, plan.known,
                                  skip=fields["entry_id"])
        if clashes:
            fields["evidence"]["contradicts"] = [c.entry_id for c in clashes]
            _warn(plan, "May contradict: " + "; ".join(
                f'"{c.question}" is asked alike but answered differently'
                for c in clashes) + ".")
    try:
        asked = proposal.asked_vectors[:REPLAY_QUESTIONS]
        released = release_keys([*proposal.asked, *proposal.variants])
        figures = evidence_replay(
            question_vectors=asked,
            # Approving releases the gap's questions from "nobody" (core.learning): the
            # replay is of the index as it will be then.
            hits=[without_released(hs, released) for hs in index.query_many(
                bot_id=plan.bot_id, vectors=asked, k=NEIGHBOURS)],
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
        _warn(plan, f"Low confidence ({fields['confidence']}/100): check the answer before "
                    "approving.")


def _warn(plan: SuggestionPlan, *notes: str) -> None:
    text = " ".join(n for n in [plan.fields.get("warning"), *notes] if n)
    plan.fields["warning"] = text or None


def categorise(deps: CycleDeps, plans: list[SuggestionPlan], *, bot_id: str,
               settings: BotSettings, vectors: dict[str, np.ndarray]) -> None:
    """Each suggestion's topic category: the entry's own when a person set one, a person's
    earlier correction for this gap, else the classifier's."""
    if not plans:
        return
    with Session(deps.engine) as session:
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
    classifier = CategoryClassifier(KnownFirst(deps.embedder, vectors), settings.categories(),
                                    corrections)
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
            # An entry's own label counts only when it is one the policy knows; a free-form KB
            # label ("returns") says nothing about pricing or legal risk.
            fields["category"] = entry_category[fields["entry_id"]]
            fields["evidence"]["category_why"] = "the entry's category"
        else:
            fields["category"] = match.name if match else None
            if match is not None:
                fields["evidence"]["category_why"] = match.why
        fields["category_source"] = "auto"
