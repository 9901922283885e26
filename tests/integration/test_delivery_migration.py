"""Migration 0006: an announcement's one `delivered_at` becomes a per-channel delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from core.db import make_engine, migrate
from tests.helpers import database_review


def test_delivered_announcements_stay_delivered_by_email_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url, "0005")
    engine = make_engine(url)
    at = datetime(2026, 3, 2, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO bot (id, slug, name, settings, created_at) "
                          "VALUES ('b', 'shop', 'Shop', '{}', :t)"), {"t": at})
        for nid, delivered in ((1, at), (2, None)):
            conn.execute(text(
                "INSERT INTO notification (id, bot_id, kind, text, payload, created_at, "
                "delivered_at) VALUES (:id, 'b', 'paused', :text, '{}', :t, :d)"),
                {"id": nid, "text": f"note {nid}", "t": at, "d": delivered})
    engine.dispose()

    migrate(url)
    engine = make_engine(url)
    # Reading announcements needs only the database.
    review = database_review(engine)
    bot = review.bot("shop")
    # The digest (the only channel until now) delivered the first; Slack has delivered none.
    assert [n.text for n in review.pending_announcements(bot, "email")] == ["note 2"]
    assert [n.text for n in review.pending_announcements(bot, "slack")] == ["note 1", "note 2"]
    engine.dispose()

    # And back: the earliest delivery becomes delivered_at again.
    from alembic import command

    from core.db import alembic_config

    command.downgrade(alembic_config(url), "0005")
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = {r[0]: r[1] for r in conn.execute(text(
            "SELECT id, delivered_at IS NOT NULL FROM notification"))}
    engine.dispose()
    assert rows == {1: 1, 2: 0}
