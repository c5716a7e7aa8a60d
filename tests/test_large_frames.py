"""Training frames bigger than a broker message travel by reference through the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests
import sqlalchemy as sa
from sklearn.linear_model import LinearRegression

from client import GenericModelInterface, PayloadTooLarge
from contracts.frames import PARQUET, encode_training

from .stack import Stack

pytestmark = pytest.mark.integration

MiB = 2**20


def payload_rows(database_url: str) -> int:
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM payloads")).scalar_one()
    finally:
        engine.dispose()


def test_fifty_megabyte_frame_passes_a_sixteen_mebibyte_message_limit(fresh_stack: Stack) -> None:
    # RabbitMQ 4 refuses messages over 16 MiB: configure that limit and send 50+ MB.
    fresh_stack.env["ML_SERVER_INLINE_LIMIT"] = str(16 * MiB)
    fresh_stack.env["ML_SERVER_MAX_BODY"] = str(128 * MiB)
    fresh_stack.start_consumer("linreg")
    fresh_stack.start_gateway()

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(660_000, 10)), columns=[f"c{i}" for i in range(10)])
    y = pd.Series(x.to_numpy() @ np.arange(1.0, 11.0), name="y")
    body = encode_training(x, y.to_frame())
    assert len(body) > 50 * 10**6

    r = requests.post(fresh_stack.fit_url("linreg"), params={"name": "big"}, data=body, headers={"Content-Type": PARQUET}, timeout=120)
    assert r.status_code == 202, r.text
    state = fresh_stack.wait_finished("linreg", r.json()["model_key"], timeout=180)
    assert state["status"] == "done" and state["rows"] == len(x), state
    assert payload_rows(fresh_stack.database_url) == 0  # deleted when the job ended

    mi = GenericModelInterface(fresh_stack.url, "linreg").load(r.json()["model_key"])
    expected = LinearRegression().fit(x, y).predict(x.head(100))
    np.testing.assert_allclose(mi.predict(x.head(100), as_array=True), expected, rtol=1e-8, atol=1e-8)

    # Above the body limit: 413, before anything is queued.
    too_big = b"\0" * (128 * MiB + 1)
    r = requests.post(fresh_stack.fit_url("linreg"), params={"name": "too-big"}, data=too_big, headers={"Content-Type": PARQUET}, timeout=120)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    with pytest.raises(PayloadTooLarge):
        GenericModelInterface(fresh_stack.url, "linreg").fit(pd.concat([x, x, x]), pd.concat([y, y, y]), name="too-big")
    assert requests.get(f"{fresh_stack.url}/models", params={"name": "too-big"}, timeout=10).json()["total"] == 0
