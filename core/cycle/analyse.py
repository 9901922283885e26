"""Reading conversations into gaps: failures found, embedded, and assigned to the gap they join."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, insert, or_, update
from sqlmodel import Session, col, select

from core.bots import BotSettings
from core.cycle.deps import CHUNK, CycleDeps, blob, vec
from core.cycle.result import CycleResult
from core.cycle.template import bot_template
from core.db import session_scope
from core.embeddings import Embedder
from core.learning import Taught
from core.models import Conversation, Gap, GapEvidence, as_utc, utcnow
from core.pipeline import recluster
from core.pipeline.gaps import GapState, assign
from core.pipeline.signals import Signal, detect, transcript_from_row
from core.status import GapStatus, SuggestionKind

BATCH = 2_000
# A full re-analysis reads stored conversations in pages of this many (memory stays bounded).
FULL_BATCH = 5_000
# Gap lifecycle (docs/signals.md): failures join open gaps, and also rejected and published
# ones, which are frozen (they collect without moving). A published gap closes once no failure
# joined it for QUIET_DAYS; merged and superseded gaps handed their evidence to another gap.
ASSIGNABLE: tuple[GapStatus, ...] = (GapStatus.open, GapStatus.rejected, GapStatus.published)
FROZEN: tuple[GapStatus, ...] = (GapStatus.rejected, GapStatus.published)
# A re-analysis leaves decided failures where they are: declined ones stay set aside too.
DECIDED: tuple[GapStatus, ...] = (GapStatus.rejected, GapStatus.published, GapStatus.closed,
                                  GapStatus.declined)
# Signals that point at a missing or wrong answer; abandonment alone is too weak to act on.
ACTIONABLE = ("unanswered", "negative_feedback")

# What a pass found: the gaps touched (new, joined or lost evidence), the gaps that new
# failures joined, and those whose new agents' replies disagree with the rest (split candidates).
Touched = tuple[set[str], set[str], set[str]]


@dataclass
class EmbeddedSignals:
    signals: list[Signal]
    vectors: np.ndarray
    replies: list[np.ndarray | None]
    # Agents' replies are embedded by their distinctive part (core.pipeline.macros), which
    # depends on the bot's template, learned from its stored replies when the batch is
    # assigned (`_cluster`); until then the batch carries the embedder and the vectors already
    # known by text.
    embedder: Embedder | None = None
    known: dict[str, np.ndarray] = field(default_factory=dict)


def analyse_new(deps: CycleDeps, *, bot_id: str, as_of: datetime, settings: BotSettings,
                result: CycleResult, taught: list[Taught] | None = None) -> Touched:
    """Assign the failures of conversations not analysed yet. `taught` collects the failures
    a human agent replied to (core.learning)."""
    touched: set[str] = set()
    joined: set[str] = set()
    odd: set[str] = set()
    while True:
        # Read and embed outside any write transaction: on SQLite a write transaction
        # blocks every other writer, and embedding takes a while.
        read_at = utcnow()
        with Session(deps.engine) as session:
            rows = list(session.exec(
                select(Conversation.id, Conversation.started_at, Conversation.messages,
                       Conversation.feedback, Conversation.csat)
                .where(Conversation.bot_id == bot_id, col(Conversation.analyzed_at).is_(None),
                       col(Conversation.started_at) <= as_of)
                .order_by(col(Conversation.started_at)).limit(BATCH)
            ))
        if not rows:
            break
        batch = _signals(deps.embedder, rows, result)
        lost, new, disagree = _assign_batch(
            deps, bot_id=bot_id, batch=batch, threshold=settings.gap_similarity,
            resent=[r[0] for r in rows], analysed=[r[0] for r in rows], read_at=read_at)
        _collect(batch, taught)
        touched |= lost | new
        joined |= new
        odd |= disagree
    return touched, joined, odd


def analyse_all(deps: CycleDeps, *, bot_id: str, as_of: datetime, settings: BotSettings,
                result: CycleResult, reembed: bool = False,
                taught: list[Taught] | None = None) -> Touched:
    """The full re-analysis (see `Cycle.reanalyze`): supersede the open gaps, then stream every
    conversation up to `as_of` through the assignment again, leaving out failures that are
    already evidence of a decided gap."""
    with session_scope(deps.engine) as session:
        session.execute(
            update(Gap).where(Gap.bot_id == bot_id, Gap.status == GapStatus.open)
            .values(status=GapStatus.superseded, updated_at=utcnow())
            .execution_options(synchronize_session=False))
    touched: set[str] = set()
    joined: set[str] = set()
    odd: set[str] = set()
    after: tuple[datetime, str] | None = None
    while True:
        read_at = utcnow()
        with Session(deps.engine) as session:
            query = (select(Conversation.id, Conversation.started_at, Conversation.messages,
                            Conversation.feedback, Conversation.csat, Conversation.analyzed_at)
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
            kept, known = _stored_evidence(
                session, deps.embedder, conversation_ids=[r[0] for r in rows],
                decided_for={r[0] for r in rows if r[5] is not None}, vectors=not reembed)
        batch = _signals(deps.embedder, rows, result, skip=kept,
                         known=known if not reembed else None)
        # Never analysed, or re-sent since: its old evidence goes, as in a normal cycle.
        lost, new, disagree = _assign_batch(
            deps, bot_id=bot_id, batch=batch, threshold=settings.gap_similarity,
            resent=[r[0] for r in rows if r[5] is None], analysed=[r[0] for r in rows],
            read_at=read_at)
        _collect(batch, taught)
        touched |= lost | new
        joined |= new
        odd |= disagree
    return touched, joined, odd


def _collect(batch: EmbeddedSignals, taught: list[Taught] | None) -> None:
    if taught is None:
        return
    taught.extend(Taught(s.conversation_id, s.question, reply)
                  for s, reply in zip(batch.signals, batch.replies, strict=True)
                  if reply is not None)


def _signals(embedder: Embedder, rows: list[Any], result: CycleResult,
             skip: set[tuple[str, str]] | None = None,
             known: dict[str, np.ndarray] | None = None) -> EmbeddedSignals:
    """The actionable failures of `rows` (id, started_at, messages, feedback, csat, ...),
    embedded; failures keyed (conversation id, question) in `skip` are left out, and texts in
    `known` are not embedded again."""
    signals: list[Signal] = []
    for cid, started_at, messages, feedback, csat, *_ in rows:
        found, _ = detect(transcript_from_row(id=cid, started_at=started_at, messages=messages,
                                              feedback=feedback, csat=csat))
        signals.extend(found)
    result.conversations_analyzed += len(rows)
    for sig in signals:
        result.signals[sig.kind] += 1
    actionable = [sig for sig in signals if sig.kind in ACTIONABLE
                  and (not skip or (sig.conversation_id, sig.question) not in skip)]
    if known is None:
        return _embed(embedder, actionable)
    return _embed_reusing(embedder, actionable, known)


def _embed(embedder: Embedder, signals: list[Signal]) -> EmbeddedSignals:
    """The questions' vectors; the agents' replies are embedded once the bot's template is
    known (`_embed_replies`)."""
    if not signals:
        return EmbeddedSignals([], np.zeros((0, 0), dtype=np.float32), [])
    vectors = embedder.embed([s.question for s in signals])
    return EmbeddedSignals(signals, vectors, [None] * len(signals), embedder=embedder)


def _embed_reusing(embedder: Embedder, signals: list[Signal], known: dict[str, np.ndarray]
                   ) -> EmbeddedSignals:
    """As `_embed`, but a text whose vector is in `known` (text -> vector, e.g. read back from
    stored evidence) is not embedded again: a vector depends on the text only."""
    if not signals:
        return _embed(embedder, signals)
    missing = [t for t in dict.fromkeys(s.question for s in signals) if t not in known]
    if missing:
        known.update(zip(missing, embedder.embed(missing), strict=True))
    return EmbeddedSignals(signals, np.stack([known[s.question] for s in signals]),
                           [None] * len(signals), embedder=embedder, known=known)


def _embed_replies(session: Session, *, bot_id: str, batch: EmbeddedSignals) -> None:
    """Embed the batch's agents' replies by their distinctive part: what remains once the
    bot's template (learned from its stored replies and this batch's) is taken out, so that
    replies to different topics pasted from one macro compare by what differs. Each distinct
    text is embedded once."""
    if batch.embedder is None:
        return
    idx = [i for i, s in enumerate(batch.signals) if s.agent_reply]
    if not idx:
        return
    template = bot_template(session, bot_id=bot_id,
                            replies=[batch.signals[i].agent_reply or "" for i in idx],
                            questions=batch.vectors[idx])
    texts = [template.distinctive(batch.signals[i].agent_reply or "") for i in idx]
    missing = [t for t in dict.fromkeys(texts) if t not in batch.known]
    if missing:
        batch.known.update(zip(missing, batch.embedder.embed(missing), strict=True))
    for i, text in zip(idx, texts, strict=True):
        batch.replies[i] = batch.known[text]


def _stored_evidence(session: Session, embedder: Embedder, *, conversation_ids: list[str],
                     decided_for: set[str], vectors: bool
                     ) -> tuple[set[tuple[str, str]], dict[str, np.ndarray]]:
    """What the evidence already stored for these conversations tells a re-analysis: the
    (conversation, question) failures that belong to a decided gap (only for conversations in
    `decided_for`, the ones analysed before and unchanged since), and (if `vectors`) the
    stored question vectors by text. Reply vectors are not reused: each is the vector of the
    reply's distinctive part under the template of its day, and the re-analysis strips every
    reply with the template learned now (`_embed_replies`)."""
    keys: set[tuple[str, str]] = set()
    known: dict[str, np.ndarray] = {}
    dim = getattr(embedder, "dimension", None)
    for start in range(0, len(conversation_ids), CHUNK):
        chunk = conversation_ids[start:start + CHUNK]
        keys.update((c, q) for c, q in session.exec(
            select(GapEvidence.conversation_id, GapEvidence.question)
            .join(Gap, col(Gap.id) == col(GapEvidence.gap_id))
            .where(col(GapEvidence.conversation_id).in_(chunk),
                   col(Gap.status).in_(DECIDED))).all() if c in decided_for)
        if not vectors:
            continue
        for text, stored in session.exec(
                select(GapEvidence.question, GapEvidence.embedding)
                .where(col(GapEvidence.conversation_id).in_(chunk))).all():
            if text and stored and text not in known:
                v = vec(stored)
                if dim is None or len(v) == dim:
                    known[text] = v
    return keys, known


def _assign_batch(deps: CycleDeps, *, bot_id: str, batch: EmbeddedSignals, threshold: float,
                  resent: list[str], analysed: list[str], read_at: datetime
                  ) -> tuple[set[str], set[str], set[str]]:
    """One write transaction per batch: drop the old evidence of `resent`, assign the batch's
    failures to gaps, mark `analysed` as read. Returns the gaps that lost evidence, the gaps
    that gained some, and the gaps whose agents' replies now disagree."""
    with session_scope(deps.engine) as session:
        lost = _drop_evidence(session, conversation_ids=resent)
        new, disagree = _cluster(session, bot_id=bot_id, batch=batch, threshold=threshold)
        _mark_analyzed(session, ids=analysed, read_at=read_at)
    return lost, new, disagree


def _mark_analyzed(session: Session, *, ids: list[str], read_at: datetime) -> None:
    # A transcript re-sent while we worked stays unanalysed for the next pass.
    for start in range(0, len(ids), CHUNK):
        session.execute(
            update(Conversation)
            .where(col(Conversation.id).in_(ids[start:start + CHUNK]),
                   col(Conversation.received_at) <= read_at)
            .values(analyzed_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def _drop_evidence(session: Session, *, conversation_ids: list[str]) -> set[str]:
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


def _cluster(session: Session, *, bot_id: str, batch: EmbeddedSignals,
             threshold: float) -> tuple[set[str], set[str]]:
    """Assign a batch of failures to gaps. Returns the gaps they joined or seeded, and those
    among them whose new agents' replies disagree with the gap (split candidates)."""
    if not batch.signals:
        return set(), set()
    _embed_replies(session, bot_id=bot_id, batch=batch)
    # Rejected and published gaps stay candidates so their failures accumulate there
    # (suppressed, or as a follow-up of what was published) instead of seeding a look-alike
    # gap; both are frozen so that they never drift onto other topics.
    gaps = list(session.exec(select(Gap).where(
        Gap.bot_id == bot_id, col(Gap.status).in_(ASSIGNABLE))))
    states = [GapState(id=g.id, centroid=vec(g.centroid).copy(), size=g.size,
                       reply_centroid=vec(g.reply_centroid).copy() if g.reply_centroid
                       else None, replies=g.replies, frozen=g.status in FROZEN)
              for g in gaps]
    changed = assign(batch.vectors, states, threshold=threshold, replies=batch.replies)
    touched: set[str] = set()
    odd: set[str] = set()
    by_id = {g.id: g for g in gaps}
    rows: list[dict[str, Any]] = []
    for state in changed:
        if state.id is None:
            gap = Gap(bot_id=bot_id, kind=SuggestionKind.new_answer, centroid=b"")
        else:
            gap = by_id[state.id]
        gap.centroid = blob(state.centroid)
        gap.reply_centroid = blob(state.reply_centroid) \
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
                "at": s.at, "embedding": blob(batch.vectors[i]),
                "bot_entry_id": s.bot_entry_id,
                "reply_embedding": blob(reply) if reply is not None else None,
            })
        touched.add(gap.id)
    session.flush()
    if rows:
        # One executemany of plain rows: an ORM object per failure costs more than the insert
        # at the scale of a full re-analysis.
        session.execute(insert(GapEvidence), rows)
    return touched, odd
