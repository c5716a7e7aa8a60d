"""The store goes away for a while: the gateway answers 503 and recovers; a consumer never acks what it could not record.

The outage is a TCP proxy in front of PostgreSQL that is cut and restored, so
this test needs PostgreSQL (CI has it; elsewhere it is skipped).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from service import schema

from .conftest import IN_CI, _postgres_answers
from .proxy import TcpProxy
from .stack import POSTGRES_URL, Stack, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied_postgres() -> Iterator[tuple[str, str, TcpProxy]]:
    """(url through the proxy, direct url, proxy) of a fresh, migrated PostgreSQL database."""
    if not _postgres_answers():
        if IN_CI:
            pytest.fail("CI must run the store outage test, but PostgreSQL does not answer on 127.0.0.1:5432")
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432")
    import psycopg

    name = f"mls_outage_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    direct = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    schema.upgrade(direct)
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.start()
    try:
        yield f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}", direct, proxy
    finally:
        proxy.cut()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_store_outage_is_503_then_recovery_and_no_job_is_acked_unrecorded(
    proxied_postgres: tuple[str, str, TcpProxy], tmp_path: Path
) -> None:
    through_proxy, direct, proxy = proxied_postgres
    stack = Stack(through_proxy, tmp_path / "stack")
    try:
        stack.start_consumer("tests.families_for_tests:slow")
        stack.start_gateway()
        url = stack.family_url("slow")
        x = pd.DataFrame(np.random.default_rng(2).normal(size=(80, 2)), columns=["a", "b"])
        y = pd.DataFrame({"t": (x["a"] > 0).astype(int)})

        r = requests.post(stack.fit_url("slow"), json={"x": x.to_json(), "y": y.to_json(), "name": "outage", "modkwargs": {"delay": 3.0}}, timeout=30)
        assert r.status_code == 202, r.text
        key = r.json()["model_key"]
        wait_for(lambda: stack.status("slow", key)["status"] == "running", 30, what="fit running")

        proxy.cut()  # the store is gone while the fit runs
        for method, body in (("PUT", {"x": x.to_json(), "y": y.to_json(), "name": "during"}), ("GET", None)):
            r = requests.request(method, url, json=body, params={"model_key": key} if method == "GET" else None, timeout=30)
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
        r = requests.get(f"{stack.url}/readyz", timeout=30)
        assert r.status_code == 503 and r.json()["store"] != "ok" and r.json()["broker"] == "ok", r.text
        # The fit ends while the store is away: its result can't be recorded, so it must not be acked.
        wait_for(lambda: "store unavailable; holding the job" in stack.logs(), 30, what="the consumer holding the job")

        proxy.start()  # the store is back
        wait_for(lambda: requests.get(f"{stack.url}/readyz", timeout=10).status_code == 200, 60, what="gateway ready again")
        state = stack.wait_finished("slow", key, timeout=90)
        assert state["status"] == "done", state
        assert state["attempts"] == 2, state  # the unrecorded fit was given back to the queue and ran again

        engine = sa.create_engine(schema.sync_url(direct))
        try:
            with engine.connect() as conn:
                artifacts = conn.execute(
                    sa.text("SELECT count(*) FROM artifacts JOIN sessions ON sessions.id = artifacts.session_id "
                            "JOIN models ON models.id = sessions.model_id WHERE models.model_key = :k"), {"k": key}
                ).scalar_one()
        finally:
            engine.dispose()
        assert artifacts == 1
        r = requests.post(url, json={"model_key": key, "x": x.head(2).to_json()}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        stack.stop()
