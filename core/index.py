"""The vector index of KB phrasings in Chroma: one vector per phrasing, upserted by stable id."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

# Chroma's client reports usage to a remote host by default; this service runs offline.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@dataclass(frozen=True)
class Phrasing:
    """One way of asking an entry's question, as stored in the index."""

    id: str
    bot_id: str
    entry_id: str
    text: str
    active: bool


@dataclass(frozen=True)
class Hit:
    phrasing_id: str
    entry_id: str
    similarity: float


class IndexUnavailable(Exception):
    """The vector index could not be reached; SQL stays correct and the outbox retries."""


class PhrasingIndex(Protocol):
    def sync_entry(
        self, *, bot_id: str, entry_id: str, phrasings: list[Phrasing], vectors: np.ndarray
    ) -> None: ...
    def remove_entry(self, *, bot_id: str, entry_id: str) -> None: ...
    def existing_ids(self, *, bot_id: str, entry_id: str) -> set[str]: ...
    def query(self, *, bot_id: str, vector: np.ndarray, k: int) -> list[Hit]: ...
    def query_many(self, *, bot_id: str, vectors: np.ndarray, k: int) -> list[list[Hit]]: ...
    def snapshot(self, *, bot_id: str) -> dict[str, dict[str, Any]]: ...
    def reset_bot(self, *, bot_id: str) -> None: ...
    def heartbeat(self) -> None: ...


def phrasing_id(entry_id: str, text: str) -> str:
    """Stable id: the same phrasing of the same entry always maps to the same vector."""
    digest = hashlib.sha1(text.strip().lower().encode("utf-8")).hexdigest()[:16]
    return f"{entry_id}:{digest}"


def entry_phrasings(*, bot_id: str, entry_id: str, question: str, variants: list[str],
                    active: bool) -> list[Phrasing]:
    seen: dict[str, Phrasing] = {}
    for text in [question, *variants]:
        if not text.strip():
            continue
        pid = phrasing_id(entry_id, text)
        seen.setdefault(pid, Phrasing(pid, bot_id, entry_id, text.strip(), active))
    return list(seen.values())


class ChromaIndex:
    """Chroma-backed index; embedded `PersistentClient` or a server through `HttpClient`.

    One collection per bot and embedding model: a metadata `where` filter makes Chroma
    scan (≈20 ms at 10k vectors here) while an unfiltered HNSW query takes ≈2 ms, so the
    bot is chosen by collection and `active` is checked on the returned neighbours.
    """

    def __init__(self, *, path: Path | None = None, url: str | None = None,
                 model_id: str = "default") -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if url:
            from urllib.parse import urlparse

            parsed = urlparse(url)
            self._client = chromadb.HttpClient(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=chroma_settings,
            )
        elif path is not None:
            path.mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        else:
            raise ValueError("ChromaIndex needs a path (embedded) or a url (server)")
        self._model_key = hashlib.sha1(model_id.encode()).hexdigest()[:8]
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _name(self, bot_id: str) -> str:
        return f"kb-{bot_id}-{self._model_key}"

    def _collection(self, bot_id: str) -> Any:
        col = self._collections.get(bot_id)
        if col is None:
            with self._lock:
                col = self._collections.get(bot_id)
                if col is None:
                    # embedding_function=None: we always pass vectors; Chroma's default
                    # function would try to download a model, which fails offline.
                    col = self._client.get_or_create_collection(
                        self._name(bot_id),
                        embedding_function=None,
                        configuration={"hnsw": {"space": "cosine"}},
                    )
                    self._collections[bot_id] = col
        return col

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            # A collection handle can go stale (directory deleted, server restarted).
            self._collections.clear()
            raise IndexUnavailable(f"vector index {what} failed: {exc}") from exc

    def sync_entry(
        self, *, bot_id: str, entry_id: str, phrasings: list[Phrasing], vectors: np.ndarray
    ) -> None:
        col = self._call("open", self._collection, bot_id)
        wanted = {p.id for p in phrasings}
        stale = self.existing_ids(bot_id=bot_id, entry_id=entry_id) - wanted
        if phrasings:
            self._call(
                "upsert",
                col.upsert,
                ids=[p.id for p in phrasings],
                embeddings=np.asarray(vectors, dtype=np.float32),
                documents=[p.text for p in phrasings],
                metadatas=[
                    {"bot_id": p.bot_id, "entry_id": p.entry_id, "active": p.active}
                    for p in phrasings
                ],
            )
        if stale:
            self._call("delete", col.delete, ids=sorted(stale))

    def remove_entry(self, *, bot_id: str, entry_id: str) -> None:
        ids = self.existing_ids(bot_id=bot_id, entry_id=entry_id)
        if ids:
            col = self._call("open", self._collection, bot_id)
            self._call("delete", col.delete, ids=sorted(ids))

    def existing_ids(self, *, bot_id: str, entry_id: str) -> set[str]:
        col = self._call("open", self._collection, bot_id)
        got = self._call("get", col.get, where={"entry_id": entry_id}, include=[])
        return set(got["ids"])

    def query(self, *, bot_id: str, vector: np.ndarray, k: int) -> list[Hit]:
        col = self._call("open", self._collection, bot_id)
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        # A few spare neighbours absorb deactivated phrasings; Chroma returns fewer when the
        # collection is smaller, so no count() round trip is needed (it costs ~1 ms).
        fetch = k + k // 2
        res = self._call("query", col.query, query_embeddings=query, n_results=fetch,
                         include=["metadatas", "distances"])
        hits = self._hits(res)
        if len(hits) < k and len(res["ids"][0]) == fetch:
            # Many inactive neighbours: ask Chroma to pre-filter (slower, but rare).
            res = self._call("query", col.query, query_embeddings=query, n_results=k,
                             where={"active": True}, include=["metadatas", "distances"])
            hits = self._hits(res)
        return hits[:k]

    def query_many(self, *, bot_id: str, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        """`query` for several vectors in one round trip (the cycle's evidence replay)."""
        if not len(vectors):
            return []
        col = self._call("open", self._collection, bot_id)
        res = self._call("query", col.query,
                         query_embeddings=np.asarray(vectors, dtype=np.float32),
                         n_results=k + k // 2, include=["metadatas", "distances"])
        return [self._hits(res, row)[:k] for row in range(len(vectors))]

    @staticmethod
    def _hits(res: dict[str, Any], row: int = 0) -> list[Hit]:
        """Active neighbours only. Documents are not fetched: answering needs only the entry,
        and leaving them out makes the query cheaper."""
        out: list[Hit] = []
        for pid, meta, dist in zip(res["ids"][row], res["metadatas"][row],
                                   res["distances"][row], strict=True):
            if meta.get("active", False):
                out.append(Hit(pid, str(meta["entry_id"]), 1.0 - float(dist)))
        return out

    def snapshot(self, *, bot_id: str) -> dict[str, dict[str, Any]]:
        """Every stored phrasing of a bot: id → {entry_id, active, text}, for drift checks."""
        col = self._call("open", self._collection, bot_id)
        out: dict[str, dict[str, Any]] = {}
        offset, page = 0, 5000
        while True:
            got = self._call("get", col.get, include=["metadatas", "documents"],
                             limit=page, offset=offset)
            for pid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"],
                                      strict=True):
                out[pid] = {"entry_id": meta.get("entry_id"), "active": meta.get("active"),
                            "text": doc}
            if len(got["ids"]) < page:
                return out
            offset += page

    def reset_bot(self, *, bot_id: str) -> None:
        with self._lock:
            self._collections.pop(bot_id, None)
            try:
                self._client.delete_collection(self._name(bot_id))
            except Exception as exc:  # missing collection is fine: we are rebuilding anyway
                log.debug("delete_collection %s: %s", self._name(bot_id), exc)

    def heartbeat(self) -> None:
        """Raise IndexUnavailable unless the index answers (readiness checks)."""
        self._call("heartbeat", self._client.heartbeat)
