"""Knowledge-base storage: versioned entries in SQL, and the outbox that syncs them to the index."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from core.db import session_scope
from core.embeddings import Embedder
from core.errors import InvalidInput, NotFound
from core.index import IndexUnavailable, Phrasing, PhrasingIndex, entry_phrasings
from core.learning import NOBODY, learned_texts, nobody_texts
from core.models import IndexOutbox, KBEntry, KBEntryVersion, utcnow

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 1_000
MAX_ANSWER_CHARS = 8_000
MAX_VARIANTS = 200


def entry_public(entry: KBEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "version": entry.version,
        "question": entry.question,
        "answer": entry.answer,
        "variants": list(entry.variants),
        "category": entry.category,
        "active": entry.active,
    }


def clean_variants(question: str, variants: list[str]) -> list[str]:
    """Trimmed, non-empty, de-duplicated (case-insensitively) and never the question itself."""
    seen = {question.strip().lower()}
    out: list[str] = []
    for raw in variants:
        text = " ".join(raw.split())
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out


def validate_content(*, question: str, answer: str, variants: list[str]) -> None:
    if not question.strip():
        raise InvalidInput("question must not be empty", field="question")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidInput(f"question is longer than {MAX_QUESTION_CHARS} characters",
                           field="question")
    if not answer.strip():
        raise InvalidInput("answer must not be empty", field="answer")
    if len(answer) > MAX_ANSWER_CHARS:
        raise InvalidInput(f"answer is longer than {MAX_ANSWER_CHARS} characters", field="answer")
    if len(variants) > MAX_VARIANTS:
        raise InvalidInput(f"at most {MAX_VARIANTS} variants per entry", field="variants")
    for i, v in enumerate(variants):
        if len(v) > MAX_QUESTION_CHARS:
            raise InvalidInput(f"variant {i} is longer than {MAX_QUESTION_CHARS} characters",
                               field=f"variants.{i}")


def get_entry(session: Session, *, bot_id: str, entry_id: str) -> KBEntry:
    entry = session.get(KBEntry, entry_id)
    if entry is None or entry.bot_id != bot_id:
        raise NotFound(f"entry {entry_id!r} not found")
    return entry


def list_entries(session: Session, *, bot_id: str) -> list[KBEntry]:
    return list(session.exec(
        select(KBEntry).where(KBEntry.bot_id == bot_id).order_by(col(KBEntry.created_at))
    ))


def list_versions(session: Session, *, entry_id: str) -> list[KBEntryVersion]:
    return list(session.exec(
        select(KBEntryVersion).where(KBEntryVersion.entry_id == entry_id)
        .order_by(col(KBEntryVersion.version))
    ))


def record_version(session: Session, *, entry: KBEntry, changed_by: str, reason: str | None,
                   suggestion_id: str | None) -> None:
    """Snapshot the entry's current state as a version row and queue its index sync."""
    session.add(KBEntryVersion(
        entry_id=entry.id, version=entry.version, question=entry.question, answer=entry.answer,
        variants=list(entry.variants), category=entry.category, active=entry.active,
        changed_by=changed_by, changed_at=entry.updated_at, reason=reason,
        suggestion_id=suggestion_id,
    ))
    session.add(IndexOutbox(bot_id=entry.bot_id, entry_id=entry.id))


def insert_entry(session: Session, *, bot_id: str, question: str, answer: str,
                 variants: list[str], category: str | None, changed_by: str,
                 reason: str | None = None, suggestion_id: str | None = None) -> KBEntry:
    question = " ".join(question.split())
    variants = clean_variants(question, variants)
    validate_content(question=question, answer=answer, variants=variants)
    entry = KBEntry(bot_id=bot_id, question=question, answer=answer.strip(), variants=variants,
                    category=(category or None), active=True, version=1)
    session.add(entry)
    session.flush()
    record_version(session, entry=entry, changed_by=changed_by, reason=reason,
                   suggestion_id=suggestion_id)
    return entry


def change_entry(session: Session, *, entry: KBEntry, changed_by: str, reason: str | None,
                 suggestion_id: str | None = None, question: str | None = None,
                 answer: str | None = None, variants: list[str] | None = None,
                 category: str | None = None, active: bool | None = None) -> KBEntry:
    """Write a new version of `entry` with the given fields changed."""
    new_question = " ".join(question.split()) if question is not None else entry.question
    new_answer = answer.strip() if answer is not None else entry.answer
    new_variants = clean_variants(new_question,
                                  variants if variants is not None else list(entry.variants))
    validate_content(question=new_question, answer=new_answer, variants=new_variants)
    entry.question = new_question
    entry.answer = new_answer
    entry.variants = new_variants
    if category is not None:
        entry.category = category or None
    if active is not None:
        entry.active = active
    entry.version += 1
    entry.updated_at = utcnow()
    session.add(entry)
    session.flush()
    record_version(session, entry=entry, changed_by=changed_by, reason=reason,
                   suggestion_id=suggestion_id)
    return entry


# -- index sync -------------------------------------------------------------------------

# Test-only: the fault tests (tests/integration/test_faults.py) set this to a point's name to
# make a worker die there (SIGKILL, no clean-up), as a crash or an OOM kill would. Unset in
# any real deployment; nothing else reads it.
FAULT_ENV = "AUTOTRAIN_TEST_KILL_AT"


def _fault_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)



def _indexed(entry: KBEntry, learned: dict[str, list[str]]) -> list[Phrasing]:
    """What the index holds for an entry: its question, its triggers and what it learned from
    the agents (core.learning)."""
    return entry_phrasings(bot_id=entry.bot_id, entry_id=entry.id, question=entry.question,
                           variants=[*entry.variants, *learned.get(entry.id, [])],
                           active=entry.active)


def _nobody_indexed(bot_id: str, texts: list[str]) -> list[Phrasing]:
    """What the index holds for the bot's questions that are nobody's."""
    return entry_phrasings(bot_id=bot_id, entry_id=NOBODY, question="", variants=texts,
                           active=True)


@dataclass
class RelayResult:
    processed: int = 0
    failed: int = 0
    pending: int = 0


class IndexSync:
    """Relays the outbox to the vector index; idempotent because it syncs current SQL state."""

    def __init__(self, *, engine: Engine, index: PhrasingIndex, embedder: Embedder) -> None:
        self.engine = engine
        self.index = index
        self.embedder = embedder
        # One relay at a time per process, so an older state never overwrites a newer one.
        self._lock = threading.Lock()

    def sync_entries(self, entries: list[KBEntry]) -> int:
        """Push entries' current phrasings (their triggers and what they learned from the
        agents, core.learning) to the index, embedding them all in one call (batches of
        similar length pad little, so bulk imports embed much faster). Returns how many
        phrasings were written."""
        with Session(self.engine) as session:
            learned = learned_texts(session, [e.id for e in entries])
        per_entry = [_indexed(e, learned) for e in entries]
        vectors = self.embedder.embed([p.text for phr in per_entry for p in phr])
        start = 0
        for entry, phrasings in zip(entries, per_entry, strict=True):
            self.index.sync_entry(bot_id=entry.bot_id, entry_id=entry.id, phrasings=phrasings,
                                  vectors=vectors[start:start + len(phrasings)])
            start += len(phrasings)
        return start

    def sync_nobody(self, bot_id: str) -> int:
        """Push the bot's questions that are nobody's (core.learning) to the index, where they
        vote for handing over. Returns how many phrasings were written."""
        with Session(self.engine) as session:
            texts = nobody_texts(session, bot_id=bot_id)
        phrasings = _nobody_indexed(bot_id, texts)
        vectors = self.embedder.embed([p.text for p in phrasings]) if phrasings \
            else np.zeros((0, 0), dtype=np.float32)
        self.index.sync_entry(bot_id=bot_id, entry_id=NOBODY, phrasings=phrasings,
                              vectors=vectors)
        return len(phrasings)

    def relay(self, *, limit: int = 500, bot_id: str | None = None) -> RelayResult:
        """Push pending outbox rows to the index. `bot_id`: only that bot's rows (a decision
        relays its own change inside the request; other bots' rows are left to the
        background relay, so one bot's backlog never slows another's approvals)."""
        result = RelayResult()
        mine = [col(IndexOutbox.bot_id) == bot_id] if bot_id is not None else []
        with self._lock:
            # Read, then talk to the index outside any transaction, so a slow or unreachable
            # index never holds a database write lock.
            with Session(self.engine, expire_on_commit=False) as session:
                rows = list(session.exec(
                    select(IndexOutbox).where(col(IndexOutbox.processed_at).is_(None), *mine)
                    .order_by(col(IndexOutbox.id)).limit(limit)
                ))
                entry_ids = {r.entry_id for r in rows}
                entries = {e.id: e for e in session.exec(
                    select(KBEntry).where(col(KBEntry.id).in_(entry_ids)))} if rows else {}
            synced: list[int] = []
            failed: tuple[int, str] | None = None
            if rows:
                _fault_point("before_index_upsert")
            try:
                gone = {r.entry_id: r.bot_id for r in rows
                        if r.entry_id not in entries and r.entry_id != NOBODY}
                for entry_id, bot_id in gone.items():
                    self.index.remove_entry(bot_id=bot_id, entry_id=entry_id)
                self.sync_entries(list(entries.values()))
                for nobody_of in {r.bot_id for r in rows if r.entry_id == NOBODY}:
                    self.sync_nobody(nobody_of)
                synced = [r.id or 0 for r in rows]
            except IndexUnavailable as exc:
                # The index is down: keep every row for the next attempt.
                log.warning("index sync of %d entries failed: %s", len(entries), exc)
                failed = (rows[0].id or 0, str(exc)[:500])
            if synced:
                _fault_point("after_index_upsert")
            with session_scope(self.engine) as session:
                now = utcnow()
                if synced:
                    for row in session.exec(
                        select(IndexOutbox).where(col(IndexOutbox.id).in_(synced))
                    ):
                        row.processed_at = now
                        session.add(row)
                if failed is not None:
                    bad = session.get(IndexOutbox, failed[0])
                    if bad is not None:
                        bad.attempts += 1
                        bad.last_error = failed[1]
                        session.add(bad)
                result.processed = len(synced)
                result.failed = 1 if failed else 0
                result.pending = int(session.exec(
                    select(func.count()).select_from(IndexOutbox)
                    .where(col(IndexOutbox.processed_at).is_(None), *mine)
                ).one())
        return result

    def reindex(self, *, bot_id: str) -> int:
        """Rebuild a bot's collection from SQL (the source of truth). Returns phrasings written."""
        with self._lock:
            with session_scope(self.engine) as session:
                entries = list_entries(session, bot_id=bot_id)
            self.index.reset_bot(bot_id=bot_id)
            written = 0
            for start in range(0, len(entries), 500):
                written += self.sync_entries(entries[start:start + 500])
            written += self.sync_nobody(bot_id)
            with session_scope(self.engine) as session:
                for row in session.exec(
                    select(IndexOutbox).where(IndexOutbox.bot_id == bot_id,
                                              col(IndexOutbox.processed_at).is_(None))
                ):
                    row.processed_at = utcnow()
                    session.add(row)
            return written

    def reconcile(self, *, bot_id: str) -> dict[str, Any]:
        """Compare SQL with the index and report drift (nothing is changed)."""
        return self._compare(bot_id=bot_id)[0]

    def repair(self, *, bot_id: str) -> dict[str, Any]:
        """Report drift, then fix it: every drifted entry is queued in the outbox and relayed
        (upserts by stable id, deletes of ids SQL does not have). Not a rebuild, which would
        leave the bot without answers while it runs. Raises IndexUnavailable when the index
        cannot be read; the queued rows are retried by the relay if it fails half-way."""
        report, drifted = self._compare(bot_id=bot_id)
        after = report
        if drifted:
            with session_scope(self.engine) as session:
                for entry_id in sorted(drifted):
                    session.add(IndexOutbox(bot_id=bot_id, entry_id=entry_id))
            while True:
                relayed = self.relay(bot_id=bot_id)
                if relayed.failed or not relayed.processed or not relayed.pending:
                    break
            after = self._compare(bot_id=bot_id)[0]
        return {**report, "entries_repaired": len(drifted), "in_sync_after": after["in_sync"]}

    def _compare(self, *, bot_id: str) -> tuple[dict[str, Any], set[str]]:
        """The drift report, and the ids of the entries whose vectors drifted."""
        with session_scope(self.engine) as session:
            entries = list_entries(session, bot_id=bot_id)
            learned = learned_texts(session, [e.id for e in entries])
            nobody = nobody_texts(session, bot_id=bot_id)
        expected: dict[str, tuple[str, bool]] = {
            p.id: (NOBODY, True) for p in _nobody_indexed(bot_id, nobody)}
        for entry in entries:
            for p in _indexed(entry, learned):
                expected[p.id] = (entry.id, entry.active)
        stored = self.index.snapshot(bot_id=bot_id)
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        wrong_state = sorted(
            pid for pid in set(expected) & set(stored)
            if bool(stored[pid]["active"]) != expected[pid][1]
        )
        drifted = {expected[pid][0] for pid in [*missing, *wrong_state]}
        drifted |= {str(stored[pid]["entry_id"]) for pid in extra if stored[pid]["entry_id"]}
        return {
            "expected": len(expected), "stored": len(stored), "missing": len(missing),
            "extra": len(extra), "wrong_active": len(wrong_state),
            "in_sync": not (missing or extra or wrong_state),
            "sample_missing": missing[:10], "sample_extra": extra[:10],
        }, drifted
