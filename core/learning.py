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
- a question the agents answered with something *no* entry says (a decline, an answer the
  KB lacks) is learned as **nobody's**: in the matcher's vote it counts for "hand over",
  so a question like it is not answered with the nearest entry by default. This is the
  bot's own measure of what lies outside its KB, learned from its own traffic instead of a
  fixed "nobody" similarity alone. Once an entry says what the agents said (a new answer was
  approved), those questions become that entry's; once a reviewer publishes a gap's
  suggestion, its questions stop being nobody's;
- `learn_from_agents: false` in a bot's settings turns it off (reviewed phrasings only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from core.bots import bot_settings
from core.index import Hit
from core.models import (
    Bot,
    GapEvidence,
    IndexOutbox,
    KBEntry,
    LearnedPhrasing,
    Suggestion,
    utcnow,
)
from core.pipeline.proposals import SAME_ANSWER
from core.pipeline.wording import clean_question, has_identifier, is_chitchat
from core.status import SuggestionStatus

# The index's entry id for questions that are nobody's (vote for handing over).
NOBODY = "~nobody"

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
# The newest questions kept as nobody's, per bot.
MAX_NOBODY = 1000
# Questions shorter than this many characters once cleaned carry no topic ("card?").
MIN_CHARS = 8
# Ids per IN (...) clause: under SQLite's and PostgreSQL's bound-parameter limits.
CHUNK = 500


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


def _similarities(reply: np.ndarray, answers: np.ndarray | None) -> np.ndarray:
    return answers @ reply if answers is not None and len(answers) else np.zeros(0)


def restated(reply: np.ndarray, entry_ids: Sequence[str], answers: np.ndarray | None
             ) -> str | None:
    """The entry whose answer `reply` restates, if exactly one does."""
    sims = _similarities(reply, answers)
    if not len(sims):
        return None
    order = np.argsort(-sims)
    best = float(sims[order[0]])
    runner_up = float(sims[order[1]]) if len(order) > 1 else -1.0
    if best < RESTATES or best - runner_up < MARGIN:
        return None
    return entry_ids[int(order[0])]


def says_none(reply: np.ndarray, answers: np.ndarray | None) -> bool:
    """True when `reply` is unlike every entry's answer (the level at which the cycle takes
    an agents' reply to say an entry's answer at all, core.pipeline.proposals)."""
    sims = _similarities(reply, answers)
    return not len(sims) or float(sims.max()) < SAME_ANSWER


def learn(session: Session, *, bot_id: str, taught: Iterable[Taught], entry_ids: Sequence[str],
          answers: np.ndarray | None) -> tuple[set[str], int]:
    """Record what the agents taught and bring what was learned before up to date with the
    entries; returns the index entries whose phrasings changed (NOBODY among them; an outbox
    row is written for each, in this transaction, so the index follows) and how many
    phrasings were learned."""
    changed = _reconsider(session, bot_id=bot_id, entry_ids=entry_ids, answers=answers)
    found: dict[tuple[str | None, str], Taught] = {}
    texts: dict[str, str] = {}
    for t in taught:
        text = learnable(t.question)
        if text is None:
            continue
        entry_id = restated(t.reply, entry_ids, answers)
        if entry_id is None and not says_none(t.reply, answers):
            continue  # like an entry's answer, but not a copy: it says neither
        key = text_key(text)
        texts[key] = text
        found.setdefault((entry_id, key), t)
    keys = list(texts)
    rows: list[LearnedPhrasing] = []
    for start in range(0, len(keys), CHUNK):  # a full re-analysis teaches thousands at once
        rows += session.exec(select(LearnedPhrasing).where(
            LearnedPhrasing.bot_id == bot_id,
            col(LearnedPhrasing.text_key).in_(keys[start:start + CHUNK]))).all()
    known = {(r.entry_id, r.text_key) for r in rows}
    owned = {r.text_key for r in rows if r.entry_id is not None and r.blocked_at is None}
    nobody = {r.text_key: r for r in rows if r.entry_id is None}
    owned |= {key for entry_id, key in found if entry_id is not None}
    now = utcnow()
    added = 0
    for (entry_id, key), t in found.items():
        if (entry_id, key) in known:
            continue  # learned before, or blocked by a reviewer
        if entry_id is None:
            if key in owned:
                continue  # an entry's question, as the agents said elsewhere
            row = LearnedPhrasing(bot_id=bot_id, entry_id=None, text=texts[key],
                                  text_key=key, conversation_id=t.conversation_id,
                                  reply_embedding=np.asarray(t.reply, np.float32).tobytes(),
                                  learned_at=now)
            changed.add(NOBODY)
        else:
            if key in nobody:
                # The newer, sharper word: an agent gave this question an entry's answer.
                session.delete(nobody.pop(key))
                changed.add(NOBODY)
            row = LearnedPhrasing(bot_id=bot_id, entry_id=entry_id, text=texts[key],
                                  text_key=key, conversation_id=t.conversation_id,
                                  learned_at=now)
            changed.add(entry_id)
        session.add(row)
        known.add((entry_id, key))
        added += 1
    session.flush()
    for entry_id in changed:
        _keep_newest(session, bot_id=bot_id, entry_id=None if entry_id == NOBODY else entry_id)
        session.add(IndexOutbox(bot_id=bot_id, entry_id=entry_id))
    return changed, added


def _reconsider(session: Session, *, bot_id: str, entry_ids: Sequence[str],
                answers: np.ndarray | None) -> set[str]:
    """Nobody's questions whose agents' reply an entry now restates become its; those it now
    resembles, or whose gap a reviewer published, are nobody's no more."""
    rows = list(session.exec(select(LearnedPhrasing).where(
        LearnedPhrasing.bot_id == bot_id, col(LearnedPhrasing.entry_id).is_(None),
        col(LearnedPhrasing.blocked_at).is_(None))))
    if not rows:
        return set()
    conversations = [r.conversation_id for r in rows if r.conversation_id]
    approved = select(Suggestion.gap_id).where(
        Suggestion.bot_id == bot_id,
        col(Suggestion.status).in_((SuggestionStatus.approved, SuggestionStatus.auto_published)))
    published: set[str] = set()
    for start in range(0, len(conversations), CHUNK):
        published.update(session.exec(select(GapEvidence.conversation_id).where(
            col(GapEvidence.conversation_id).in_(conversations[start:start + CHUNK]),
            col(GapEvidence.gap_id).in_(approved))).all())
    owned = set(session.exec(select(LearnedPhrasing.entry_id, LearnedPhrasing.text_key).where(
        LearnedPhrasing.bot_id == bot_id, col(LearnedPhrasing.entry_id).is_not(None))).all())
    changed: set[str] = set()
    for row in rows:
        reply = np.frombuffer(row.reply_embedding, dtype=np.float32) \
            if row.reply_embedding else None
        entry_id = restated(reply, entry_ids, answers) if reply is not None else None
        if entry_id is not None and (entry_id, row.text_key) not in owned:
            row.entry_id = entry_id
            row.reply_embedding = None
            session.add(row)
            owned.add((entry_id, row.text_key))
            changed |= {NOBODY, entry_id}
        elif entry_id is not None or row.conversation_id in published or (
                reply is not None and not says_none(reply, answers)):
            session.delete(row)
            changed.add(NOBODY)
    return changed


def _keep_newest(session: Session, *, bot_id: str, entry_id: str | None) -> None:
    cap = MAX_PER_ENTRY if entry_id is not None else MAX_NOBODY
    live = [LearnedPhrasing.bot_id == bot_id, col(LearnedPhrasing.blocked_at).is_(None),
            col(LearnedPhrasing.entry_id) == entry_id if entry_id is not None
            else col(LearnedPhrasing.entry_id).is_(None)]
    count = session.exec(select(func.count()).select_from(LearnedPhrasing).where(*live)).one()
    if count <= cap:
        return
    oldest = list(session.exec(select(LearnedPhrasing.id).where(*live)
                               .order_by(col(LearnedPhrasing.learned_at), col(LearnedPhrasing.id))
                               .limit(count - cap)))
    for start in range(0, len(oldest), CHUNK):
        session.execute(delete(LearnedPhrasing).where(
            col(LearnedPhrasing.id).in_(oldest[start:start + CHUNK])))


def learning_bots(session: Session, bot_ids: Iterable[str]) -> set[str]:
    """Those of these bots whose setting `learn_from_agents` is on."""
    return {b.id for b in session.exec(select(Bot).where(col(Bot.id).in_(set(bot_ids))))
            if bot_settings(b).learn_from_agents}


def relearn(session: Session, *, bot_id: str) -> None:
    """`learn_from_agents` was switched: re-sync every entry with learned phrasings, and the
    bot's nobody set, so the index holds them exactly while it is on."""
    entries = set(session.exec(select(LearnedPhrasing.entry_id).where(
        LearnedPhrasing.bot_id == bot_id, col(LearnedPhrasing.entry_id).is_not(None))).all())
    for entry_id in [*sorted(e for e in entries if e), NOBODY]:
        session.add(IndexOutbox(bot_id=bot_id, entry_id=entry_id))


def learned_texts(session: Session, entry_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each entry's learned phrasings that are not blocked, oldest first (none for a bot
    whose `learn_from_agents` is off)."""
    ids = list(set(entry_ids))
    out: dict[str, list[str]] = {}
    for start in range(0, len(ids), 500):
        for entry_id, text in session.exec(
                select(LearnedPhrasing.entry_id, LearnedPhrasing.text).where(
                    col(LearnedPhrasing.entry_id).in_(ids[start:start + 500]),
                    col(LearnedPhrasing.blocked_at).is_(None))
                .order_by(col(LearnedPhrasing.learned_at), col(LearnedPhrasing.id))):
            out.setdefault(entry_id, []).append(text)
    if out:
        owners = dict(session.exec(select(KBEntry.id, KBEntry.bot_id).where(
            col(KBEntry.id).in_(list(out)))).all())
        on = learning_bots(session, set(owners.values()))
        out = {e: texts for e, texts in out.items() if owners.get(e) in on}
    return out


def nobody_texts(session: Session, *, bot_id: str) -> list[str]:
    """The bot's questions that are nobody's, oldest first (none while its
    `learn_from_agents` is off)."""
    if bot_id not in learning_bots(session, [bot_id]):
        return []
    return list(session.exec(select(LearnedPhrasing.text).where(
        LearnedPhrasing.bot_id == bot_id, col(LearnedPhrasing.entry_id).is_(None),
        col(LearnedPhrasing.blocked_at).is_(None))
        .order_by(col(LearnedPhrasing.learned_at), col(LearnedPhrasing.id))))


def learned_count(session: Session, *, bot_id: str, nobody: bool = False) -> int:
    """How many phrasings the bot learned for its entries (or, with `nobody`, as nobody's)."""
    owner = col(LearnedPhrasing.entry_id).is_(None) if nobody \
        else col(LearnedPhrasing.entry_id).is_not(None)
    return int(session.exec(select(func.count()).select_from(LearnedPhrasing).where(
        LearnedPhrasing.bot_id == bot_id, owner,
        col(LearnedPhrasing.blocked_at).is_(None))).one())


def release_keys(questions: Iterable[str]) -> set[str]:
    """The text keys approving a suggestion for these questions releases from nobody."""
    qs = list(questions)
    return {text_key(q) for q in qs} | {
        text_key(t) for q in qs if (t := learnable(q)) is not None}


def without_released(hits: list[Hit], keys: set[str]) -> list[Hit]:
    """`hits` as they will be once these keys are released: for a sandbox or a replay of
    what approving a suggestion does."""
    return [h for h in hits
            if not (h.entry_id == NOBODY and h.phrasing_id.rsplit(":", 1)[-1] in keys)]


def release(session: Session, *, bot_id: str, questions: Iterable[str],
            conversation_ids: Iterable[str]) -> int:
    """A reviewer gave these questions a home (approved a suggestion for them): they are
    nobody's no more. Returns how many were released; the index follows through the
    outbox."""
    keys = release_keys(questions)
    conversations = set(conversation_ids)
    # A bot keeps at most MAX_NOBODY of them: read them all rather than send a gap's
    # thousands of questions as query parameters.
    gone = [i for i, key, conversation in session.exec(
        select(LearnedPhrasing.id, LearnedPhrasing.text_key, LearnedPhrasing.conversation_id)
        .where(LearnedPhrasing.bot_id == bot_id, col(LearnedPhrasing.entry_id).is_(None)))
        if key in keys or (conversation is not None and conversation in conversations)]
    for start in range(0, len(gone), CHUNK):
        session.execute(delete(LearnedPhrasing).where(
            col(LearnedPhrasing.id).in_(gone[start:start + CHUNK])))
    if gone:
        session.add(IndexOutbox(bot_id=bot_id, entry_id=NOBODY))
    return len(gone)


def block(session: Session, *, bot_id: str, entry_id: str, questions: Iterable[str],
          conversation_ids: Iterable[str]) -> int:
    """A reviewer said these questions are not this entry's: stop recognising them as its
    (those learned from these conversations, or with these wordings) and never learn them for
    it again. Returns how many phrasings were blocked; the index follows through the outbox."""
    wanted = list(questions)
    cleaned = {text_key(t): t for q in wanted if (t := learnable(q)) is not None}
    keys = release_keys(wanted)
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
