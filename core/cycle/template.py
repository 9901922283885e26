"""A bot's agents' reply template, learned each cycle from the replies stored with its evidence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlmodel import Session, col, select

from core.cycle.deps import vec
from core.models import Gap, GapEvidence
from core.pipeline.macros import Template, learn

# The template is learned from the bot's most recent replies: enough to see every part of a
# macro many times over, few enough that learning stays a fraction of a second per cycle.
LEARN_FROM = 5_000


def bot_template(session: Session, *, bot_id: str, replies: Sequence[str] = (),
                 questions: np.ndarray | None = None) -> Template:
    """The template of `bot_id`'s agents' replies: learned from the LEARN_FROM latest replies
    stored with its gaps' evidence, plus `replies` (to the questions whose vectors are the
    rows of `questions`) not stored yet."""
    rows = session.exec(
        select(GapEvidence.agent_reply, GapEvidence.embedding)
        .join(Gap, col(Gap.id) == col(GapEvidence.gap_id))
        .where(Gap.bot_id == bot_id, col(GapEvidence.agent_reply).is_not(None))
        .order_by(col(GapEvidence.id).desc()).limit(LEARN_FROM)).all()
    texts = [r for r, _ in rows if r] + list(replies)
    if not texts:
        return Template()
    stored = [vec(q) for r, q in rows if r]
    dim = len(stored[0]) if stored else (questions.shape[1] if questions is not None else 0)
    parts = [np.stack(stored)] if stored else []
    if questions is not None and len(questions):
        if questions.shape[1] != dim:
            # Stored with another embedding model (before a --reembed): learn from the new.
            texts, parts = list(replies), []
        parts.append(questions)
    if not parts:
        return Template()
    return learn(texts, np.concatenate(parts).astype(np.float64))
