"""The seed's wire contract on `/{family}`, as the seed's own client (ml_api.contract.interfaces) speaks it.

`SeedWire` does on the wire exactly what that client does: the same requests,
the same check (anything but 200 raises), and answers loaded with the same
marshmallow schemas, which raise on any field they don't declare, with its
status enum (loaded by name). Its only difference: it polls every 0.05 s
instead of every 5 s.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from marshmallow import Schema, fields
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .stack import Stack

pytestmark = pytest.mark.integration


class ModelStatus(Enum):
    Running = "Running"
    Done = "Done"
    Failed = "Failed"
    Cancelled = "Cancelled"
    Unknown = "Unknown"
    Queued = "Queued"


class GetResponse(Schema):
    status = fields.Enum(ModelStatus)  # by name, as marshmallow_enum's EnumField


class PutResponse(GetResponse):
    model_key = fields.String(required=True)


class PostResponse(Schema):
    data = fields.String(required=True)
    orient = fields.String(required=True)


class SeedWire:
    """The seed client's `GenericModelInterface`, request for request."""

    def __init__(self, base: str, endpoint: str, **modkwargs: Any) -> None:
        self._address = f"{base.rstrip('/')}/{endpoint}"
        self._headers = {"Content-type": "application/json"}
        self._mk = modkwargs
        self._key: str | None = None
        self._orient = "columns"
        self.seen: list[ModelStatus] = []

    def _exec_req(self, meth: Any, **kwargs: Any) -> Any:
        resp = meth(self._address, headers=self._headers, timeout=60, **kwargs)
        if resp.status_code != 200:
            raise Exception(f"Got error code {resp.status_code}: {resp.text}")
        return resp.json()

    def _check_done(self) -> bool:
        resp = GetResponse().load(self._exec_req(requests.get, params={"model_key": self._key}))
        self.seen.append(resp["status"])
        if resp["status"] == ModelStatus.Failed:
            raise Exception("Something went wrong trying to train the model! Check server logs for further details")
        return bool(resp["status"] == ModelStatus.Done)

    def fit(self, x: pd.DataFrame, y: pd.DataFrame | None = None, name: str | None = None, wait: bool = True, **algkwargs: Any) -> SeedWire:
        params = {
            "x": x.to_json(orient=self._orient),
            "algkwargs": algkwargs,
            "modkwargs": self._mk,
            "orient": self._orient,
            "retrain": algkwargs.pop("retrain", False),
        }
        if y is not None:
            params["y"] = y.to_json(orient=self._orient)
        if name:
            params["name"] = name
        return self._train(requests.put, wait=wait, json=params)

    def _train(self, meth: Any, wait: bool = False, **kwargs: Any) -> SeedWire:
        resp = meth(self._address, timeout=60, **kwargs)
        if resp.status_code != 200:
            raise Exception(f"Got code {resp.status_code}: {resp.text}")
        self._key = PutResponse().load(resp.json())["model_key"]
        while wait and not self._check_done():
            time.sleep(0.05)
        return self

    def predict(self, x: pd.DataFrame, as_array: bool = False, **kwargs: Any) -> Any:
        params = {"model_key": self._key, "x": x.to_json(orient=self._orient), "orient": self._orient, "as_array": as_array, "kwargs": kwargs or dict()}
        resp = PostResponse().load(self._exec_req(requests.post, json=params))
        data = json.loads(resp["data"])
        if not as_array:
            return pd.DataFrame.from_dict(data, orient=resp["orient"])
        return np.array(data)

    def update(self, x: pd.DataFrame, y: pd.DataFrame | None = None, wait: bool = True) -> SeedWire:
        params = {"x": x.to_json(orient=self._orient), "orient": self._orient, "model_key": self._key}
        if y is not None:
            params["y"] = y.to_json(orient=self._orient)
        return self._train(requests.patch, wait=wait, json=params)

    def delete(self, model_key: str) -> requests.Response:
        return requests.delete(self._address, params={"model_key": model_key}, timeout=60)


def test_the_seed_readme_example(stack: Stack) -> None:
    # ===== Generate some dummy data ===== #
    x = pd.DataFrame(np.random.normal(size=(10000, 10)))
    y = (x.sum(axis=1) <= x.mean(axis=1)).astype(np.float32)

    # ===== Set up interface, perform fit and predict ===== #
    mi = SeedWire(stack.url + "/", "logreg")
    mi.fit(x, y.to_frame(), name=f"logistic-regression-random-data-{stack.namespace}")

    yhat = mi.predict(x).iloc[:, 0]
    yhat.index = yhat.index.astype(int)

    assert (yhat.sort_index() == y).mean() > 0.9
    assert mi.seen[-1] == ModelStatus.Done and set(mi.seen) <= {ModelStatus.Queued, ModelStatus.Running, ModelStatus.Done}
    np.testing.assert_array_equal(yhat.sort_index().to_numpy(), LogisticRegression().fit(x, y).predict(x))


def test_answers_hold_exactly_the_seed_fields(stack: Stack) -> None:
    rng = np.random.default_rng(11)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    y = (x.a + x.b > 0).astype(int).to_frame("t")
    url = stack.family_url("logreg")
    name = f"seed-fields-{stack.namespace}"
    r = requests.put(url, json={"x": x.to_json(), "y": y.to_json(), "orient": "columns", "name": name}, timeout=30)
    assert r.status_code == 200 and set(r.json()) == {"status", "model_key"} and r.json()["status"] == "Queued", r.text
    key = r.json()["model_key"]
    states = []
    while not states or states[-1] not in ("Done", "Failed"):
        g = requests.get(url, params={"model_key": key}, timeout=10)
        assert g.status_code == 200 and set(g.json()) == {"status"}, g.text
        states.append(g.json()["status"])
        time.sleep(0.05)
    assert states[-1] == "Done" and set(states) <= {"Queued", "Running", "Done"}, states
    # The model exists and no retrain: the same 200, with its status now.
    again = requests.put(url, json={"x": x.to_json(), "y": y.to_json(), "name": name}, timeout=30)
    assert again.status_code == 200 and again.json() == {"status": "Done", "model_key": key}
    p = requests.post(url, json={"model_key": key, "x": x.head(4).to_json(), "orient": "columns", "as_array": False, "kwargs": {}}, timeout=30)
    assert p.status_code == 200 and set(p.json()) == {"data", "orient"} and isinstance(p.json()["data"], str), p.text
    d = requests.delete(url, params={"model_key": key}, timeout=10)
    assert d.status_code == 200 and d.json() == {}
    assert requests.get(url, params={"model_key": key}, timeout=10).status_code == 404


def test_as_array_retrain_and_delete(stack: Stack) -> None:
    rng = np.random.default_rng(12)
    x = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0])).to_frame("y")
    mi = SeedWire(stack.url, "linreg", fit_intercept=False)
    name = f"seed-linreg-{stack.namespace}"
    mi.fit(x, y, name=name)
    key = mi._key
    assert key is not None
    expected = LinearRegression(fit_intercept=False).fit(x, y["y"]).predict(x.head(5))
    got = mi.predict(x.head(5), as_array=True)
    assert isinstance(got, np.ndarray) and got.shape == (5,)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    frame = mi.predict(x.head(5))
    assert list(frame.columns) == ["y"] and list(frame.index) == ["0", "1", "2", "3", "4"]

    # retrain: a second version on other data, which predictions now come from.
    x2 = x * 2
    mi.fit(x2, y, name=name, retrain=True)
    assert mi._key == key
    versions = requests.get(stack.model_url(key, "versions"), timeout=10).json()["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(2, "done"), (1, "done")]
    np.testing.assert_allclose(mi.predict(x2.head(5), as_array=True), LinearRegression(fit_intercept=False).fit(x2, y["y"]).predict(x2.head(5)), rtol=1e-9)

    r = mi.delete(key)
    assert r.status_code == 200
    with pytest.raises(Exception, match="Got error code 404"):
        mi._check_done()


def test_update_on_an_incremental_family(stack: Stack) -> None:
    rng = np.random.default_rng(13)
    x1 = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    y1 = (x1.a > x1.b).astype(int).to_frame("t")
    x2 = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    y2 = (x2.a > x2.b).astype(int).to_frame("t")
    mi = SeedWire(stack.url, "sgd", random_state=0)
    mi.fit(x1, y1, name=f"seed-sgd-{stack.namespace}")
    mi.seen.clear()
    mi.update(x2, y2)
    assert mi.seen[-1] == ModelStatus.Done
    scaler = StandardScaler().fit(x1)  # sgd standardizes its numbers, fitted at the first fit
    sgd = SGDClassifier(loss="log_loss", random_state=0).fit(scaler.transform(x1), y1["t"]).partial_fit(scaler.transform(x2), y2["t"])
    reference = make_pipeline(scaler, sgd)
    np.testing.assert_array_equal(mi.predict(x2, as_array=True), reference.predict(x2))
    proba = mi.predict(x2.head(3), method="predict_proba")
    assert list(proba.columns) == ["0", "1"]
    np.testing.assert_allclose(proba.to_numpy(), reference.predict_proba(x2.head(3)), rtol=1e-7)


def test_a_failed_fit_is_failed_to_the_seed_client(stack: Stack) -> None:
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    y = pd.DataFrame({"t": [0, 1, 0, 1]})
    mi = SeedWire(stack.url, "logreg", C=-1.0)  # a value the estimator refuses: the fit fails
    with pytest.raises(Exception, match="Something went wrong"):
        mi.fit(x, y, name=f"seed-failed-{stack.namespace}")
    assert mi.seen[-1] == ModelStatus.Failed
