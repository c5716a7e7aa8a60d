"""One consumer process for several families, fit processes on demand, and readiness that tells the truth."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from contracts.topology import Topology

from .processes import descendants, fit_processes, forked_fits, running
from .stack import Stack, queue_states, wait_for

pytestmark = pytest.mark.integration

SLOW = "tests.families_for_tests:slow"


def data(seed: int, n: int = 200) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    return x, (x["a"] - x["b"] > 0).astype(int).rename("label")


def fit(stack: Stack, family: str, x: pd.DataFrame, y: pd.Series, **fields: Any) -> str:
    body = {"x": x.to_json(orient="split"), "y": y.to_frame().to_json(orient="split"), "orient": "split", **fields}
    r = requests.post(stack.fit_url(family), json=body, timeout=30)
    assert r.status_code in (200, 202), r.text
    return str(r.json()["model_key"])


def predict(stack: Stack, family: str, key: str, x: pd.DataFrame) -> np.ndarray:
    body = {"model_key": key, "x": x.to_json(orient="split"), "orient": "split", "as_array": True}
    r = requests.post(stack.family_url(family), json=body, timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return np.asarray(json.loads(data) if isinstance(data, str) else data)


def readyz(stack: Stack) -> tuple[int, dict[str, Any]]:
    r = requests.get(f"{stack.url}/readyz", timeout=10)
    return r.status_code, r.json()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the in-process reference fit
def test_one_process_serves_fits_and_predicts_of_several_families_at_once(fresh_stack: Stack) -> None:
    s = fresh_stack
    consumer = s.start_consumer("logreg", "linreg", "nn")
    s.start_gateway()
    t = Topology(s.namespace)
    states = queue_states([q for f in ("logreg", "linreg", "nn") for q in (t.train_queue(f), t.predict_queue(f))])
    assert {q: st.consumers for q, st in states.items()} == dict.fromkeys(states, 1) and len(states) == 6, states

    x, y = data(1)
    yr = x["a"] * 2 - x["c"]
    keys: dict[str, str] = {}

    def submit(family: str, target: pd.Series) -> None:
        keys[family] = fit(s, family, x, target, name=f"multi-{family}", modkwargs={"random_state": 0} if family == "nn" else {})

    threads = [threading.Thread(target=submit, args=a) for a in (("logreg", y), ("linreg", yr.rename("t")), ("nn", y))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    states_after = {f: s.wait_finished(f, k, timeout=90) for f, k in keys.items()}
    assert {f: st["status"] for f, st in states_after.items()} == dict.fromkeys(keys, "done"), states_after
    # One process did all three: the same worker id.
    assert {st["worker"].rsplit(":", 1)[1] for st in states_after.values()} == {str(consumer.pid)}

    at = data(2, 30)[0]
    expected = {
        "logreg": LogisticRegression().fit(x, y).predict(at),
        "linreg": LinearRegression().fit(x, yr).predict(at),
        "nn": make_pipeline(StandardScaler(), MLPClassifier(random_state=0)).fit(x, y).predict(at),
    }
    answers: dict[str, np.ndarray] = {}

    def ask(family: str) -> None:
        answers[family] = predict(s, family, keys[family], at)

    threads = [threading.Thread(target=ask, args=(f,)) for f in keys]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    np.testing.assert_array_equal(answers["logreg"], expected["logreg"])
    np.testing.assert_allclose(answers["linreg"], expected["linreg"], rtol=1e-9)
    np.testing.assert_array_equal(answers["nn"], expected["nn"])


def test_fit_processes_start_on_demand_or_warm(fresh_stack: Stack) -> None:
    s = fresh_stack
    lazy = s.start_consumer("logreg")
    s.start_gateway()
    before = descendants(lazy.pid)
    # The forkserver, forked from the consumer at start (a fork, no imports), and no fit process yet.
    assert len(fit_processes(before)) == 1 and forked_fits(lazy.pid, before) == [], before

    x, y = data(3)
    key = fit(s, "logreg", x, y, name="on-demand")
    assert s.wait_finished("logreg", key)["status"] == "done"
    # The next fit's process, forked from the forkserver once the first one exited.
    wait_for(lambda: len(forked_fits(lazy.pid, descendants(lazy.pid))) >= 1, 30, what="the next fit's process")

    warm = s.start_consumer("linreg", ML_SERVER_FIT_POOL_WARM="true")
    wait_for(lambda: len(forked_fits(warm.pid, descendants(warm.pid))) >= 1, 30, what="the warm consumer's fit process, before any fit")


def test_readiness_waits_for_a_consumer_on_every_expected_family(fresh_stack: Stack) -> None:
    s = fresh_stack
    s.start_gateway(ready=False, ML_SERVER_FAMILIES="logreg,nn")
    status, body = readyz(s)
    assert status == 503, body
    assert body["broker"] == "ok" and body["store"] == "ok" and body["families"] == {"logreg": "no consumer", "nn": "no consumer"}

    s.start_consumer("logreg")
    status, body = readyz(s)
    assert status == 503 and body["families"] == {"logreg": "ok", "nn": "no consumer"}, body

    s.start_consumer("nn")
    status, body = wait_for(lambda: (r := readyz(s))[0] == 200 and r, 30, what="ready")
    assert body == {"status": "ok", "broker": "ok", "store": "ok", "families": {"logreg": "ok", "nn": "ok"}}, body

    consumer = s.live("nn")[0]
    s.kill(consumer, signal.SIGTERM)
    status, body = wait_for(lambda: (r := readyz(s))[0] == 503 and r, 30, what="not ready without an nn consumer")
    assert body["families"] == {"logreg": "ok", "nn": "no consumer"}, body


def test_a_fit_sent_while_its_consumer_starts_is_queued_then_done(empty_database_url: str, tmp_path: Path) -> None:
    # A store no consumer of logreg has registered in yet.
    s = Stack(empty_database_url, tmp_path / "stack")
    try:
        queued_while_starting(s)
    finally:
        s.stop()


def queued_while_starting(s: Stack) -> None:
    s.start_gateway(ready=False, ML_SERVER_FAMILIES="logreg,custom")
    x, y = data(4)
    key = fit(s, "logreg", x, y, name="early")
    assert s.status("logreg", key)["status"] == "queued"
    bad = fit(s, "logreg", x, y, name="early-bad", modkwargs={"no_such_parameter": 1})
    # An expected family that is not built in and has not registered: try again later, not 404.
    r = requests.post(s.fit_url("custom"), json={"x": x.to_json(), "y": y.to_frame().to_json()}, timeout=10)
    assert r.status_code == 503 and "custom" in r.json()["error"]["message"], r.text
    assert requests.post(s.fit_url("nope"), json={"x": x.to_json()}, timeout=10).status_code == 404

    s.start_consumer("logreg")
    assert s.wait_finished("logreg", key, timeout=60)["status"] == "done"
    failed = s.wait_finished("logreg", bad, timeout=60)
    assert failed["status"] == "failed" and "no_such_parameter" in failed["error"], failed
    at = data(5, 20)[0]
    np.testing.assert_array_equal(predict(s, "logreg", key, at), LogisticRegression().fit(x, y).predict(at))


def test_sigkill_of_a_multi_family_consumer_mid_fit(fresh_stack: Stack) -> None:
    s = fresh_stack
    victim = s.start_consumer(SLOW, "logreg")
    s.start_gateway()
    x, y = data(6)
    slow_key = fit(s, "slow", x, y, name="killed-mid-fit", modkwargs={"delay": 4})
    wait_for(lambda: s.status("slow", slow_key)["status"] == "running", 30, what="the slow fit running")
    below = wait_for(lambda: (d := descendants(victim.pid)) and len(fit_processes(d)) >= 2 and d, 30, what="its fit process")
    logreg_key = fit(s, "logreg", x, y, name="queued-behind-the-kill")

    s.kill(victim)
    try:
        wait_for(lambda: not [p for p in below if running(p)], 15, what=f"the processes below the killed consumer ({below}) gone")
    finally:
        for pid in below:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    replacement = s.start_consumer(SLOW, "logreg")

    slow = s.wait_finished("slow", slow_key, timeout=90)
    assert slow["status"] == "done" and slow["version"] == 1 and slow["attempts"] == 2, slow
    assert slow["worker"].rsplit(":", 1)[1] == str(replacement.pid)
    assert s.wait_finished("logreg", logreg_key, timeout=60)["status"] == "done"
    versions = requests.get(f"{s.url}/models/{slow_key}/versions", timeout=10).json()["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "done")], versions
    at = data(7, 20)[0]
    np.testing.assert_array_equal(predict(s, "slow", slow_key, at), LogisticRegression().fit(x, y).predict(at))
