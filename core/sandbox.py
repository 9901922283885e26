"""The sandbox: how the bot would answer a question with pending suggestions live, publishing
nothing. The HTTP API, Slack's "test" button and email all call `sandbox_answer`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.answering import NEIGHBOURS, AnswerResult, answer_question, pick_answer, vote
from core.embeddings import Embedder
from core.errors import InvalidInput, NotFound
from core.index import Hit, PhrasingIndex
from core.learning import release_keys, without_released
from core.models import GapEvidence, Suggestion
from core.status import OPEN_SUGGESTION_STATUSES

OVERLAYABLE = OPEN_SUGGESTION_STATUSES
MAX_OVERLAID = 20


@dataclass(frozen=True)
class SandboxAnswer:
    answer: str | None
    entry_id: str | None       # the existing entry that would answer (None: a new one)
    suggestion_id: str | None  # the overlaid suggestion behind the answer, if any
    confidence: int
    escalate: bool
    live: AnswerResult         # what the bot answers today, for comparison


def sandbox_answer(*, engine: Engine, index: PhrasingIndex, embedder: Embedder, bot_id: str,
                   question: str, suggestion_ids: list[str], threshold: int) -> SandboxAnswer:
    """Answer `question` as `answer` would if the given suggestions were approved as they
    stand: their phrasings join the vote (a new answer as an entry of its own, variants on
    their entry), their answers replace the entries' (improve_answer, and a rollback's
    restored answer), and a rollback that would switch an entry off takes it out."""
    ids = list(dict.fromkeys(suggestion_ids))
    if len(ids) > MAX_OVERLAID:
        raise InvalidInput(f"at most {MAX_OVERLAID} suggestions can be tried at once",
                           field="suggestion_ids")
    with Session(engine) as session:
        found = {s.id: s for s in session.exec(select(Suggestion).where(
            col(Suggestion.id).in_(ids), Suggestion.bot_id == bot_id))}
    for sid in ids:
        if sid not in found:
            raise NotFound(f"suggestion {sid} not found")
        if found[sid].status not in OVERLAYABLE:
            raise InvalidInput(f"suggestion {sid} is already {found[sid].status}: only pending "
                               "or deferred suggestions can be tried", field="suggestion_ids")
    overlaid = [found[sid] for sid in ids]

    live = answer_question(engine=engine, index=index, embedder=embedder, bot_id=bot_id,
                           question=question, threshold=threshold)
    texts = [t for s in overlaid for t in _phrasings(s)]
    vectors = embedder.embed([question, *texts])
    q, phrasing_vectors = vectors[0], vectors[1:]
    extra: list[Hit] = []
    answers: dict[str, tuple[str, str]] = {}  # target → (answer, suggestion id)
    # A rollback of a change that created its entry switches the entry off.
    switched_off = {s.entry_id for s in overlaid if s.kind == "rollback"
                    and (s.evidence or {}).get("action") == "deactivate"}
    row = 0
    for s in overlaid:
        target = s.entry_id or f"suggestion:{s.id}"
        if target in switched_off:
            continue
        if s.kind != "add_variants" or s.entry_id is None:
            answers[target] = (s.answer, s.id)
        for j, _ in enumerate(_phrasings(s)):
            extra.append(Hit(f"sandbox:{s.id}:{j}", target, float(q @ phrasing_vectors[row])))
            row += 1
    # Approving releases the suggestions' questions from "nobody" (core.learning).
    released = release_keys(_questions(engine, overlaid))
    hits = sorted([h for h in without_released(
                       index.query(bot_id=bot_id, vector=q, k=NEIGHBOURS), released)
                   if h.entry_id not in switched_off] + extra,
                  key=lambda h: h.similarity, reverse=True)[:NEIGHBOURS]
    got = pick_answer(engine=engine, bot_id=bot_id, matches=vote(hits), threshold=threshold,
                      overrides={target: text for target, (text, _) in answers.items()})
    if got.escalate or got.entry_id is None:
        return SandboxAnswer(None, None, None, got.confidence, True, live)
    via = answers[got.entry_id][1] if got.entry_id in answers else _via(overlaid, got.entry_id)
    entry_id = None if got.entry_id.startswith("suggestion:") else got.entry_id
    return SandboxAnswer(got.answer, entry_id, via, got.confidence, False, live)


def _questions(engine: Engine, overlaid: list[Suggestion]) -> list[str]:
    """The questions of the suggestions and of their gaps' evidence."""
    gaps = [s.gap_id for s in overlaid if s.gap_id]
    with Session(engine) as session:
        asked = list(session.exec(select(GapEvidence.question).where(
            col(GapEvidence.gap_id).in_(gaps)))) if gaps else []
    return [*(t for s in overlaid for t in (s.question, *s.variants)), *asked]


def _phrasings(s: Suggestion) -> list[str]:
    """The phrasings a suggestion adds to the index when approved."""
    return ([s.question] if s.kind == "new_answer" or s.entry_id is None else []) + \
        list(s.variants)


def _via(overlaid: list[Suggestion], entry_id: str) -> str | None:
    """The overlaid suggestion that adds phrasings to this entry, if any."""
    return next((s.id for s in overlaid if s.entry_id == entry_id), None)
