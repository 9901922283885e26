"""Who holds an API key, remembered for a few seconds so each request does not ask SQL again."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import TTLCache

H = TypeVar("H")

# How long a process trusts what SQL said about a key. A key revoked through this process is
# forgotten at once (forget_all); one revoked through another process stops working here
# within this many seconds. Short enough for "revoke now", long enough that a chatbot
# sending hundreds of questions a second costs one key lookup every few seconds.
KEY_TTL_SECONDS = 2.0


class KeyCache(Generic[H]):
    """A TTL cache in front of `lookup(key) -> holder | None`. Only known keys are kept: a key
    issued a moment ago must work at once, and an unknown key is never trusted from memory.
    Entries are stored under the key's SHA-256, not the key itself."""

    def __init__(self, lookup: Callable[[str], H | None], *, ttl: float = KEY_TTL_SECONDS,
                 max_keys: int = 10_000) -> None:
        self.lookup = lookup
        self._cache: TTLCache[str, H] = TTLCache(maxsize=max_keys, ttl=ttl)
        self._lock = threading.Lock()  # TTLCache is not thread-safe on its own
        # Bumped by forget_all: a lookup that started before a revocation must not put its
        # (possibly stale) answer back into the cache afterwards.
        self._generation = 0

    def remembered(self, key: str) -> H | None:
        """The holder if this process remembers the key (no I/O, for async callers)."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        with self._lock:
            return self._cache.get(digest)

    def holder(self, key: str) -> H | None:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        with self._lock:
            found = self._cache.get(digest)
            generation = self._generation
        if found is not None:
            return found
        found = self.lookup(key)
        if found is not None:
            with self._lock:
                if generation == self._generation:
                    self._cache[digest] = found
        return found

    def forget_all(self) -> None:
        """After a key is revoked here: no request of this process may be served on trust."""
        with self._lock:
            self._generation += 1
            self._cache.clear()
