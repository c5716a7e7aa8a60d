"""Versions: concurrent updates apply one after the other, exactly once, on two consumers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from contracts.frames import PARQUET, encode_training

from .stack import Stack, wait_for

pytestmark = pytest.mark.integration


def batch(seed: int, n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    y = pd.DataFrame({"label": (x["a"] - x["b"] + rng.normal(scale=0.3, size=n) > 0).astype(int)})
    return x, y


@pytest.fixture
def two_sgd_consumers(fresh_stack: Stack) -> Iterator[Stack]:
    fresh_stack.start_consumer("sgd", wait=False)
    fresh_stack.start_consumer("sgd", wait=False)
    fresh_stack.start_gateway()
    fresh_stack.wait_consumers("sgd", count=2)
    yield fresh_stack


def test_concurrent_updates_apply_in_order_exactly_once(two_sgd_consumers: Stack) -> None:
    stack = two_sgd_consumers
    url = stack.family_url("sgd")
    params = {"random_state": 0, "loss": "log_loss"}
    x0, y0 = batch(0)
    r = requests.post(stack.fit_url("sgd"), params={"name": "ordered", "modkwargs": '{"random_state": 0, "loss": "log_loss"}'},
                     data=encode_training(x0, y0), headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]
    assert stack.wait_finished("sgd", key)["status"] == "done"

    updates = [batch(1), batch(2), batch(3)]

    def patch(data: tuple[pd.DataFrame, pd.DataFrame]) -> dict:
        r = requests.post(stack.model_url(key, "update"), data=encode_training(*data), headers={"Content-Type": PARQUET}, timeout=30)
        assert r.status_code == 202, r.text
        return r.json()

    with ThreadPoolExecutor(3) as pool:
        accepted = list(pool.map(patch, updates))
    versions = sorted(a["version"] for a in accepted)
    assert versions == [2, 3, 4]

    def all_done() -> dict | None:
        listing = requests.get(f"{stack.url}/models/{key}/versions", timeout=10).json()["versions"]
        return listing if all(v["status"] == "done" for v in listing) and len(listing) == 4 else None

    listing = wait_for(all_done, 90, what="every update done")
    by_version = {v["version"]: v for v in listing}
    # Each update started from the one before it: a chain, no update lost or applied twice.
    assert [by_version[v]["base_version"] for v in (2, 3, 4)] == [1, 2, 3]
    assert all(by_version[v]["attempts"] == 1 for v in (2, 3, 4))
    finished = [by_version[v]["finished_at"] for v in (1, 2, 3, 4)]
    assert finished == sorted(finished)
    assert len({v["worker"] for v in listing}) >= 1

    # Same numbers as applying the updates in version order in-process.
    by_data = {a["version"]: d for a, d in zip(accepted, updates)}
    scaler = StandardScaler().fit(x0)  # sgd standardizes its numbers, fitted at the first fit
    sgd = SGDClassifier(**params).fit(scaler.transform(x0), y0["label"])
    for v in (2, 3, 4):
        bx, by = by_data[v]
        sgd.partial_fit(scaler.transform(bx), by["label"])
    reference = make_pipeline(scaler, sgd)
    probe, _ = batch(9, n=50)
    r = requests.post(url, json={"model_key": key, "x": probe.to_json(), "kwargs": {"method": "decision_function"}}, timeout=30)
    assert r.status_code == 200, r.text
    got = pd.read_json(io.StringIO(r.json()["data"]))
    np.testing.assert_allclose(got.iloc[:, 0].to_numpy(), reference.decision_function(probe), rtol=1e-9, atol=1e-9)
