"""Migration 0009: keys issued before scopes keep what they could do; new keys are chatbot."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import inspect, text

from core.bots import KeyScope, hash_key
from core.db import alembic_config, make_engine, migrate
from tests.helpers import database_review


def test_keys_from_before_scopes_become_admin_keys_of_their_bot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url, "0008")
    engine = make_engine(url)
    at = datetime(2026, 3, 2, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO bot (id, slug, name, settings, created_at) "
                          "VALUES ('b', 'shop', 'Shop', '{}', :t)"), {"t": at})
        conn.execute(text("INSERT INTO apikey (id, bot_id, name, key_hash, prefix, created_at) "
                          "VALUES ('k', 'b', 'old', :h, 'atk_old', :t)"),
                     {"h": hash_key("atk_old-key"), "t": at})
    engine.dispose()

    migrate(url)
    engine = make_engine(url)
    review = database_review(engine)
    assert review.key_holder("atk_old-key", admin_key=None) == ("k", "old", "b",
                                                                KeyScope.admin)
    _, _, new = review.issue_key(review.bot("shop"), name="widget")
    assert review.key_holder(new, admin_key=None)[3] is KeyScope.chatbot  # type: ignore[index]
    engine.dispose()

    command.downgrade(alembic_config(url), "0008")
    engine = make_engine(url)
    assert "scope" not in {c["name"] for c in inspect(engine).get_columns("apikey")}
    engine.dispose()
