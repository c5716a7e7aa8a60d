"""The store's schema comes from migrations, and processes refuse a store that is behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service import schema
from contracts.store import Base

from .stack import ROOT


def test_migrations_build_exactly_the_tables_the_code_declares(database_url: str) -> None:
    # database_url was migrated by the fixture (SQLite file, and PostgreSQL when it answers).
    engine = sa.create_engine(schema.sync_url(database_url))
    try:
        with engine.connect() as conn:
            assert schema.current(conn) == schema.head() == schema.HEAD
            assert schema.current(conn) == MigrationContext.configure(conn).get_current_revision()
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], diff
    schema.check(database_url)


def _run(args: list[str], db: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_DATABASE_URL": f"sqlite:///{db}",
        "ML_SERVER_DATA_DIR": str(db.parent),
        "ML_SERVER_SECRET": "0123456789abcdef0123456789abcdef",
        "ML_SERVER_BROKER_URL": "amqp://127.0.0.1:1/",  # never reached: the schema check comes first
    }
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["-m", "gateway"], ["-m", "consumers", "logreg"]])
def test_processes_refuse_a_store_that_is_behind_and_name_the_command(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "store.db"
    done = _run(command, db)
    assert done.returncode == 2, done.stderr
    assert "ml-server migrate" in done.stderr and "empty" in done.stderr

    migrated = _run(["-m", "commands", "migrate"], db)
    assert migrated.returncode == 0, migrated.stderr
    assert f"revision {schema.head()}" in migrated.stderr
    schema.check(f"sqlite:///{db}")
    # Migrating again is a no-op.
    assert _run(["-m", "commands", "migrate"], db).returncode == 0
