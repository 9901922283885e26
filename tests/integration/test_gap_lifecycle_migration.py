"""Migration 0002: gaps an approval had marked "resolved" become watched "published" gaps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from core.db import make_engine, migrate


def test_resolved_gaps_become_published_with_their_last_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url, "0001")
    engine = make_engine(url)
    approved, failed = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 2, 27, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO bot (id, slug, name, settings, created_at) "
                          "VALUES ('b', 'shop', 'Shop', '{}', :t)"), {"t": failed})
        for gap_id, status in (("g1", "resolved"), ("g2", "open")):
            conn.execute(text(
                "INSERT INTO gap (id, bot_id, kind, status, centroid, size, replies, "
                "created_at, updated_at) VALUES (:id, 'b', 'new_answer', :status, x'00', 1, 0, "
                ":t, :u)"), {"id": gap_id, "status": status, "t": failed, "u": approved})
            conn.execute(text(
                "INSERT INTO gapevidence (gap_id, conversation_id, question, signal, at, "
                "embedding) VALUES (:id, 'c', 'where is my card?', 'unanswered', :at, x'00')"),
                {"id": gap_id, "at": failed})
    engine.dispose()

    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = {r[0]: r[1:] for r in conn.execute(text(
            "SELECT id, status, published_at IS NOT NULL, last_failure_at IS NOT NULL "
            "FROM gap"))}
    engine.dispose()
    assert rows == {"g1": ("published", 1, 1), "g2": ("open", 0, 1)}
