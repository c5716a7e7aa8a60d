"""Backends through the real gateway and consumers: fit with `backend`, predict, list versions, refusals.

ONNX answers are float32: compared with the same model fitted in-process
within ONNX_TOLERANCE; labels must be identical.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from consumers.onnx_models import CHECK_ATOL, CHECK_RTOL
from contracts.frames import PARQUET, ParquetCodec, encode_training
from contracts.store import Artifact, Model, TrainingSession

from .stack import Stack

pytestmark = pytest.mark.integration

ONNX_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
SLOW = "tests.families_for_tests:slow"


def classification(seed: int, n: int = 400) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"], index=np.arange(500, 500 + n))
    return x, pd.Series(np.where(x["a"] + x["b"] - x["c"] > 0, 3, 7), index=x.index, name="label")


def regression(seed: int, n: int = 400) -> tuple[pd.DataFrame, pd.Series]:
    x, _ = classification(seed, n)
    return x, pd.Series(x @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0, name="target")


def fit_json(stack: Stack, family: str, x: pd.DataFrame, y: pd.Series | None, **fields: Any) -> requests.Response:
    body: dict[str, Any] = {"x": x.to_json(orient="split"), "orient": "split", **fields}
    if y is not None:
        body["y"] = y.to_frame().to_json(orient="split")
    return requests.post(stack.fit_url(family), json=body, timeout=30)


def fit_parquet(stack: Stack, family: str, x: pd.DataFrame, y: pd.Series | None, **params: str) -> requests.Response:
    return requests.post(
        stack.fit_url(family),
        params=params,
        data=encode_training(x, y.to_frame() if y is not None else None),
        headers={"Content-Type": PARQUET},
        timeout=30,
    )


def done(stack: Stack, family: str, r: requests.Response, version: int | None = None) -> str:
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]
    state = stack.wait_finished(family, key, version=version or r.json()["version"])
    assert state["status"] == "done", state
    return key


def predict_json(stack: Stack, family: str, key: str, x: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    r = requests.post(
        stack.family_url(family),
        json={"model_key": key, "x": x.to_json(orient="split"), "orient": "split", "kwargs": kwargs},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return pd.read_json(io.StringIO(r.json()["data"]), orient="split")


def predict_parquet(stack: Stack, family: str, key: str, x: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    r = requests.post(
        stack.family_url(family),
        params={"model_key": key, "kwargs": json.dumps(kwargs)},
        data=ParquetCodec.encode(x),
        headers={"Content-Type": PARQUET, "Accept": PARQUET},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return pq.read_table(io.BytesIO(r.content)).to_pandas()


def versions(stack: Stack, key: str) -> list[dict[str, Any]]:
    r = requests.get(f"{stack.url}/models/{key}/versions", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["versions"]


# ---- ONNX --------------------------------------------------------------------------------


def test_onnx_fit_in_json_predicts_like_scikit_learn_and_lists_its_backend(stack: Stack) -> None:
    x, y = classification(seed=31)
    key = done(stack, "logreg", fit_json(stack, "logreg", x, y, name=f"{stack.namespace}-onnx-logreg", modkwargs={"C": 0.5}, backend="onnx"))
    reference = LogisticRegression(C=0.5).fit(x, y)

    labels = predict_parquet(stack, "logreg", key, x)
    assert list(labels.columns) == ["label"] and labels.index.equals(x.index)
    assert labels["label"].dtype == np.int64
    np.testing.assert_array_equal(labels["label"].to_numpy(), reference.predict(x))

    proba = predict_parquet(stack, "logreg", key, x, method="predict_proba")
    assert list(proba.columns) == ["3", "7"] and proba.index.equals(x.index) and (proba.dtypes == np.float64).all()
    np.testing.assert_allclose(proba.to_numpy(), reference.predict_proba(x), **ONNX_TOLERANCE)
    np.testing.assert_array_equal(predict_json(stack, "logreg", key, x.head(20))["label"].to_numpy(), reference.predict(x.head(20)))

    # decision_function has no ONNX output here: 422 naming what this version offers.
    r = requests.post(
        stack.family_url("logreg"),
        json={"model_key": key, "x": x.head(2).to_json(), "kwargs": {"method": "decision_function"}},
        timeout=30,
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert "['predict', 'predict_proba']" in error["message"] and "onnx" in error["message"] and "kwargs" in error["fields"]

    (v1,) = versions(stack, key)
    assert v1["backend"] == "onnx" and v1["params"]["backend"] == "onnx"
    assert {"onnx", "skl2onnx", "onnxruntime", "scikit-learn"} <= set(v1["metadata"]["versions"])


def test_onnx_fit_in_parquet_regression_and_update_keeps_onnx(stack: Stack) -> None:
    x, y = regression(seed=32)
    key = done(stack, "linreg", fit_parquet(stack, "linreg", x, y, name=f"{stack.namespace}-onnx-linreg", backend="onnx"))
    got = predict_parquet(stack, "linreg", key, x)
    assert list(got.columns) == ["target"] and got["target"].dtype == np.float64 and got.index.equals(x.index)
    np.testing.assert_allclose(got["target"].to_numpy(), LinearRegression().fit(x, y).predict(x), **ONNX_TOLERANCE)
    assert versions(stack, key)[0]["backend"] == "onnx"

    # sgd supports update: the ONNX version also keeps the estimator, and version 2 is ONNX again.
    x1, y1 = classification(seed=33)
    x2, y2 = classification(seed=34)
    key = done(stack, "sgd", fit_json(stack, "sgd", x1, y1, name=f"{stack.namespace}-onnx-sgd", modkwargs={"random_state": 0}, backend="onnx"))
    r = requests.post(
        stack.model_url(key, "update"),
        json={"x": x2.to_json(orient="split"), "y": y2.to_frame().to_json(orient="split"), "orient": "split"},
        timeout=30,
    )
    assert r.status_code == 202 and r.json()["version"] == 2, r.text
    assert stack.wait_finished("sgd", key, version=2)["status"] == "done"
    scaler = StandardScaler().fit(x1)  # sgd standardizes its numbers, fitted at the first fit
    sgd = SGDClassifier(loss="log_loss", random_state=0).fit(scaler.transform(x1), y1).partial_fit(scaler.transform(x2), y2)
    reference = make_pipeline(scaler, sgd)
    np.testing.assert_array_equal(predict_parquet(stack, "sgd", key, x2)["label"].to_numpy(), reference.predict(x2))
    proba = predict_parquet(stack, "sgd", key, x2, method="predict_proba")
    # A float32 graph behind a scaler: held to the tolerances the export check holds every graph to.
    np.testing.assert_allclose(proba.to_numpy(), reference.predict_proba(x2), rtol=CHECK_RTOL, atol=CHECK_ATOL)
    assert [(v["version"], v["backend"]) for v in versions(stack, key)] == [(2, "onnx"), (1, "onnx")]


# ---- skops -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the in-process reference fit
def test_skops_fit_predicts_like_scikit_learn(stack: Stack) -> None:
    x, y = classification(seed=35)
    modkwargs = {"hidden_layer_sizes": [8], "max_iter": 500, "random_state": 0}
    key = done(stack, "nn", fit_json(stack, "nn", x, y, name=f"{stack.namespace}-skops-nn", modkwargs=modkwargs, backend="skops"))
    reference = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=[8], max_iter=500, random_state=0)).fit(x, y)
    labels = predict_parquet(stack, "nn", key, x)
    assert list(labels.columns) == ["label"] and labels["label"].dtype == np.int64
    np.testing.assert_array_equal(labels["label"].to_numpy(), reference.predict(x))
    np.testing.assert_allclose(
        predict_parquet(stack, "nn", key, x, method="predict_proba").to_numpy(), reference.predict_proba(x), rtol=1e-7
    )  # the same float64 model; only the fit process's BLAS threads may order sums differently
    (v1,) = versions(stack, key)
    assert v1["backend"] == "skops" and v1["params"]["backend"] == "skops" and "skops" in v1["metadata"]["versions"]

    # Unsupervised, through the Parquet query string.
    km = done(stack, "kmeans", fit_parquet(stack, "kmeans", x, None, name=f"{stack.namespace}-skops-kmeans", modkwargs='{"n_clusters": 3, "random_state": 0}', backend="skops"))
    reference_km = make_pipeline(StandardScaler(), KMeans(n_clusters=3, random_state=0, n_init="auto")).fit(x)
    np.testing.assert_array_equal(predict_parquet(stack, "kmeans", km, x)["predict"].to_numpy(), reference_km.predict(x))
    assert versions(stack, km)[0]["backend"] == "skops"


# ---- refusals ----------------------------------------------------------------------------


def test_bad_backend_is_422_naming_backend(stack: Stack) -> None:
    x, y = classification(seed=36, n=20)
    for r in (
        fit_json(stack, "logreg", x, y, backend="pickle"),
        fit_parquet(stack, "logreg", x, y, backend="pickle"),
        fit_json(stack, "logreg", x, y, backend=3),
    ):
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_input" and list(error["fields"]) == ["backend"], error
        assert "backend" in error["message"]


@pytest.fixture(scope="module")
def slow_consumer(stack: Stack) -> str:
    """A consumer of the `slow` test family (a LogisticRegression subclass skl2onnx can't convert)."""
    stack.start_consumer(SLOW)
    return "slow"


def test_onnx_fit_of_an_unconvertible_estimator_fails_with_the_reason(stack: Stack, slow_consumer: str) -> None:
    x, y = classification(seed=37, n=50)
    r = fit_json(stack, slow_consumer, x, y, modkwargs={"delay": 0}, backend="onnx")
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]
    state = stack.wait_finished(slow_consumer, key)
    assert state["status"] == "failed", state
    assert state["error"].startswith("SlowLogisticRegression could not be exported to ONNX: "), state["error"]
    r = requests.post(stack.family_url(slow_consumer), json={"model_key": key, "x": x.head(2).to_json()}, timeout=30)
    assert r.status_code == 409 and r.json()["error"]["code"] == "training_failed"
    assert "could not be exported to ONNX" in r.json()["error"]["message"]

    # The same estimator with the family's default backend (joblib) is fine.
    ok = done(stack, slow_consumer, fit_json(stack, slow_consumer, x, y, modkwargs={"delay": 0}))
    assert versions(stack, ok)[0]["backend"] == "joblib"


def test_artifact_made_with_another_scikit_learn_is_409_artifact_incompatible(stack: Stack) -> None:
    x, y = classification(seed=38, n=60)
    key = done(stack, "logreg", fit_json(stack, "logreg", x, y, name=f"{stack.namespace}-old-sklearn", backend="skops"))
    # As if stored by a consumer running an older scikit-learn (before any predict loaded it).
    url = make_url(stack.database_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        with Session(engine) as db, db.begin():
            art = db.execute(
                select(Artifact)
                .join(TrainingSession, TrainingSession.id == Artifact.session_id)
                .join(Model, Model.id == TrainingSession.model_id)
                .where(Model.model_key == key)
            ).scalar_one()
            art.meta = {**art.meta, "versions": {**art.meta["versions"], "scikit-learn": "1.0.2"}}
    finally:
        engine.dispose()
    r = requests.post(stack.family_url("logreg"), json={"model_key": key, "x": x.head(2).to_json()}, timeout=30)
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "artifact_incompatible" and "scikit-learn 1.0.2" in error["message"], error
