"""Reshaping gaps after assignment: merge converged ones, split disagreeing ones, close quiet."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import and_, delete, func, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from core.cycle.deps import CHUNK, blob, vec
from core.cycle.result import CycleResult
from core.models import Gap, GapEvidence, Suggestion, as_utc, utcnow
from core.pipeline import recluster
from core.policy.queue import MERGED, REANALYSED, withdraw
from core.status import OPEN_SUGGESTION_STATUSES, GapStatus

# A published gap closes once no failure joined it for this many days (and none awaits review).
QUIET_DAYS = 14


def reshape(session: Session, *, bot_id: str, touched: set[str], joined: set[str],
            disagreeing: set[str], full: bool, result: CycleResult) -> set[str]:
    """Merge converged open gaps, split disagreeing ones, carry suggestions over after a full
    re-analysis; returns the gaps whose suggestion must be (re)written."""
    added, removed = _merge(session, bot_id=bot_id, disagreeing=disagreeing, result=result)
    joined = (joined | added) - removed
    for gap_id in sorted(disagreeing - removed):
        parts = _split(session, gap_id=gap_id, result=result)
        added |= parts
        joined |= parts
    touched = (touched | added) - removed
    if full:
        _carry_suggestions(session, bot_id=bot_id, result=result)
        touched |= set(session.exec(select(Gap.id).where(
            Gap.bot_id == bot_id, Gap.status == GapStatus.open)).all())
    session.flush()
    status = {}
    ids = sorted(touched)
    for start in range(0, len(ids), CHUNK):
        status.update(session.exec(select(Gap.id, Gap.status).where(
            col(Gap.id).in_(ids[start:start + CHUNK]))).all())
    # A published gap gets a follow-up suggestion only for failures that joined it; one that
    # merely lost evidence (a re-sent transcript) has nothing new to propose.
    return {g for g in touched if status.get(g) in (GapStatus.open, GapStatus.rejected)
            or (status.get(g) == GapStatus.published and g in joined)}


def _merge(session: Session, *, bot_id: str, disagreeing: set[str],
           result: CycleResult) -> tuple[set[str], set[str]]:
    """Merge open gaps whose question and reply centroids converged. Returns (survivors,
    merged-away gaps). The survivor keeps a single open suggestion."""
    gaps = list(session.exec(select(Gap).where(Gap.bot_id == bot_id,
                                               Gap.status == GapStatus.open)
                             .order_by(col(Gap.created_at), col(Gap.id))))
    groups = recluster.merge_groups([recluster.Centroids(
        vec(g.centroid), vec(g.reply_centroid) if g.reply_centroid else None, g.size)
        for g in gaps])
    survivors: set[str] = set()
    removed: set[str] = set()
    for group in groups:
        members = [gaps[i] for i in group]
        ids = [g.id for g in members]
        open_sugs = list(session.exec(select(Suggestion).where(
            col(Suggestion.gap_id).in_(ids),
            col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))
            .order_by(col(Suggestion.created_at))))
        with_sug = {s.gap_id for s in open_sugs}
        # The survivor is the gap reviewers already see a suggestion for, else the largest
        # (then the oldest): what they know keeps its identity.
        survivor = max(members, key=lambda g: (g.id in with_sug, g.size, -ids.index(g.id)))
        others = [g for g in members if g is not survivor]
        q = recluster.merged_centroid([vec(g.centroid) for g in members],
                                      [g.size for g in members])
        r = recluster.merged_centroid(
            [vec(g.reply_centroid) if g.reply_centroid else None for g in members],
            [g.replies for g in members])
        assert q is not None
        survivor.centroid = blob(q)
        survivor.reply_centroid = blob(r) if r is not None else None
        survivor.size = sum(g.size for g in members)
        survivor.replies = sum(g.replies for g in members)
        lasts = [as_utc(g.last_failure_at) for g in members if g.last_failure_at]
        survivor.last_failure_at = max(lasts) if lasts else None
        survivor.updated_at = utcnow()
        session.add(survivor)
        session.execute(update(GapEvidence).where(
            col(GapEvidence.gap_id).in_([g.id for g in others]))
            .values(gap_id=survivor.id).execution_options(synchronize_session=False))
        for g in others:
            g.status, g.size, g.replies, g.updated_at = GapStatus.merged, 0, 0, utcnow()
            session.add(g)
        # One open suggestion per gap: the survivor's own, else the one reviewers saw first;
        # any other is withdrawn (its evidence now backs the kept one).
        keep = next((s for s in open_sugs if s.gap_id == survivor.id),
                    open_sugs[0] if open_sugs else None)
        for sug in open_sugs:
            if sug is not keep:
                withdraw(session, sug, because=MERGED, at=utcnow())
                result.suggestions_withdrawn += 1
                continue
            if sug.gap_id != survivor.id:
                sug.gap_id = survivor.id
                result.suggestions_carried += 1
            sug.updated_at = utcnow()
            session.add(sug)
        if disagreeing & set(ids):
            disagreeing.add(survivor.id)
        survivors.add(survivor.id)
        removed |= {g.id for g in others}
        result.gaps_merged += len(others)
    session.flush()
    return survivors, removed


def _split(session: Session, *, gap_id: str, result: CycleResult) -> set[str]:
    """Split an open gap whose agents' replies form clearly different groups. The largest part
    keeps the gap (and its open suggestion); each other part becomes a new open gap. Returns
    the gaps changed (empty when nothing split)."""
    gap = session.get(Gap, gap_id)
    if gap is None or gap.status != GapStatus.open \
            or gap.replies < 2 * recluster.SPLIT_MIN_PART:
        return set()
    rows = list(session.exec(select(GapEvidence.id, GapEvidence.embedding,
                                    GapEvidence.reply_embedding, GapEvidence.at)
                             .where(GapEvidence.gap_id == gap_id)
                             .order_by(col(GapEvidence.id))))
    if not rows:
        return set()
    questions = np.stack([vec(r[1]) for r in rows])
    replies = [vec(r[2]) if r[2] else None for r in rows]
    labels = recluster.split_parts(questions, replies)
    if labels is None:
        return set()
    changed = {gap.id}
    for part in range(int(labels.max()) + 1):
        members = np.nonzero(labels == part)[0]
        target = gap if part == 0 else Gap(bot_id=gap.bot_id, kind=gap.kind, centroid=b"",
                                           created_at=gap.created_at)
        q = recluster.unit(questions[members].sum(axis=0))
        with_reply = [replies[i] for i in members if replies[i] is not None]
        target.centroid = blob(q)
        target.reply_centroid = blob(recluster.unit(np.sum(with_reply, axis=0))) \
            if with_reply else None
        target.size = len(members)
        target.replies = len(with_reply)
        target.last_failure_at = max(as_utc(rows[i][3]) for i in members)
        target.updated_at = utcnow()
        session.add(target)
        if part == 0:
            continue
        session.flush()
        ev_ids = [rows[i][0] for i in members]
        for start in range(0, len(ev_ids), CHUNK):
            session.execute(update(GapEvidence).where(
                col(GapEvidence.id).in_(ev_ids[start:start + CHUNK]))
                .values(gap_id=target.id).execution_options(synchronize_session=False))
        changed.add(target.id)
        result.gaps_split += 1
    session.flush()
    return changed


def _carry_suggestions(session: Session, *, bot_id: str, result: CycleResult) -> None:
    """After a full re-analysis: each open suggestion of a superseded gap moves to the rebuilt
    open gap that holds most of its evidence (the strongest claim first, one suggestion per
    gap) or is withdrawn; then the superseded gaps' evidence is dropped."""
    superseded = list(session.exec(select(Gap.id).where(
        Gap.bot_id == bot_id, Gap.status == GapStatus.superseded)).all())
    sugs: list[Suggestion] = []
    for start in range(0, len(superseded), CHUNK):
        sugs += session.exec(select(Suggestion).where(
            col(Suggestion.gap_id).in_(superseded[start:start + CHUNK]),
            col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))).all()
    old, new = aliased(GapEvidence), aliased(GapEvidence)
    claims: list[tuple[int, str, str]] = []
    old_gaps = sorted({s.gap_id for s in sugs if s.gap_id})
    for start in range(0, len(old_gaps), CHUNK):
        claims += [(int(n), o, g) for o, g, n in session.exec(
            select(old.gap_id, new.gap_id, func.count())
            .join(new, and_(new.conversation_id == old.conversation_id,
                            new.question == old.question))
            .join(Gap, col(Gap.id) == new.gap_id)
            .where(col(old.gap_id).in_(old_gaps[start:start + CHUNK]),
                   Gap.status == GapStatus.open)
            .group_by(old.gap_id, new.gap_id)).all()]
    claims.sort(key=lambda c: (-c[0], c[1], c[2]))
    by_gap: dict[str, list[Suggestion]] = {}
    for sug in sorted(sugs, key=lambda s: as_utc(s.created_at)):
        by_gap.setdefault(sug.gap_id or "", []).append(sug)
    taken: set[str] = set()
    placed: set[str] = set()
    for _, old_gap, new_gap in claims:
        if new_gap in taken:
            continue
        sug = next((s for s in by_gap.get(old_gap, []) if s.id not in placed), None)
        if sug is None:
            continue
        sug.gap_id = new_gap
        sug.updated_at = utcnow()
        session.add(sug)
        taken.add(new_gap)
        placed.add(sug.id)
        result.suggestions_carried += 1
    for sug in sugs:
        if sug.id not in placed:
            withdraw(session, sug, because=REANALYSED, at=utcnow())
            result.suggestions_withdrawn += 1
    session.flush()
    for start in range(0, len(superseded), CHUNK):
        chunk = superseded[start:start + CHUNK]
        session.execute(delete(GapEvidence).where(col(GapEvidence.gap_id).in_(chunk))
                        .execution_options(synchronize_session=False))
        session.execute(update(Gap).where(col(Gap.id).in_(chunk)).values(size=0, replies=0)
                        .execution_options(synchronize_session=False))


def close_quiet(session: Session, *, bot_id: str, as_of: datetime,
                result: CycleResult) -> None:
    """Close published gaps no failure joined for QUIET_DAYS (and none awaits review)."""
    cutoff = as_of - timedelta(days=QUIET_DAYS)
    for gap in session.exec(select(Gap).where(Gap.bot_id == bot_id,
                                              Gap.status == GapStatus.published)):
        moments = [as_utc(t) for t in (gap.published_at, gap.last_failure_at) if t]
        if (max(moments) if moments else as_utc(gap.updated_at)) > cutoff:
            continue
        if session.exec(select(Suggestion.id).where(
                Suggestion.gap_id == gap.id,
                col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))).first() is not None:
            continue
        gap.status = GapStatus.closed
        gap.updated_at = utcnow()
        session.add(gap)
        result.gaps_closed += 1
