"""Fixtures: real RabbitMQ, real databases (SQLite file; PostgreSQL when it answers), real processes."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

# Two workers, their stacks and their fit processes share a few cores: OpenMP threads that busy-wait for
# each other (HistGradientBoosting, KMeans) then spin against the rest, and a 2-second test took minutes on
# a loaded machine. Before scikit-learn loads anywhere in the suite (the stacks' processes inherit it): one
# thread each. Answers don't depend on it; the fit processes still set their own share (`consumers.pool`).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from service import schema  # noqa: E402
from contracts.families import BUILTIN  # noqa: E402

from .stack import POSTGRES_URL, Stack  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def new_database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh database at the code's schema: a SQLite file in `folder`, or a new PostgreSQL database."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / f'ml-server-{uuid.uuid4().hex[:8]}.db'}"
        schema.upgrade(url)
        yield url
        return
    if not _postgres_answers():
        if IN_CI:
            pytest.fail("CI must run the PostgreSQL variant, but nothing answers on 127.0.0.1:5432")
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432")
    import psycopg

    name = f"mls_test_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        schema.upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def shared() -> Iterator[dict[str, Any]]:
    """What one test process shares between all its test files: a database and a stack per kind.

    pytest tears a parametrized session fixture down whenever the parameter
    changes, which happens at every file; keeping them here starts each once."""
    with ExitStack() as resources:
        yield {"resources": resources}


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, shared: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database for the session, of each kind: a SQLite file, or a new PostgreSQL database."""
    key = f"database-{request.param}"
    if key not in shared:
        shared[key] = shared["resources"].enter_context(new_database(request.param, tmp_path_factory.mktemp("db")))
    return str(shared[key])


@pytest.fixture
def empty_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own, of the session's kind, for a test that needs no other test's rows."""
    with new_database("sqlite" if database_url.startswith("sqlite") else "postgresql", tmp_path) as url:
        yield url


STANDARD_FAMILIES = tuple(BUILTIN)  # one consumer process serves them all


@pytest.fixture(scope="session")
def stack(database_url: str, shared: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """A gateway and one consumer process serving the standard families, shared by the tests of one database."""
    key = f"stack-{database_url}"
    if key not in shared:
        s = Stack(database_url, tmp_path_factory.mktemp("stack"))
        shared["resources"].callback(s.stop)
        s.start_consumer(*STANDARD_FAMILIES, wait=False)
        s.start_gateway()
        for family in STANDARD_FAMILIES:
            s.wait_consumers(family)
        shared[key] = s
    stack: Stack = shared[key]
    for proc in [stack.gateway, *(p for _, p in stack.consumers)]:
        assert proc is not None and proc.poll() is None, f"a process of the shared stack exited:\n{stack.logs()}"
    return stack


@pytest.fixture
def fresh_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """An empty stack of its own (no consumers yet), for tests that kill or add processes."""
    s = Stack(database_url, tmp_path / "stack")
    try:
        yield s
    finally:
        s.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name, s in (getattr(item, "funcargs", None) or {}).items():
            if isinstance(s, Stack):
                report.sections.append((f"{name} logs", s.logs()))
