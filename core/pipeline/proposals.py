"""Stage 4 of the cycle: what to propose for a gap, with a 0-100 confidence from the evidence."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.pipeline.gaps import medoid
from core.pipeline.signals import content_words
from core.pipeline.wording import clean_question, has_identifier, is_chitchat

LOW_CONFIDENCE = 60
# Nothing to base an answer on: the reviewer has to write it.
NO_EVIDENCE_CONFIDENCE = 15
NO_EVIDENCE_ANSWER = (
    "No human agent has answered this question yet, so there is nothing to base an answer on. "
    "Please write the answer."
)
REFUSED_EVIDENCE_ANSWER = (
    "The reviewers rejected what the agents answered to these questions, so there is nothing "
    "else to base an answer on. Please write the answer."
)
# Texts that stand where an answer is missing: they must be replaced before approving.
PLACEHOLDER_ANSWERS = (NO_EVIDENCE_ANSWER, REFUSED_EVIDENCE_ANSWER)
# An agent reply this close to a rejected answer says the same thing (a greeting or a
# sign-off more is not a new answer).
REFUSED_SIMILAR = 0.9


@dataclass(frozen=True)
class Evidence:
    question: str
    question_vector: np.ndarray
    agent_reply: str | None
    reply_vector: np.ndarray | None


@dataclass(frozen=True)
class EntryView:
    id: str
    question: str
    answer: str
    variants: list[str]
    phrasing_vectors: np.ndarray  # question + variants, unit rows
    answer_vector: np.ndarray


@dataclass(frozen=True)
class Proposal:
    kind: str
    question: str
    answer: str
    variants: list[str]
    confidence: int
    warning: str | None
    entry_id: str | None
    # What a generator drafts from: the questions this answer is for (most typical first),
    # their vectors, and the agents' replies to them (most representative first).
    asked: list[str] = field(default_factory=list)
    asked_vectors: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)
    source_vectors: np.ndarray | None = None  # one row per source
    answer_vector: np.ndarray | None = None   # of `answer`, when it is an agent's or the entry's
    # Vectors of the phrasings the proposal would add to the index (question and variants).
    new_phrasing_vectors: np.ndarray | None = None


@dataclass(frozen=True)
class Candidate:
    """A KB entry the gap might belong to, and how close its phrasings are to the questions."""

    entry: EntryView
    similarity: float
    # Share of the customers this entry's answer satisfied lately (None: not enough data).
    satisfaction: float | None = None


# Agents' replies this close to an entry's answer may say "that entry was the answer"...
SAME_ANSWER = 0.6
SAME_ANSWER_ALONE = 0.8
# ...but only if they are about as close to it as to one another: agents who agree with each
# other far more than with the entry are giving another answer, however much wording the two
# share. A lone reply has no peers to compare with; assume paraphrasing agents' agreement.
COHERENCE_MARGIN = 0.1
LONE_REPLY_COHERENCE = 0.85
NEAR_QUESTIONS = 0.5
NEAR_QUESTIONS_WITHOUT_REPLIES = 0.7
# An entry that satisfies fewer customers than this has an answer worth rewriting; above it,
# unhappy customers who got a different answer from the agents asked something else.
POOR_SATISFACTION = 0.6


# An agent who repeats this share of the bot's answer's content words (and adds to it) agrees
# with the answer however far the vectors drift with the additions.
RESTATED = 0.5


def says_otherwise(reply: str, reply_vector: np.ndarray, answer: str,
                   answer_vector: np.ndarray) -> bool:
    """Whether an agent's reply after the bot's answer says something else than that answer
    (both by their distinctive parts, core.pipeline.macros): their vectors are less alike than
    SAME_ANSWER and the reply does not restate most of the answer's content words. An agent
    who completes the answer (`priorities.adds_information`) restates it, so that is not
    saying otherwise: it is an answer to improve."""
    if float(reply_vector @ answer_vector) >= SAME_ANSWER:
        return False
    said = content_words(answer)
    return not said or len(said & content_words(reply)) < RESTATED * len(said)


def reply_coherence(replies: np.ndarray) -> float:
    """How much the agents' replies agree with one another (mean cosine to their centroid)."""
    if len(replies) < 2:
        return LONE_REPLY_COHERENCE
    centroid = replies.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    return float(np.mean(replies @ (centroid / norm))) if norm > 0 else 0.0


def classify(evidence: list[Evidence], candidates: list[Candidate], *,
             bot_answered_with: str | None,
             poor_satisfaction: float = POOR_SATISFACTION,
             wrong_match: bool = False) -> tuple[str, EntryView | None]:
    """new_answer, improve_answer or add_variants, and the entry it concerns.

    `wrong_match`: the agents said otherwise after the bot answered with `bot_answered_with`
    (`says_otherwise`). Then that entry answered another question: it is neither improved
    nor the home of these questions, which are the agents' topic (add variants to the entry
    whose answer their replies repeat, or a new answer).

    - the agents answered with what an entry says — their replies are as close to its answer
      as to one another (within 0.1), and reply ↔ answer cosine ≥ 0.8, or ≥ 0.6 with the
      questions near that entry's phrasings (cosine ≥ 0.5) → the bot did not recognise a
      known question: add variants to that entry (or improve it, if the bot already gave it);
    - the bot answered with an entry, customers were unhappy, and either no agent replied or
      the entry satisfies fewer than `poor_satisfaction` (the bot's medium_satisfaction,
      default 60%) of the customers it answers → improve that answer;
    - no agent reply, but the questions sit very near an entry (cosine ≥ 0.7) → add variants;
    - otherwise → a new topic (including unhappy customers who got an entry that satisfies
      most others while the agents answered them differently: they asked something else).
    """
    replies = [e.reply_vector for e in evidence if e.reply_vector is not None]
    if wrong_match:
        candidates = [c for c in candidates if c.entry.id != bot_answered_with]
    if replies and candidates:
        rmat = np.stack(replies)
        floor = reply_coherence(rmat) - COHERENCE_MARGIN
        scored = [(float(np.mean(rmat @ c.entry.answer_vector)), c) for c in candidates]
        agree, best = max(scored, key=lambda t: t[0])
        if agree >= floor and (agree >= SAME_ANSWER_ALONE or (
                agree >= SAME_ANSWER and best.similarity >= NEAR_QUESTIONS)):
            if best.entry.id == bot_answered_with:
                # The bot already said what the agents said: its answer needs work, not
                # more triggers.
                return "improve_answer", best.entry
            return "add_variants", best.entry
    answered = next((c for c in candidates if c.entry.id == bot_answered_with), None)
    if answered is not None and (not replies or (
            answered.satisfaction is not None and answered.satisfaction < poor_satisfaction)):
        return "improve_answer", answered.entry
    if not replies and candidates and candidates[0].similarity >= NEAR_QUESTIONS_WITHOUT_REPLIES:
        return "add_variants", candidates[0].entry
    return "new_answer", None


def propose(kind: str, evidence: list[Evidence], entry: EntryView | None, *,
            max_variants: int = 8, refused_answers: np.ndarray | None = None) -> Proposal:
    """The most representative agent reply as the answer; the customers' phrasings as triggers.

    `refused_answers` are the vectors of answers the reviewers rejected for this gap before:
    a reply that says the same (cosine ≥ 0.9) is not proposed again.
    """
    qvecs = np.stack([e.question_vector for e in evidence])
    center = medoid(qvecs)
    replied = [e for e in evidence if e.agent_reply and e.reply_vector is not None]
    with_reply = [e for e in replied if refused_answers is None or not len(refused_answers)
                  or float(np.max(refused_answers @ e.reply_vector)) < REFUSED_SIMILAR]
    warning: str | None = None
    answer_vector: np.ndarray | None = None
    if kind == "add_variants" and entry is not None:
        answer = entry.answer
        answer_vector = entry.answer_vector
        sims = qvecs @ entry.phrasing_vectors.T
        closeness = float(np.mean(sims.max(axis=1)))
        agreement = (float(np.mean([e.reply_vector @ entry.answer_vector for e in with_reply]))
                     if with_reply else closeness)
        confidence = _score(agreement, len(evidence), extra=closeness)
    elif with_reply:
        rvecs = np.stack([e.reply_vector for e in with_reply])  # type: ignore[misc]
        pick = medoid(rvecs)
        answer = with_reply[pick].agent_reply or ""
        answer_vector = rvecs[pick]
        agreement = float(np.mean(rvecs @ rvecs[pick])) if len(with_reply) > 1 else 0.6
        purity = float(np.mean(qvecs @ qvecs[center]))
        confidence = _score(agreement, len(with_reply), extra=purity)
    else:
        answer = entry.answer if (kind == "improve_answer" and entry is not None) \
            else REFUSED_EVIDENCE_ANSWER if replied else NO_EVIDENCE_ANSWER
        confidence = NO_EVIDENCE_CONFIDENCE
        warning = "No agent reply to learn from: write or check the answer before approving."

    # Triggers come only from questions this answer answers: one whose agent said something
    # else belongs elsewhere, however close its wording.
    members = answered_by(evidence, qvecs, answer_vector)
    mvecs = qvecs[members]
    typical_one = members[_typical_clean(evidence, mvecs, members)]
    question = entry.question if kind == "add_variants" and entry is not None \
        else clean_question(evidence[typical_one].question)
    # What the bot already recognises: the entry's phrasings, or the new entry's question.
    known = entry.phrasing_vectors if kind != "new_answer" and entry is not None \
        else qvecs[[typical_one]]
    # A trigger is matched against every customer's words: one customer's order number or
    # e-mail in it helps nobody and shows that customer's data to all reviewers.
    usable = [k for k, i in enumerate(members) if not has_identifier(evidence[i].question)
              and not is_chitchat(evidence[i].question)]
    variants = covering([evidence[members[k]].question for k in usable], mvecs[usable],
                        known=known, limit=max_variants)
    if kind != "add_variants":
        variants = [v for v in variants if v != evidence[typical_one].question]
    if warning is None and confidence < LOW_CONFIDENCE:
        warning = f"Low confidence ({confidence}/100): check the answer before approving."
    typical = [members[i] for i in np.argsort(-(mvecs @ mvecs.mean(axis=0)), kind="stable")]
    sources = _representative_replies([evidence[i] for i in members], with_reply)
    vector_of = {evidence[i].question: qvecs[i] for i in members}
    # The cleaned question is read as the customer's wording it came from.
    if kind == "new_answer":
        vector_of[question] = qvecs[typical_one]
    added = ([question] if kind == "new_answer" else []) + variants
    return Proposal(kind, question, answer, variants, confidence, warning,
                    entry.id if entry is not None and kind != "new_answer" else None,
                    asked=[evidence[i].question for i in typical],
                    asked_vectors=qvecs[typical],
                    sources=[e.agent_reply or "" for e in sources],
                    source_vectors=np.stack([e.reply_vector for e in sources])  # type: ignore[misc]
                    if sources else None,
                    answer_vector=answer_vector,
                    new_phrasing_vectors=np.stack([vector_of[t] for t in added])
                    if added else np.zeros((0, qvecs.shape[1]), dtype=qvecs.dtype))


def _typical_clean(evidence: list[Evidence], mvecs: np.ndarray, members: list[int]) -> int:
    """Index (into `members`) of the question to word the gap by: the most typical one (the
    medoid) among those that carry no customer identifier and are no chit-chat, else the
    medoid itself (its identifiers are then redacted by `clean_question`)."""
    centre = medoid(mvecs)
    if not has_identifier(evidence[members[centre]].question):
        return centre
    order = np.argsort(-(mvecs @ mvecs.sum(axis=0)), kind="stable")
    return next((int(k) for k in order if not has_identifier(evidence[members[k]].question)
                 and not is_chitchat(evidence[members[k]].question)), centre)


def _representative_replies(members: list[Evidence], usable: list[Evidence]
                            ) -> list[Evidence]:
    """The members with a usable agent reply, most representative reply (closest to all)
    first."""
    allowed = {id(e) for e in usable}
    picked = [e for e in members if id(e) in allowed]
    if not picked:
        return []
    rvecs = np.stack([e.reply_vector for e in picked])  # type: ignore[misc]
    order = np.argsort(-(rvecs @ rvecs.mean(axis=0)), kind="stable")
    return [picked[i] for i in order]


def answered_by(evidence: list[Evidence], qvecs: np.ndarray,
                answer_vector: np.ndarray | None) -> list[int]:
    """Indexes of the evidence this answer fits: questions whose agent reply agrees with it
    (cosine ≥ 0.6, and within 0.1 of how well the replies agree with it typically), and
    questions without a reply that sit near those (cosine ≥ 0.5 to their centroid)."""
    everything = list(range(len(evidence)))
    if answer_vector is None:
        return everything
    with_reply = [i for i, e in enumerate(evidence) if e.reply_vector is not None]
    if not with_reply:
        return everything
    agree = {i: float(evidence[i].reply_vector @ answer_vector)  # type: ignore[operator]
             for i in with_reply}
    floor = max(SAME_ANSWER, float(np.median(list(agree.values()))) - COHERENCE_MARGIN)
    fits = [i for i in with_reply if agree[i] >= floor]
    if not fits:
        return everything
    centre = qvecs[fits].mean(axis=0)
    centre = centre / (float(np.linalg.norm(centre)) or 1.0)
    fits_set = set(fits)
    return [i for i in everything if i in fits_set or (
        evidence[i].reply_vector is None and float(qvecs[i] @ centre) >= NEAR_QUESTIONS)]


# A question this close to a phrasing is answered by it (the answer vote gives an entry most
# of its weight from neighbours above ≈0.75).
COVERED = 0.78
NEAR_DUPLICATE = 0.95


def covering(texts: list[str], vectors: np.ndarray, *, known: np.ndarray,
             limit: int) -> list[str]:
    """Up to `limit` of the customers' phrasings, chosen so the bot would recognise as many of
    the gap's questions as possible: each pick is the one that brings the most still
    unrecognised questions within reach (cosine ≥ 0.78 of a phrasing), the most typical
    first on ties. Exact and near-duplicates (≥ 0.95) of a phrasing already there are never
    proposed; once every question is within reach, the most typical remaining ones fill up.
    """
    if not texts:
        return []
    keys = [" ".join(t.lower().split()) for t in texts]
    sims = vectors @ vectors.T
    typical = sims.mean(axis=1)
    reach = (vectors @ known.T).max(axis=1) if len(known) else np.full(len(texts), -1.0)
    covered = reach >= COVERED
    blocked = reach >= NEAR_DUPLICATE
    kept: list[int] = []
    seen: set[str] = set()
    while len(kept) < limit:
        best, best_key = -1, (-1, -1.0)
        for i in range(len(texts)):
            if blocked[i] or keys[i] in seen:
                continue
            gain = int(np.sum(~covered & (sims[i] >= COVERED)))
            key = (gain, float(typical[i]))
            if key > best_key:
                best, best_key = i, key
        if best < 0:
            break
        kept.append(best)
        seen.add(keys[best])
        covered |= sims[best] >= COVERED
        blocked |= sims[best] >= NEAR_DUPLICATE
    return [texts[i] for i in kept]


def _score(agreement: float, count: int, *, extra: float) -> int:
    """Blend agreement among the evidence, how much of it there is, and how tight the gap is."""
    volume = min(1.0, count / 5.0)
    raw = 0.5 * _unit(agreement, 0.4, 0.9) + 0.3 * volume + 0.2 * _unit(extra, 0.5, 0.9)
    return max(0, min(100, round(100 * raw)))


def _unit(x: float, lo: float, hi: float) -> float:
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))
