"""A model that hangs harms only itself: its predict is stopped at the deadline, its process killed, the
consumer answers every other model meanwhile, and a version that keeps overrunning is quarantined."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from .conftest import STANDARD_FAMILIES
from .families_for_tests import HangingPredict
from .hostile_store import store_imported
from .stack import Stack, wait_for

pytestmark = pytest.mark.integration

DEADLINE = 2.0
# What the deadline may be overrun by on a loaded 2-core machine: the kill, the reply, the gateway's hop.
MARGIN = 6.0


def _frame(n: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "b"])
    return x, pd.Series((x["a"] > 0).astype(int), name="y")


def _predict(stack: Stack, key: str, x: pd.DataFrame) -> tuple[requests.Response, float]:
    started = time.monotonic()
    r = requests.post(stack.family_url("logreg"), json={"model_key": key, "x": x.to_json(), "orient": "columns"}, timeout=60)
    return r, time.monotonic() - started


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_hanging_imported_model_is_stopped_and_quarantined(fresh_stack: Stack, tmp_path: Path) -> None:
    s = fresh_stack
    s.env.update(ML_SERVER_PREDICT_DEADLINE=str(DEADLINE), ML_SERVER_QUARANTINE_AFTER="2")
    s.start_consumer(*STANDARD_FAMILIES, wait=False)  # one consumer for every family, as `ml-server run`
    s.start_gateway(ready=False)
    s.wait_consumers("logreg")
    x, y = _frame()

    r = requests.put(s.family_url("logreg"), json={"x": x.to_json(), "y": y.to_frame().to_json(), "orient": "columns"}, timeout=30)
    assert r.status_code == 200, r.text
    normal = r.json()["model_key"]
    assert s.wait_finished("logreg", normal, timeout=120)["status"] == "done"

    pid_file = tmp_path / "hanging.pid"
    hostile = HangingPredict(pid_file=str(pid_file)).fit(x, y)
    store_imported(s.database_url, "logreg", "hostile-hang", hostile, ["a", "b"], s.env["ML_SERVER_SECRET"].encode())

    outcome: dict[str, Any] = {}
    bad = threading.Thread(target=lambda: outcome.update(zip(("response", "seconds"), _predict(s, "hostile-hang", x.head(1)))))
    bad.start()
    try:
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().split(), 30, what="the hanging predict")[0])
        assert _alive(pid)
        # While it spins: the same consumer answers a built-in model at once.
        answer, seconds = _predict(s, normal, x.head(3))
        assert answer.status_code == 200, answer.text
        assert seconds < 1.0, f"a normal predict took {seconds:.2f}s while the hostile one ran"
    finally:
        bad.join(60)
    response, seconds = outcome["response"], outcome["seconds"]
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "deadline_exceeded" and "hostile-hang" in error["message"], error
    assert seconds < DEADLINE + MARGIN, f"the hanging predict was answered after {seconds:.1f}s"
    wait_for(lambda: not _alive(pid), 10, what=f"the predict process {pid} stopped")

    # A second overrun in a row quarantines the version: failed, said in its status and its history.
    response, _ = _predict(s, "hostile-hang", x.head(1))
    assert response.status_code == 504 and "quarantined" in response.json()["error"]["message"], response.text
    state = s.status("logreg", "hostile-hang")
    assert state["status"] == "failed" and "quarantined" in (state["error"] or ""), state
    history = requests.get(s.model_url("hostile-hang", "history"), timeout=10).json()["history"]
    assert [h for h in history if h["action"] == "quarantine" and h["version"] == 1], history
    # Not tried again: refused at once with the reason.
    response, seconds = _predict(s, "hostile-hang", x.head(1))
    assert response.status_code == 409 and "quarantined" in response.json()["error"]["message"], response.text
    assert seconds < DEADLINE
    # Every process that ran it is gone; the built-in model still answers.
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2 and not any(_alive(p) for p in pids), pids
    assert _predict(s, normal, x.head(2))[0].status_code == 200
    assert all(p.poll() is None for _, p in s.consumers), "the consumer died"
    assert os.path.exists(pid_file)
