"""The training lifecycle against real processes: dedup, retrain, crash recovery, scaling, update, duplicates, delete.

What DESIGN.md calls "nothing lost": an accepted fit ends `done` even when the
consumer running it is killed; a job delivered twice still yields one `done`
version with one artifact; the same name (or data) without `retrain` queues
nothing new. Every claim is checked in the store itself, not only through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aio_pika
import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LogisticRegression
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.engine import make_url

from contracts.frames import PARQUET, encode_training
from contracts.messages import TrainHeaders
from contracts.status import JobKind
from contracts.store import Artifact, Model, TrainingSession
from contracts.topology import MessageType, Topology

from .processes import descendants, fit_processes, running
from .stack import BROKER_URL, Stack, wait_for, wait_queue_drained
from .zygote import Forked

pytestmark = pytest.mark.integration

SLOW = "tests.families_for_tests:slow"
FEATURES = ["f0", "f1", "f2", "f3"]


# ---- data -------------------------------------------------------------------


def classification(seed: int, n: int = 300, invert: bool = False) -> tuple[pd.DataFrame, pd.Series]:
    """Labels from the sign of f0 + f1 (or its opposite): two models that predict differently."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    label = (x["f0"] + x["f1"] > 0).astype(int)
    return x, (1 - label if invert else label).rename("label")


def regression(seed: int, n: int = 200) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    return x, (x["a"] - 2 * x["b"] + 0.5 * x["c"] + 1).rename("target")


def probe(seed: int = 4242, n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, len(FEATURES))), columns=FEATURES)


# ---- HTTP -------------------------------------------------------------------


def put(stack: Stack, family: str, x: pd.DataFrame, y: pd.Series | None = None, **fields: Any) -> requests.Response:
    body: dict[str, Any] = {"x": x.to_json(orient="split"), "orient": "split", **fields}
    if y is not None:
        body["y"] = y.to_frame().to_json(orient="split")
    return requests.post(stack.fit_url(family), json=body, timeout=30)


def accepted(r: requests.Response, code: int = 202) -> dict[str, Any]:
    assert r.status_code == code, r.text
    return r.json()


def predict(stack: Stack, family: str, key: str, x: pd.DataFrame, **fields: Any) -> np.ndarray:
    r = requests.post(
        stack.family_url(family),
        json={"model_key": key, "x": x.to_json(orient="split"), "orient": "split", "as_array": True, **fields},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return np.asarray(json.loads(r.json()["data"]))


def in_process(x: pd.DataFrame, y: pd.Series, at: pd.DataFrame, **modkwargs: Any) -> np.ndarray:
    return LogisticRegression(**modkwargs).fit(x, y).predict(at)


# ---- the store, read directly -------------------------------------------------


@contextmanager
def store(stack: Stack) -> Iterator[Engine]:
    url = make_url(stack.database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def sessions_of(stack: Stack, model_key: str) -> list[dict[str, Any]]:
    """Every session row of the model, oldest version first, with its artifact count."""
    with store(stack) as engine, engine.connect() as conn:
        artifacts = (
            select(func.count())
            .select_from(Artifact)
            .where(Artifact.session_id == TrainingSession.id)
            .scalar_subquery()
            .label("artifacts")
        )
        rows = conn.execute(
            select(
                TrainingSession.id,
                TrainingSession.version,
                TrainingSession.kind,
                TrainingSession.status,
                TrainingSession.attempts,
                TrainingSession.base_version,
                TrainingSession.worker,
                artifacts,
            )
            .join(Model, Model.id == TrainingSession.model_id)
            .where(Model.model_key == model_key)
            .order_by(TrainingSession.version)
        ).mappings()
        return [dict(r) for r in rows]


def count_rows(stack: Stack, table: Any, where: Any) -> int:
    with store(stack) as engine, engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())


# ---- the broker -------------------------------------------------------------


def publish_duplicate(stack: Stack, family: str, session: dict[str, Any], model_key: str, body: bytes, modkwargs: dict[str, Any] | None = None) -> None:
    """The gateway's fit message for an existing session, published again straight to the exchange."""
    headers = TrainHeaders().dump(
        {
            "job_id": session["id"],
            "model_key": model_key,
            "family": family,
            "version": session["version"],
            "kind": JobKind.FIT,
            "modkwargs": modkwargs or {},
            "algkwargs": {},
        }
    )

    async def send() -> None:
        connection = await aio_pika.connect(BROKER_URL)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(Topology(stack.namespace).jobs_exchange)
            await exchange.publish(
                aio_pika.Message(
                    body,
                    headers=headers,
                    content_type=PARQUET,
                    type=MessageType.FIT,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(session["id"]),
                ),
                routing_key=Topology.train_key(family),
                mandatory=True,
            )
        finally:
            await connection.close()

    asyncio.run(send())


# ---- processes --------------------------------------------------------------


def live_consumers(stack: Stack, family: str) -> list[Forked]:
    return [p for f, p in stack.consumers if f == family and p.poll() is None]


def worker_pid(state: dict[str, Any]) -> int:
    return int(state["worker"].rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def slow_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway and consumers of the `slow` test family, shared by this module's crash and scaling tests."""
    s = Stack(database_url, tmp_path_factory.mktemp("slow-stack"))
    try:
        s.start_consumer(SLOW)
        s.start_gateway()
        yield s
    finally:
        s.stop()


# ---- 1. same name, retrain, failed ---------------------------------------------


def test_same_name_returns_the_model_retrain_makes_a_version(stack: Stack) -> None:
    x, y = classification(seed=101)
    first = accepted(put(stack, "logreg", x, y, name="lifecycle-same-name"))
    assert first["version"] == 1 and first["status"] == "queued"
    key = first["model_key"]

    # Again at once (v1 may still be queued or running) and again once done: nothing new is queued.
    again = accepted(put(stack, "logreg", x, y, name="lifecycle-same-name"), 200)
    assert again["model_key"] == key and again["version"] == 1
    assert stack.wait_finished("logreg", key)["status"] == "done"
    other_x, other_y = classification(seed=102, invert=True)
    again = accepted(put(stack, "logreg", other_x, other_y, name="lifecycle-same-name"), 200)
    assert again == {"model_key": key, "status": "done", "version": 1}
    rows = sessions_of(stack, key)
    assert [(r["version"], r["status"].value, r["artifacts"]) for r in rows] == [(1, "done", 1)]
    state = stack.status("logreg", key)
    assert state["version"] == 1 and state["status"] == "done"

    at = probe()
    np.testing.assert_array_equal(predict(stack, "logreg", key, at), in_process(x, y, at))

    # retrain: a new version, from the new data; predictions come from it.
    second = accepted(put(stack, "logreg", other_x, other_y, name="lifecycle-same-name", retrain=True))
    assert second["model_key"] == key and second["version"] == 2
    state = stack.wait_finished("logreg", key, version=2)
    assert state["status"] == "done" and state["version"] == 2, state
    expected_v2 = in_process(other_x, other_y, at)
    assert not np.array_equal(expected_v2, in_process(x, y, at))  # the two versions are told apart
    np.testing.assert_array_equal(predict(stack, "logreg", key, at), expected_v2)
    np.testing.assert_array_equal(predict(stack, "logreg", key, at, version=1), in_process(x, y, at))
    rows = sessions_of(stack, key)
    assert [(r["version"], r["status"].value, r["artifacts"]) for r in rows] == [(1, "done", 1), (2, "done", 1)]


def test_same_name_with_other_columns_is_a_conflict_naming_them(stack: Stack) -> None:
    """A named fit that would answer with a model trained on other columns says so instead."""
    x, y = classification(seed=104)
    key = accepted(put(stack, "logreg", x, y, name="lifecycle-other-columns"))["model_key"]
    assert stack.wait_finished("logreg", key)["status"] == "done"

    other = x.rename(columns={"f3": "income"})
    seed = {"x": other.to_json(), "y": y.to_frame().to_json(), "name": "lifecycle-other-columns"}
    for r in (put(stack, "logreg", other, y, name="lifecycle-other-columns"), requests.put(stack.family_url("logreg"), json=seed, timeout=30)):
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "conflict" and "income" in error["message"] and "f3" in error["message"], error
        assert set(error["fields"]) == {"x", "name"}
    assert [(s["version"], s["status"].value) for s in sessions_of(stack, key)] == [(1, "done")]  # nothing queued

    again = accepted(put(stack, "logreg", other, y, name="lifecycle-other-columns", retrain=True))
    assert again["version"] == 2 and stack.wait_finished("logreg", key, version=2)["status"] == "done"


def test_failed_fit_is_refitted_without_retrain(stack: Stack) -> None:
    x, y = classification(seed=103)
    first = accepted(put(stack, "logreg", x, y, name="lifecycle-failed", modkwargs={"C": -1.0}))
    key = first["model_key"]
    state = stack.wait_finished("logreg", key)
    assert state["status"] == "failed" and state["version"] == 1 and state["error"], state

    second = accepted(put(stack, "logreg", x, y, name="lifecycle-failed", modkwargs={"C": 1.0}))
    assert second["model_key"] == key and second["version"] == 2 and second["status"] == "queued"
    state = stack.wait_finished("logreg", key, version=2)
    assert state["status"] == "done" and state["version"] == 2, state
    at = probe()
    np.testing.assert_array_equal(predict(stack, "logreg", key, at), in_process(x, y, at))
    rows = sessions_of(stack, key)
    assert [(r["version"], r["status"].value, r["artifacts"]) for r in rows] == [(1, "failed", 0), (2, "done", 1)]


# ---- 2. no name: the data and the parameters make the key -----------------------


def test_same_data_without_name_is_the_same_model(stack: Stack) -> None:
    x, y = regression(seed=201)
    first = accepted(put(stack, "linreg", x, y))
    key = first["model_key"]
    assert stack.wait_finished("linreg", key)["status"] == "done"

    again = accepted(put(stack, "linreg", x, y), 200)
    assert again == {"model_key": key, "status": "done", "version": 1}
    assert len(sessions_of(stack, key)) == 1

    other_params = accepted(put(stack, "linreg", x, y, modkwargs={"fit_intercept": False}))
    assert other_params["model_key"] != key and other_params["version"] == 1
    other_x, other_y = regression(seed=202)
    other_data = accepted(put(stack, "linreg", other_x, other_y))
    assert other_data["model_key"] not in (key, other_params["model_key"]) and other_data["version"] == 1
    for k in (other_params["model_key"], other_data["model_key"]):
        assert stack.wait_finished("linreg", k)["status"] == "done"
    assert len(sessions_of(stack, key)) == 1


# ---- 3. a consumer killed mid-fit ---------------------------------------------------


def test_consumer_killed_mid_fit_job_is_redelivered(slow_stack: Stack) -> None:
    s = slow_stack
    x, y = classification(seed=301)
    key = accepted(put(s, "slow", x, y, name="lifecycle-killed", modkwargs={"delay": 4}))["model_key"]
    first = wait_for(
        lambda: (st := s.status("slow", key))["status"] == "running" and st, 30, what="the fit running"
    )
    victim_pid = worker_pid(first)
    victim = next(p for p in live_consumers(s, SLOW) if p.pid == victim_pid)
    # The fit runs in a process forked from the consumer's forkserver: wait until it is there.
    below = wait_for(lambda: (d := descendants(victim_pid)) and len(fit_processes(d)) >= 2 and d, 30, what="the fit process")

    s.kill(victim)
    s.start_consumer(SLOW)

    # No orphan: the fit process dies with its consumer, and so does the rest below it.
    try:
        wait_for(lambda: not [pid for pid in below if running(pid)], 15, what=f"children {below} of the killed consumer gone")
    finally:
        for pid in below:  # don't leave orphans behind when the check failed
            if running(pid):
                os.kill(pid, signal.SIGKILL)

    state = s.wait_finished("slow", key, timeout=60)
    assert state["status"] == "done" and state["version"] == 1, state
    assert state["attempts"] == 2, state
    assert worker_pid(state) != victim_pid
    rows = sessions_of(s, key)
    assert [(r["version"], r["status"].value, r["artifacts"]) for r in rows] == [(1, "done", 1)]
    at = probe()
    np.testing.assert_array_equal(predict(s, "slow", key, at), in_process(x, y, at))


# ---- 4. consumers of one family share the work ------------------------------------------


def test_two_consumers_share_the_work(slow_stack: Stack) -> None:
    s = slow_stack
    while len(live_consumers(s, SLOW)) < 2:
        s.start_consumer(SLOW)
    pids = {p.pid for p in live_consumers(s, SLOW)}

    keys = []
    for i in range(4):
        x, y = classification(seed=400 + i)
        keys.append(accepted(put(s, "slow", x, y, name=f"lifecycle-shared-{i}", modkwargs={"delay": 1.5}))["model_key"])
    assert len(set(keys)) == 4
    states = [s.wait_finished("slow", key, timeout=60) for key in keys]
    assert all(st["status"] == "done" for st in states), states
    workers = {worker_pid(st) for st in states}
    assert len(workers) == 2 and workers <= pids, (workers, pids)


# ---- 5. update (partial_fit) ----------------------------------------------------------


def test_update_json_and_parquet(stack: Stack) -> None:
    url = stack.family_url("sgd")
    x, y = classification(seed=501)
    key = accepted(put(stack, "sgd", x, y, name="lifecycle-update", modkwargs={"random_state": 0}))["model_key"]
    assert stack.wait_finished("sgd", key)["status"] == "done"
    at = probe()
    assert predict(stack, "sgd", key, at).shape == (len(at),)

    x2, y2 = classification(seed=502)
    r = requests.patch(
        url,
        json={"model_key": key, "x": x2.to_json(orient="split"), "y": y2.to_frame().to_json(orient="split"), "orient": "split"},
        timeout=30,
    )
    assert accepted(r, 200) == {"model_key": key, "status": "Queued"}  # the seed's PATCH
    state = stack.wait_finished("sgd", key, version=2)
    assert state["status"] == "done" and state["kind"] == "update" and state["base_version"] == 1, state
    assert set(predict(stack, "sgd", key, at)) <= {0, 1}

    x3, y3 = classification(seed=503)
    r = requests.post(
        stack.model_url(key, "update"),
        data=encode_training(x3, y3.to_frame()),
        headers={"Content-Type": PARQUET},
        timeout=30,
    )
    assert accepted(r) == {"model_key": key, "status": "queued", "version": 3}  # ml-server's own
    state = stack.wait_finished("sgd", key, version=3)
    assert state["status"] == "done" and state["kind"] == "update" and state["base_version"] == 2, state
    latest = predict(stack, "sgd", key, at)
    assert latest.shape == (len(at),) and set(latest) <= {0, 1}
    assert (latest == (at["f0"] + at["f1"] > 0).astype(int).to_numpy()).mean() > 0.8

    rows = sessions_of(stack, key)
    assert [(r["version"], r["kind"].value, r["status"].value, r["base_version"], r["artifacts"]) for r in rows] == [
        (1, "fit", "done", None, 1),
        (2, "update", "done", 1, 1),
        (3, "update", "done", 2, 1),
    ]
    with store(stack) as engine, engine.connect() as conn:
        digests = conn.execute(
            select(Artifact.digest).where(Artifact.session_id.in_([r["id"] for r in rows]))
        ).scalars().all()
    assert len(set(digests)) == 3  # each update changed the model


# ---- 6. the same job delivered twice ----------------------------------------------------


def test_duplicate_job_messages_yield_one_done_version(stack: Stack) -> None:
    x, y = classification(seed=601)
    body = encode_training(x, y.to_frame())
    key = accepted(put(stack, "logreg", x, y, name="lifecycle-duplicate"))["model_key"]
    (session,) = sessions_of(stack, key)
    publish_duplicate(stack, "logreg", session, key, body)  # while the original is queued or running
    state = stack.wait_finished("logreg", key)
    assert state["status"] == "done", state
    publish_duplicate(stack, "logreg", session, key, body)  # after it is done
    wait_queue_drained(stack, "logreg")

    rows = sessions_of(stack, key)
    assert [(r["version"], r["status"].value, r["artifacts"], r["attempts"]) for r in rows] == [(1, "done", 1, 1)]
    assert stack.status("logreg", key) == state
    at = probe()
    np.testing.assert_array_equal(predict(stack, "logreg", key, at), in_process(x, y, at))


def test_duplicate_delivered_to_a_second_consumer_mid_fit(slow_stack: Stack) -> None:
    """Both consumers run the job; the later claim holds the fencing token, so one result is kept, once."""
    s = slow_stack
    while len(live_consumers(s, SLOW)) < 2:
        s.start_consumer(SLOW)
    x, y = classification(seed=602)
    modkwargs = {"delay": 2}
    key = accepted(put(s, "slow", x, y, name="lifecycle-duplicate-race", modkwargs=modkwargs))["model_key"]
    wait_for(lambda: s.status("slow", key)["status"] == "running", 30, what="the fit running")
    (session,) = sessions_of(s, key)
    publish_duplicate(s, "slow", session, key, encode_training(x, y.to_frame()), modkwargs)
    wait_queue_drained(s, "slow")

    state = s.status("slow", key)
    assert state["status"] == "done" and state["version"] == 1, state
    assert state["attempts"] == 2, state  # the idle consumer really claimed and ran the duplicate
    rows = sessions_of(s, key)
    assert [(r["version"], r["status"].value, r["artifacts"]) for r in rows] == [(1, "done", 1)]
    assert count_rows(s, Model, Model.model_key == key) == 1
    at = probe()
    np.testing.assert_array_equal(predict(s, "slow", key, at), in_process(x, y, at))


# ---- 7. delete ----------------------------------------------------------------------------


def test_delete_removes_every_version_and_refit_starts_fresh(stack: Stack) -> None:
    url = stack.family_url("logreg")
    x, y = classification(seed=701)
    old = [classification(seed=702, invert=True), classification(seed=703, invert=True)]
    at = probe()
    key = accepted(put(stack, "logreg", *old[0], name="lifecycle-delete"))["model_key"]
    assert stack.wait_finished("logreg", key)["status"] == "done"
    accepted(put(stack, "logreg", *old[1], name="lifecycle-delete", retrain=True))
    assert stack.wait_finished("logreg", key, version=2)["status"] == "done"
    # Predict with both versions, so that the consumer has them loaded in its cache.
    np.testing.assert_array_equal(predict(stack, "logreg", key, at, version=1), in_process(*old[0], at))
    np.testing.assert_array_equal(predict(stack, "logreg", key, at), in_process(*old[1], at))
    ids = [r["id"] for r in sessions_of(stack, key)]
    assert len(ids) == 2

    r = requests.delete(stack.model_url(key), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"model_key": key, "deleted": 2}
    assert sessions_of(stack, key) == []
    assert count_rows(stack, TrainingSession, TrainingSession.id.in_(ids)) == 0
    assert count_rows(stack, Artifact, Artifact.session_id.in_(ids)) == 0
    assert count_rows(stack, Model, Model.model_key == key) == 0
    r = requests.get(url, params={"model_key": key}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"], r.text
    r = requests.post(url, json={"model_key": key, "x": at.to_json(orient="split"), "orient": "split"}, timeout=30)
    assert r.status_code == 404, r.text
    assert requests.delete(url, params={"model_key": key}, timeout=10).status_code == 404
    assert requests.delete(stack.model_url(key), timeout=10).status_code == 404

    # The same name again: a fresh version 1 that predicts with the new model, not a cached old one.
    again = accepted(put(stack, "logreg", x, y, name="lifecycle-delete"))
    assert again == {"model_key": key, "status": "queued", "version": 1}
    assert stack.wait_finished("logreg", key)["status"] == "done"
    expected = in_process(x, y, at)
    assert not any(np.array_equal(expected, in_process(ox, oy, at)) for ox, oy in old)
    np.testing.assert_array_equal(predict(stack, "logreg", key, at), expected)
    rows = sessions_of(stack, key)
    assert [(r["version"], r["status"].value, r["artifacts"]) for r in rows] == [(1, "done", 1)]
    assert not set(ids) & {r["id"] for r in rows}
