"""A full queue refuses new work with 503 instead of growing without bound; accepted work still completes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests

from contracts.frames import PARQUET, ParquetCodec, encode_training

from .stack import Stack

pytestmark = pytest.mark.integration


def test_full_train_queue_answers_503_and_loses_nothing_it_accepted(fresh_stack: Stack) -> None:
    fresh_stack.env["ML_SERVER_MAX_TRAIN_QUEUE"] = "1"
    fresh_stack.start_consumer("tests.families_for_tests:slow")
    fresh_stack.start_gateway()
    url = fresh_stack.family_url("slow")
    rng = np.random.default_rng(8)
    x = pd.DataFrame(rng.normal(size=(60, 2)), columns=["a", "b"])
    y = pd.DataFrame({"t": (x["a"] > 0).astype(int)})

    answers = []
    for i in range(5):
        r = requests.post(fresh_stack.fit_url("slow"), json={"x": x.to_json(), "y": y.to_json(), "name": f"q{i}", "modkwargs": {"delay": 2.0}}, timeout=30)
        answers.append(r)
    codes = [r.status_code for r in answers]
    assert set(codes) <= {202, 503} and codes.count(503) >= 1 and codes.count(202) >= 1, codes
    for r in answers:
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "unavailable" and "queue is full" in r.json()["error"]["message"]
    for i, r in enumerate(answers):
        key = requests.get(f"{fresh_stack.url}/models", params={"name": f"q{i}"}, timeout=10).json()["models"][0]["model_key"]
        state = fresh_stack.wait_finished("slow", key, timeout=60)
        if r.status_code == 202:
            assert state["status"] == "done", state
        else:  # refused: recorded as failed, never left queued
            assert state["status"] == "failed" and "could not be queued" in state["error"], state


def test_body_limits_are_per_verb_and_hold_for_chunked_bodies(fresh_stack: Stack) -> None:
    fresh_stack.env["ML_SERVER_MAX_PREDICT_BODY"] = str(64 * 1024)
    fresh_stack.env["ML_SERVER_MAX_BODY"] = str(4 * 2**20)
    fresh_stack.start_consumer("logreg")
    fresh_stack.start_gateway()
    url = fresh_stack.family_url("logreg")
    rng = np.random.default_rng(9)
    x = pd.DataFrame(rng.normal(size=(2000, 5)), columns=list("abcde"))  # ~100 KB as Parquet
    y = pd.DataFrame({"t": (x["a"] > 0).astype(int)})
    body = encode_training(x, y)
    assert 64 * 1024 < len(body) < 4 * 2**20

    # The same size is a fine fit and a too-big predict.
    r = requests.put(url, data=body, params={"name": "limits"}, headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 200, r.text
    key = r.json()["model_key"]
    assert fresh_stack.wait_finished("logreg", key)["status"] == "done"
    predict_body = ParquetCodec.encode(x)
    r = requests.post(url, params={"model_key": key}, data=predict_body, headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["code"] == "payload_too_large" and "predict" in err["message"] and str(64 * 1024) in err["message"]

    # Chunked (no Content-Length): refused while reading, not after.
    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(predict_body), 8192):
            yield predict_body[i : i + 8192]

    r = requests.post(url, params={"model_key": key}, data=chunks(), headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 413, r.text
    # A small predict still works.
    r = requests.post(url, params={"model_key": key}, data=ParquetCodec.encode(x.head(3)), headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 200, r.text
    # A fit over its own (bigger) limit is 413 too.
    bx = pd.DataFrame(rng.normal(size=(120_000, 5)), columns=list("abcde"))
    big = encode_training(bx, pd.DataFrame({"t": (bx["a"] > 0).astype(int)}))
    assert len(big) > 4 * 2**20
    r = requests.put(url, data=big, params={"name": "limits-big"}, headers={"Content-Type": PARQUET}, timeout=60)
    assert r.status_code == 413 and "fit" in r.json()["error"]["message"], r.text[:300]
