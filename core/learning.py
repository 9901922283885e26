"""Learning from the agents: a question a human agent answered with an entry's answer becomes a
phrasing the matcher recognises as that entry's.

A starting KB often has one question an entry, and the embedding model recognises few
paraphrases from one. Every escalation the agents answer by restating an entry's answer is a
customer's own wording labelled by a person: the strongest evidence the bot gets. Waiting for a
reviewer to approve each one as a trigger (add-variants suggestions, capped at a few phrasings
a card) leaves most of it unused, so the cycle learns them at once:

- only a reply that *restates* one entry's answer teaches (its distinctive part — the reply
  without the agents' template, core.pipeline.macros — is as close to that answer as a
  pasted or lightly personalised copy, and clearly closer than to any other entry's); a reply
  that merely resembles an answer, a decline or a reply mixing two answers teaches nothing;
- what is learned is the question cleaned as a KB question would be: identifiers redacted and
  the words naming them dropped, greetings gone; a question that is chit-chat, or still
  carries an identifier, is not learned;
- learned phrasings only steer recognition towards an answer a person already approved: they
  are not KB triggers, never change what an answer says, and the cycle still proposes them
  as add-variants suggestions; a reviewer who rejects such a suggestion blocks its questions
  for that entry for good;
- `learn_from_agents: false` in a bot's settings turns it off (reviewed phrasings only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from core.models import IndexOutbox, LearnedPhrasing, utcnow
from core.pipeline.wording import clean_question, has_identifier, is_chitchat

# Cosine between a reply's distinctive part and an answer's at which the agent restated that
# answer (a pasted macro scores ~1.0, a personalised copy ~0.9; two answers on neighbouring
# topics of one help desk score 0.6-0.8 with the model the project ships).
RESTATES = 0.9
# ... and by how much it must beat every other entry's answer: a reply as close to two answers
# says neither.
MARGIN = 0.05
# The newest phrasings an entry keeps: enough to cover how customers ask, bounded so a very
# popular entry does not crowd the index.
MAX_PER_ENTRY = 200
# Questions shorter than this many characters once cleaned carry no topic ("card?").
MIN_CHARS = 8


@dataclass(frozen=True)
class Taught:
    """A failure a human agent replied to: the customer's question, and the vector of the
    reply's distinctive part."""

    conversation_id: str
    question: str
    reply: np.ndarray


def text_key(text: str) -> str:
    """The digest the index ids a phrasing by (core.index.phrasing_id), so a learned phrasing
    equal to a trigger is one vector, not two."""
    return hashlib.sha1(text.strip().lower().encode("utf-8")).hexdigest()[:16]


def learnable(question: str) -> str | None:
    """The question as it would be learned, or None when it must not be."""
    cleaned = clean_question(question)
    if len(cleaned) < MIN_CHARS or is_chitchat(cleaned) or has_identifier(cleaned) \
            or "[" in cleaned:
        return None
    return cleaned


def restated(reply: np.ndarray, entry_ids: Sequence[str], answers: np.ndarray | None
             ) -> str | None:
    """The entry whose answer `reply` restates, if exactly one does."""
    if answers is None or not len(entry_ids):
        return None
    sims = answers @ reply
    order = np.argsort(-sims)
    best = float(sims[order[0]])
    runner_up = float(sims[order[1]]) if len(order) > 1 else -1.0
    if best < RESTATES or best - runner_up < MARGIN:
        return None
    return entry_ids[int(order[0])]


def learn(session: Session, *, bot_id: str, taught: Iterable[Taught], entry_ids: Sequence[str],
          answers: np.ndarray | None) -> tuple[set[str], int]:
    """Record what the agents taught; returns the entries whose phrasings changed (an outbox
    row is written for each, in this transaction, so the index follows) and how many
    phrasings were learned."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for t in taught:
        entry_id = restated(t.reply, entry_ids, answers)
        text = learnable(t.question) if entry_id else None
        if entry_id is None or text is None:
            continue
        found.setdefault((entry_id, text_key(text)), (text, t.conversation_id))
    if not found:
        return set(), 0
    entries = {e for e, _ in found}
    known = set(session.exec(select(LearnedPhrasing.entry_id, LearnedPhrasing.text_key).where(
        col(LearnedPhrasing.entry_id).in_(entries))).all())
    now = utcnow()
    changed: set[str] = set()
    added = 0
    for (entry_id, key), (text, conversation_id) in found.items():
        if (entry_id, key) in known:
            continue  # learned before, or blocked by a reviewer
        session.add(LearnedPhrasing(bot_id=bot_id, entry_id=entry_id, text=text, text_key=key,
                                    conversation_id=conversation_id, learned_at=now))
        changed.add(entry_id)
        added += 1
    session.flush()
    for entry_id in changed:
        _keep_newest(session, entry_id)
        session.add(IndexOutbox(bot_id=bot_id, entry_id=entry_id))
    return changed, added


def _keep_newest(session: Session, entry_id: str) -> None:
    live = [LearnedPhrasing.entry_id == entry_id, col(LearnedPhrasing.blocked_at).is_(None)]
    count = session.exec(select(func.count()).select_from(LearnedPhrasing).where(*live)).one()
    if count <= MAX_PER_ENTRY:
        return
    oldest = list(session.exec(select(LearnedPhrasing.id).where(*live)
                               .order_by(col(LearnedPhrasing.learned_at), col(LearnedPhrasing.id))
                               .limit(count - MAX_PER_ENTRY)))
    session.execute(delete(LearnedPhrasing).where(col(LearnedPhrasing.id).in_(oldest)))


def learned_texts(session: Session, entry_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each entry's learned phrasings that are not blocked, oldest first."""
    ids = list(set(entry_ids))
    out: dict[str, list[str]] = {}
    for start in range(0, len(ids), 500):
        for entry_id, text in session.exec(
                select(LearnedPhrasing.entry_id, LearnedPhrasing.text).where(
                    col(LearnedPhrasing.entry_id).in_(ids[start:start + 500]),
                    col(LearnedPhrasing.blocked_at).is_(None))
                .order_by(col(LearnedPhrasing.learned_at), col(LearnedPhrasing.id))):
            out.setdefault(entry_id, []).append(text)
    return out


def learned_count(session: Session, *, bot_id: str) -> int:
    return int(session.exec(select(func.count()).select_from(LearnedPhrasing).where(
        LearnedPhrasing.bot_id == bot_id, col(LearnedPhrasing.blocked_at).is_(None))).one())


def block(session: Session, *, bot_id: str, entry_id: str, questions: Iterable[str],
          conversation_ids: Iterable[str]) -> int:
    """A reviewer said these questions are not this entry's: stop recognising them as its
    (those learned from these conversations, or with these wordings) and never learn them for
    it again. Returns how many phrasings were blocked; the index follows through the outbox."""
    wanted = list(questions)
    cleaned = {text_key(t): t for q in wanted if (t := learnable(q)) is not None}
    keys = {text_key(q) for q in wanted} | set(cleaned)
    rows = list(session.exec(select(LearnedPhrasing).where(
        LearnedPhrasing.entry_id == entry_id)))
    conversations = set(conversation_ids)
    now = utcnow()
    blocked = 0
    for row in rows:
        if row.blocked_at is None and (row.text_key in keys
                                       or row.conversation_id in conversations):
            row.blocked_at = now
            session.add(row)
            blocked += 1
    # Wordings not learned yet are blocked ahead, so a later cycle does not learn them.
    have = {r.text_key for r in rows}
    for key, text in cleaned.items():
        if key not in have:
            session.add(LearnedPhrasing(bot_id=bot_id, entry_id=entry_id, text=text,
                                        text_key=key, learned_at=now, blocked_at=now))
    if blocked:
        session.add(IndexOutbox(bot_id=bot_id, entry_id=entry_id))
    return blocked
