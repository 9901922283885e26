"""Setting declined questions aside: failures answered with a stock refusal leave the gaps.

Each bot has one *declined* group (a gap with status `declined`): the questions its agents
turned away with the same stock sentence (`core.pipeline.declines`). The group never reaches a
reviewer; it is counted by the cycle and listed on demand (`GET /bots/{slug}/questions`).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from core.cycle.deps import CHUNK, blob, vec
from core.cycle.result import CycleResult
from core.models import Gap, GapEvidence, utcnow
from core.pipeline import declines, recluster
from core.policy.queue import withdraw_open
from core.status import GapStatus, SuggestionKind

# Why a suggestion left the queue when all its questions turned out to be declined ones.
DECLINED = "its agents declined these questions as off-topic (a stock refusal)"
# Gaps whose evidence tells the bot's stock replies apart (merged and superseded gaps handed
# theirs on).
LIVE = (GapStatus.open, GapStatus.rejected, GapStatus.published, GapStatus.closed,
        GapStatus.declined)
# Bounds on what one sweep reads: the most used replies, a sample of questions each, and a
# sample of all failed questions for the background.
CANDIDATE_REPLIES = 300
RAW_REPLIES = 5_000
QUESTIONS_PER_REPLY = 60
BACKGROUND_SAMPLE = 1_000


def declined_gap(session: Session, *, bot_id: str) -> Gap:
    """The bot's declined group, created on first use."""
    gap = session.exec(select(Gap).where(Gap.bot_id == bot_id,
                                         Gap.status == GapStatus.declined)).first()
    if gap is None:
        gap = Gap(bot_id=bot_id, kind=SuggestionKind.new_answer, status=GapStatus.declined,
                  centroid=b"")
        session.add(gap)
        session.flush()
    return gap


def sweep(session: Session, *, bot_id: str, result: CycleResult) -> set[str]:
    """Move the open gaps' failures that agents answered with a stock refusal into the
    declined group. Returns the open gaps that kept some evidence and must be planned again;
    gaps left empty are closed and their suggestions withdrawn."""
    refusals = _refusals(session, bot_id=bot_id)
    if not refusals:
        return set()
    open_ids = list(session.exec(select(Gap.id).where(Gap.bot_id == bot_id,
                                                      Gap.status == GapStatus.open)).all())
    moving: list[tuple[int, str]] = []
    for start in range(0, len(open_ids), CHUNK):
        moving += [(int(i), g) for i, g, reply in session.exec(
            select(GapEvidence.id, GapEvidence.gap_id, GapEvidence.agent_reply).where(
                col(GapEvidence.gap_id).in_(open_ids[start:start + CHUNK]),
                col(GapEvidence.agent_reply).is_not(None))).all()
            if declines.reply_key(reply or "") in refusals]
    if not moving:
        return set()
    group = declined_gap(session, bot_id=bot_id)
    ids = [i for i, _ in moving]
    for start in range(0, len(ids), CHUNK):
        session.execute(update(GapEvidence).where(col(GapEvidence.id).in_(ids[start:start + CHUNK]))
                        .values(gap_id=group.id).execution_options(synchronize_session=False))
    group.size = int(session.exec(select(func.count()).select_from(GapEvidence).where(
        GapEvidence.gap_id == group.id)).one())
    group.updated_at = utcnow()
    session.add(group)
    result.declined += len(moving)
    replan: set[str] = set()
    for gap_id in sorted({g for _, g in moving}):
        if _refresh(session, gap_id=gap_id):
            replan.add(gap_id)
        else:
            result.suggestions_withdrawn += withdraw_open(session, gap_id=gap_id,
                                                          because=DECLINED, at=utcnow())
    session.flush()
    return replan


def _refusals(session: Session, *, bot_id: str) -> set[str]:
    """The reply keys that are this bot's stock refusals, judged on its stored evidence."""
    live = select(Gap.id).where(Gap.bot_id == bot_id, col(Gap.status).in_(LIVE))
    asked = func.count(func.distinct(GapEvidence.question))
    used = session.exec(
        select(GapEvidence.agent_reply, asked)
        .where(col(GapEvidence.gap_id).in_(live), col(GapEvidence.agent_reply).is_not(None))
        .group_by(GapEvidence.agent_reply).order_by(asked.desc()).limit(RAW_REPLIES)).all()
    # The same reply typed with other case or punctuation counts as one.
    raw: dict[str, list[str]] = {}
    count: dict[str, int] = {}
    for reply, n in used:
        key = declines.reply_key(reply or "")
        raw.setdefault(key, []).append(reply or "")
        count[key] = count.get(key, 0) + int(n)
    keys = sorted((k for k in count if count[k] >= declines.MIN_QUESTIONS),
                  key=lambda k: -count[k])[:CANDIDATE_REPLIES]
    if len(keys) < declines.MIN_GROUPS:
        return set()
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key in keys:
        questions = groups.setdefault(key, {})
        for question, embedding in session.exec(
                select(GapEvidence.question, GapEvidence.embedding)
                .where(col(GapEvidence.gap_id).in_(live),
                       col(GapEvidence.agent_reply).in_(raw[key][:CHUNK]))
                .order_by(col(GapEvidence.id).desc()).limit(QUESTIONS_PER_REPLY)).all():
            questions.setdefault(" ".join(question.lower().split()), vec(embedding))
    background = [vec(e) for e in session.exec(
        select(GapEvidence.embedding).where(col(GapEvidence.gap_id).in_(live))
        .order_by(col(GapEvidence.id).desc()).limit(BACKGROUND_SAMPLE)).all()]
    found = declines.stock_refusals(
        {k: np.stack(list(q.values())) for k, q in groups.items() if q},
        np.stack(background) if background else np.zeros((0, 1), dtype=np.float32))
    return set(found.keys)


def _refresh(session: Session, *, gap_id: str) -> bool:
    """Recompute an open gap's size and centroids from the evidence it kept; close it when
    none is left. Returns whether it still holds evidence."""
    gap = session.get(Gap, gap_id)
    assert gap is not None
    rows = session.exec(select(GapEvidence.embedding, GapEvidence.reply_embedding)
                        .where(GapEvidence.gap_id == gap_id)).all()
    gap.updated_at = utcnow()
    if not rows:
        gap.status, gap.size, gap.replies = GapStatus.closed, 0, 0
        session.add(gap)
        return False
    questions = np.stack([vec(q) for q, _ in rows])
    replies = [vec(r) for _, r in rows if r]
    gap.centroid = blob(recluster.unit(questions.sum(axis=0)))
    gap.reply_centroid = blob(recluster.unit(np.sum(replies, axis=0))) if replies else None
    gap.size, gap.replies = len(rows), len(replies)
    session.add(gap)
    return True
