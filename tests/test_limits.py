"""A full queue refuses new work with 503 instead of growing without bound; accepted work still completes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests

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
        r = requests.put(url, json={"x": x.to_json(), "y": y.to_json(), "name": f"q{i}", "modkwargs": {"delay": 2.0}}, timeout=30)
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
