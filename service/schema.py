"""Schema versions of the store, through Alembic migrations.

`upgrade(url)` brings a database to the code's schema (`ml-server migrate`);
`check(url)` is what the gateway and the consumers call at start: a database
that is behind stops them with the command to run, instead of failing later
on a missing column. It reads the revision Alembic wrote and compares it with
`HEAD`, without importing Alembic (half a second of every process start);
`tests/test_schema.py` holds `HEAD` to the migrations' own head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import column, create_engine, inspect, select, table
from sqlalchemy.engine import Connection, Engine, make_url

if TYPE_CHECKING:
    from alembic.config import Config

# The revision of the newest migration in service/migrations/versions: the schema this code needs.
HEAD = "0004"


class SchemaError(RuntimeError):
    """The database's schema is not the one this code needs."""


def sync_url(url: str) -> str:
    parsed = make_url(url)
    driver = {
        "sqlite+aiosqlite": "sqlite",
        "postgresql": "postgresql+psycopg",
        "postgres": "postgresql+psycopg",
        "postgresql+asyncpg": "postgresql+psycopg",
    }
    if parsed.drivername in driver:
        parsed = parsed.set(drivername=driver[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "service:migrations")
    return config


def _engine(url: str) -> Engine:
    return create_engine(sync_url(url))


def head() -> str:
    """The head revision of the migrations, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_config()).get_heads()
    assert len(heads) == 1, heads
    return heads[0]


def current(connection: Connection) -> str | None:
    """The revision the database is at (Alembic's `alembic_version` table), None when it has none."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    versions: list[str] = list(connection.execute(select(column("version_num")).select_from(table("alembic_version"))).scalars())
    assert len(versions) <= 1, versions  # one line of migrations: one head
    return versions[0] if versions else None


def upgrade(url: str, revision: str = "head") -> str | None:
    """Apply every migration up to `revision`; returns the revision the database is at."""
    from alembic import command

    engine = _engine(url)
    try:
        with engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        with engine.connect() as connection:
            return current(connection)
    finally:
        engine.dispose()


def check(url: str) -> None:
    """Raise SchemaError, naming the command to run, unless the database is at the code's revision."""
    want = HEAD
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            have = current(connection)
    except Exception as e:  # noqa: BLE001 - any failure to read the version is "can't use this store"
        raise SchemaError(f"cannot read the schema version of the store: {e}") from e
    finally:
        engine.dispose()
    if have != want:
        state = "empty (no schema yet)" if have is None else f"at revision {have}"
        raise SchemaError(
            f"the store is {state}, this version of ml-server needs revision {want}: "
            f"run `ml-server migrate` (with the same ML_SERVER_DATABASE_URL) first"
        )
