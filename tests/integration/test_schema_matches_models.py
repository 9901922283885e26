"""The migrations build exactly the schema the table models describe (nothing forgotten)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import core.models  # noqa: F401  (registers every table)
from core.db import alembic_config, make_engine, migrate


def test_migrated_schema_equals_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diff == []


def test_the_email_tables_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    command.downgrade(alembic_config(url), "0007")
    engine = make_engine(url)

    assert "outgoingmail" not in inspect(engine).get_table_names()
    engine.dispose()
    migrate(url)
    engine = make_engine(url)
    assert {"maildigest", "replykey", "inboundmail", "mailnotice", "linkuse",
            "outgoingmail"} <= set(inspect(engine).get_table_names())
    engine.dispose()
