"""Shared fixtures: real services on a temporary data dir, an HTTP client, bots and keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import create_app
from core.embeddings import Embedder, OnnxMiniLMEmbedder
from core.services import Services, build_core_services
from core.settings import Settings, load_settings
from tests.helpers import ADMIN_KEY


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    # Loading the model once per session keeps the suite fast; it is read-only.
    return OnnxMiniLMEmbedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(AUTOTRAIN_DATA_DIR=tmp_path / "data", AUTOTRAIN_API_KEY=ADMIN_KEY,
                         DATABASE_URL="", CHROMA_URL="", REDIS_URL="")


@pytest.fixture
def services(settings: Settings, embedder: Embedder) -> Iterator[Services]:
    svc = build_core_services(settings, embedder=embedder)
    yield svc
    svc.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, background_jobs=False)) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class BotHandle:
    slug: str
    headers: dict[str, str]  # a bot key for this bot
    key_id: str


def make_bot(client: TestClient, admin: dict[str, str], slug: str) -> BotHandle:
    r = client.post("/api/v1/bots", json={"slug": slug, "name": slug.title()}, headers=admin)
    assert r.status_code == 201, r.text
    # The bot's own admin key: tests act as the bot's owner unless they test scopes.
    k = client.post(f"/api/v1/bots/{slug}/keys", json={"name": "owner", "scope": "admin"},
                    headers=admin)
    assert k.status_code == 201, k.text
    return BotHandle(slug, {"Authorization": f"Bearer {k.json()['key']}"}, k.json()["id"])


@pytest.fixture
def bot(client: TestClient, admin: dict[str, str]) -> BotHandle:
    return make_bot(client, admin, "acme")


@pytest.fixture
def other_bot(client: TestClient, admin: dict[str, str]) -> BotHandle:
    return make_bot(client, admin, "globex")
