"""HTTP API test support: realistic FAQ and transcript builders, and thin request helpers.

Everything is handed to tests through the `api` fixture, so test modules need no imports
from each other (pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from core.db import migrate
from core.embeddings import Embedder
from core.services import Services, build_core_services
from core.settings import Settings, load_settings
from tests.helpers import FALLBACK, escalated_conversation

# A fixed Monday morning (UTC); conversations are laid out from here.
BASE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# Six FAQ entries on distinct topics: key -> (question, answer, variants).
FAQ: dict[str, tuple[str, str, list[str]]] = {
    "shipping": (
        "How long does shipping take?",
        "Standard shipping takes 3-5 business days and express shipping takes 1-2 business "
        "days.",
        ["How long does delivery take?", "When will my order arrive?"],
    ),
    "returns": (
        "What is your return policy?",
        "You can return most items within 30 days of delivery for a full refund. Start a "
        "return under Account > Orders.",
        ["How do I return an item?", "Can I return something I bought?"],
    ),
    "password": (
        "How do I reset my password?",
        "Click 'Forgot password' on the sign-in page and follow the link we email you.",
        ["I forgot my password", "I can't log in to my account"],
    ),
    "payment": (
        "Which payment methods do you accept?",
        "We accept Visa, Mastercard, American Express, PayPal and Apple Pay.",
        ["Can I pay with PayPal?", "Do you take credit cards?"],
    ),
    "cancel": (
        "Can I cancel my order?",
        "You can cancel an order under Account > Orders within 1 hour of placing it.",
        ["How do I cancel an order?"],
    ),
    "warranty": (
        "Do your products come with a warranty?",
        "Every product comes with a 2-year manufacturer warranty covering defects.",
        ["How long is the warranty?", "Is my device under warranty?"],
    ),
}


def iso(at: datetime) -> str:
    return at.isoformat()


@dataclass
class Api:
    """Request helpers over the TestClient; reads that check state use the admin key."""

    client: TestClient
    admin: dict[str, str]
    FALLBACK: str = FALLBACK
    BASE: datetime = BASE
    FAQ: dict[str, tuple[str, str, list[str]]] = field(default_factory=lambda: dict(FAQ))

    # -- knowledge base --------------------------------------------------------------------

    def create_entry(self, slug: str, question: str, answer: str,
                     variants: list[str] | None = None, category: str | None = None,
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.client.post(f"/api/v1/bots/{slug}/kb/entries", headers=headers or self.admin,
                             json={"question": question, "answer": answer,
                                   "variants": variants or [], "category": category})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def load_faq(self, slug: str, keys: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Create FAQ entries; returns key -> created entry."""
        out = {}
        for key in keys or list(FAQ):
            q, a, v = FAQ[key]
            out[key] = self.create_entry(slug, q, a, v)
        return out

    def entries(self, slug: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/bots/{slug}/kb/entries", headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]

    def versions(self, slug: str, entry_id: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/bots/{slug}/kb/entries/{entry_id}/versions",
                            headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]

    def answer(self, slug: str, question: str,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.client.post(f"/api/v1/bots/{slug}/answer", json={"question": question},
                             headers=headers or self.admin)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"answer", "entry_id", "confidence", "escalate"}, body
        assert isinstance(body["confidence"], int) and 0 <= body["confidence"] <= 100, body
        return body  # type: ignore[no-any-return]

    # -- conversations, cycles, review -------------------------------------------------------

    def post_conversations(self, slug: str, conversations: list[dict[str, Any]],
                           headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(f"/api/v1/bots/{slug}/conversations",
                                json={"conversations": conversations},
                                headers=headers or self.admin)

    def ingest(self, slug: str, conversations: list[dict[str, Any]]) -> dict[str, int]:
        r = self.post_conversations(slug, conversations)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def metrics(self, slug: str, bucket: str = "day") -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/bots/{slug}/metrics", params={"bucket": bucket},
                            headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["buckets"]  # type: ignore[no-any-return]

    def conversation_count(self, slug: str) -> int:
        return sum(b["conversations"] for b in self.metrics(slug, "month"))

    def run_cycle(self, slug: str, as_of: datetime | None,
                  headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.client.post(f"/api/v1/bots/{slug}/cycles",
                             json={"as_of": iso(as_of) if as_of else None},
                             headers=headers or self.admin)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def suggestions(self, slug: str, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        r = self.client.get(f"/api/v1/bots/{slug}/suggestions", params=params,
                            headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]

    def decide(self, suggestion_id: str, action: str, actor: str,
               headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
        return self.client.post(f"/api/v1/suggestions/{suggestion_id}/decision",
                                json={"action": action, "actor": actor, **extra},
                                headers=headers or self.admin)

    def audit(self, slug: str, entry_id: str | None = None) -> list[dict[str, Any]]:
        params = {"entry_id": entry_id} if entry_id else {}
        r = self.client.get(f"/api/v1/bots/{slug}/audit", params=params, headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]

    def settings(self, slug: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/bots/{slug}/settings", headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    # -- transcript builders -----------------------------------------------------------------

    escalated = staticmethod(escalated_conversation)

    @staticmethod
    def answered(cid: str, question: str, answer: str, entry_id: str, at: datetime,
                 then: str | None = "thanks, that helps!", **extra: Any) -> dict[str, Any]:
        """Customer asks, the bot answers from an entry, and the customer (optionally) replies."""
        messages = [
            {"role": "customer", "text": question, "at": iso(at)},
            {"role": "bot", "text": answer, "at": iso(at + timedelta(seconds=2)),
             "entry_id": entry_id},
        ]
        if then is not None:
            messages.append({"role": "customer", "text": then,
                             "at": iso(at + timedelta(seconds=40))})
        return {"id": cid, "started_at": iso(at), "messages": messages, **extra}


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every migration applied, made once per session."""
    data = tmp_path_factory.mktemp("template-data")
    template = load_settings(AUTOTRAIN_DATA_DIR=data, AUTOTRAIN_API_KEY="unused",
                             DATABASE_URL="", CHROMA_URL="", REDIS_URL="")
    migrate(template.sqlalchemy_url)
    return data / "autotrain.db"


@pytest.fixture
def services(settings: Settings, embedder: Embedder, migrated_db: Path) -> Iterator[Services]:
    """The same real services as tests/conftest.py, but each test starts from a copy of an
    already-migrated database: running Alembic per test would take most of the time budget."""
    url = settings.sqlalchemy_url
    copied = url.startswith("sqlite:///")
    if copied:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        target = Path(url.removeprefix("sqlite:///"))
        with closing(sqlite3.connect(migrated_db)) as src, \
                closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
    svc = build_core_services(settings, run_migrations=not copied, embedder=embedder)
    yield svc
    svc.close()


@pytest.fixture
def api(client: TestClient, admin: dict[str, str]) -> Api:
    return Api(client, admin)
