"""What the cycle's stages are handed: the wired adapters, and the vector storage they share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine

from core.embeddings import Embedder
from core.generation import Generator
from core.index import PhrasingIndex
from core.policy.service import Policy

# IN-lists are chunked to stay under every backend's bound-parameter limit.
CHUNK = 500


@dataclass(frozen=True)
class CycleDeps:
    """The adapters of one run, read from the `Cycle` when the run starts (so a test that
    swaps `cycle.embedder` between runs is heard)."""

    engine: Engine
    embedder: Embedder
    index: PhrasingIndex
    # None: the most representative agent reply is proposed as it is.
    generator: Generator | None = None
    # Auto-publishing and the watch after publish go through the policy core; without one
    # (some tests) the cycle only proposes.
    policy: Policy | None = None


def vec(blob: bytes) -> np.ndarray:
    """A vector stored as float32 bytes (gap centroids, evidence embeddings)."""
    return np.frombuffer(blob, dtype=np.float32)


def blob(v: np.ndarray) -> bytes:
    """The bytes a vector is stored as."""
    return np.asarray(v, dtype=np.float32).tobytes()
