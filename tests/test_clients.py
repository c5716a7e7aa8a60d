"""ModelClient, AsyncModelClient and RemoteEstimator against the real stack; answers equal the in-process models."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from client import (
    AsyncModelClient,
    InvalidInput,
    ModelClient,
    NotFound,
    RemoteClassifier,
    RemoteEstimator,
    RemoteRegressor,
    TrainingFailed,
)
from consumers import preprocess
from consumers.families import BUILTIN
from contracts.columns import infer

from .stack import Stack

pytestmark = pytest.mark.integration


def regression_data(n: int = 300, seed: int = 11) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    y = pd.Series(x @ np.array([2.0, -1.0, 0.5]) + rng.normal(scale=0.2, size=n), name="target")
    return x, y


def classification_data(n: int = 300, seed: int = 12) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(loc=3.0, scale=2.0, size=(n, 4)), columns=[f"f{i}" for i in range(4)])
    noise = rng.normal(scale=0.8, size=n)
    y = pd.Series((x["f0"] - x["f1"] + 0.5 * x["f2"] - 1.5 + noise > 0).astype(int), name="label")
    return x, y


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_model_client_verbs(stack: Stack, fmt: str) -> None:
    client = ModelClient(stack.url, format=fmt)
    # JSON carries 15 significant digits; Parquet carries the bits.
    rtol = 1e-12 if fmt == "parquet" else 1e-7
    x, y = regression_data()

    state = client.fit("linreg", x, y, name=f"mc-linreg-{fmt}", modkwargs={"fit_intercept": False})
    assert state["status"] == "done" and state["version"] == 1 and state["rows"] == len(x)
    key = state["model_key"]
    assert client.status("linreg", key)["status"] == "done"

    expected = LinearRegression(fit_intercept=False).fit(x, y).predict(x)
    got = client.predict("linreg", key, x)
    assert list(got.columns) == ["target"] and got.index.equals(x.index)
    np.testing.assert_allclose(got["target"].to_numpy(), expected, rtol=rtol, atol=rtol)

    # Logistic regression: labels, probabilities through `method`, a pinned version.
    xc, yc = classification_data()
    logreg = client.fit("logreg", xc, yc, name=f"mc-logreg-{fmt}", modkwargs={"C": 0.5})
    reference = LogisticRegression(C=0.5).fit(xc, yc)
    np.testing.assert_array_equal(client.predict("logreg", logreg["model_key"], xc)["label"].to_numpy(), reference.predict(xc))
    proba = client.predict("logreg", logreg["model_key"], xc.head(10), method="predict_proba", version=1)
    assert list(proba.columns) == ["0", "1"]
    np.testing.assert_allclose(proba.to_numpy(), reference.predict_proba(xc.head(10)), rtol=1e-6)

    # sgd supports update: a second version, based on the first.
    half = len(xc) // 2
    sgd = client.fit("sgd", xc.iloc[:half], yc.iloc[:half], name=f"mc-sgd-{fmt}", modkwargs={"random_state": 0})
    updated = client.update("sgd", sgd["model_key"], xc.iloc[half:], yc.iloc[half:])
    assert updated["status"] == "done" and updated["version"] == 2 and updated["base_version"] == 1
    history = client.versions(sgd["model_key"])
    assert history["total"] == 2 and [v["version"] for v in history["versions"]] == [2, 1]
    assert client.versions(sgd["model_key"], status="done", limit=1)["versions"][0]["version"] == 2

    listed = client.models(family="linreg", name=f"mc-linreg-{fmt}")
    assert [m["model_key"] for m in listed["models"]] == [key]
    families = {f["name"]: f for f in client.families()}
    assert families["sgd"]["supports_update"] and not families["linreg"]["supports_update"]
    assert "predict_proba" in families["logreg"]["methods"]

    assert client.delete("linreg", key) == {"model_key": key, "deleted": 1}
    with pytest.raises(NotFound):
        client.status("linreg", key)
    client.close()


def test_model_client_typed_errors(stack: Stack) -> None:
    client = ModelClient(stack.url, token="not-checked-by-this-gateway")
    x, y = classification_data(n=60)
    with pytest.raises(NotFound) as missing:
        client.status("logreg", "no-such-model")
    assert missing.value.status == 404
    with pytest.raises(NotFound):
        client.fit("no-such-family", x, y)
    with pytest.raises(InvalidInput) as unknown:
        client.fit("logreg", x, y, modkwargs={"not_a_param": 1})
    assert unknown.value.status == 422 and "modkwargs" in (unknown.value.fields or {})
    with pytest.raises(InvalidInput) as no_y:
        client.fit("logreg", x)
    assert "y" in (no_y.value.fields or {})
    with pytest.raises(TrainingFailed, match="version 1 failed"):
        client.fit("logreg", x, y, name="mc-failing", modkwargs={"C": -1.0})
    accepted = client.fit("logreg", x, y, name="mc-errors", wait=False)
    assert accepted["status"] in ("queued", "done")
    client.wait("logreg", accepted["model_key"], timeout=60)
    with pytest.raises(InvalidInput):
        client.predict("logreg", accepted["model_key"], x, method="transform")
    with pytest.raises(InvalidInput):
        client.update("logreg", accepted["model_key"], x, y)
    with pytest.raises(ValueError, match="format"):
        ModelClient(stack.url, format="xml")


def test_async_model_client(stack: Stack) -> None:
    x, y = regression_data(seed=13)
    expected = LinearRegression().fit(x, y).predict(x)

    async def scenario() -> None:
        async with AsyncModelClient(stack.url) as client, AsyncModelClient(stack.url, format="json") as json_client:
            state, other = await asyncio.gather(
                client.fit("linreg", x, y, name="amc-linreg"),
                json_client.fit("linreg", x, y, name="amc-linreg-json"),
            )
            assert state["status"] == other["status"] == "done"
            got = await client.predict("linreg", state["model_key"], x)
            np.testing.assert_allclose(got["target"].to_numpy(), expected, rtol=1e-12, atol=1e-12)
            got = await json_client.predict("linreg", other["model_key"], x)
            np.testing.assert_allclose(got["target"].to_numpy(), expected, rtol=1e-7, atol=1e-7)
            assert (await client.status("linreg", state["model_key"]))["version"] == 1
            assert (await client.versions(state["model_key"]))["total"] == 1
            assert (await client.models(name="amc-linreg"))["total"] == 1
            assert "linreg" in {f["name"] for f in await client.families()}
            assert (await client.delete("linreg", state["model_key"]))["deleted"] == 1
            with pytest.raises(NotFound):
                await client.status("linreg", state["model_key"])
            with pytest.raises(InvalidInput) as bad:
                await client.fit("linreg", x, y, modkwargs={"nope": 1})
            assert "modkwargs" in (bad.value.fields or {})

    asyncio.run(scenario())


def test_remote_estimator_params_and_clone(stack: Stack) -> None:
    est = RemoteEstimator("logreg", stack.url, backend="skops", C=0.5)
    assert est.get_params() == {"family": "logreg", "base_url": stack.url, "backend": "skops", "C": 0.5}
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    twin.set_params(C=2.0, backend=None, max_iter=50)
    assert twin.get_params() == {"family": "logreg", "base_url": stack.url, "backend": None, "C": 2.0, "max_iter": 50}
    assert est.get_params()["C"] == 0.5
    assert is_classifier(est) and is_regressor(RemoteEstimator("linreg", stack.url))
    assert is_classifier(RemoteClassifier("logreg", stack.url)) and is_regressor(RemoteRegressor("ridge", stack.url))
    assert hasattr(est, "predict_proba") and hasattr(est, "decision_function") and not hasattr(est, "partial_fit")
    assert not hasattr(RemoteEstimator("linreg", stack.url), "predict_proba")
    assert hasattr(RemoteEstimator("sgd", stack.url), "partial_fit")


def test_remote_estimator_in_pipeline_and_cross_val_score(stack: Stack) -> None:
    x, y = classification_data(seed=14)
    remote = make_pipeline(StandardScaler(), RemoteEstimator("logreg", stack.url, C=0.5))
    local = make_pipeline(StandardScaler(), LogisticRegression(C=0.5))
    remote.fit(x, y)
    local.fit(x, y)
    np.testing.assert_array_equal(remote.predict(x), local.predict(x))
    np.testing.assert_allclose(remote.predict_proba(x), local.predict_proba(x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(remote.decision_function(x), local.decision_function(x), rtol=1e-9, atol=1e-12)
    assert remote.score(x, y) == pytest.approx(local.score(x, y), abs=1e-9)
    step = remote[-1]
    assert step.model_key_.startswith("logreg-") and step.n_features_in_ == 4
    np.testing.assert_array_equal(step.classes_, [0, 1])

    remote_scores = cross_val_score(remote, x, y, cv=3)
    local_scores = cross_val_score(local, x, y, cv=3)
    np.testing.assert_allclose(remote_scores, local_scores, rtol=0, atol=1e-9)

    xr, yr = regression_data(seed=15)
    regressor = RemoteEstimator("linreg", stack.url)
    np.testing.assert_allclose(
        cross_val_score(regressor, xr, yr, cv=3), cross_val_score(LinearRegression(), xr, yr, cv=3), rtol=0, atol=1e-9
    )
    # Fitted on a DataFrame: its feature names; a refit of the same data is a new version of the same model.
    regressor.fit(xr, yr)
    first = (regressor.model_key_, regressor.version_)
    np.testing.assert_array_equal(regressor.feature_names_in_, ["a", "b", "c"])
    regressor.fit(xr, yr)
    assert regressor.model_key_ == first[0] and regressor.version_ == first[1] + 1
    np.testing.assert_allclose(regressor.predict(xr.to_numpy()), LinearRegression().fit(xr, yr).predict(xr), rtol=1e-9)


def test_remote_estimator_partial_fit_on_sgd(stack: Stack) -> None:
    x, y = classification_data(seed=16)
    chunks = np.array_split(np.arange(len(x)), 3)
    remote = RemoteEstimator("sgd", stack.url, random_state=0)
    # The pipeline a fit makes (sgd standardizes its numbers, the scaler fitted at the first fit), updated as
    # the server updates it: SGD turns even the last bit of a differently summed mean into a visible difference.
    local = preprocess.model_for(BUILTIN["sgd"], infer(x), {"random_state": 0})
    for i, rows in enumerate(chunks):
        remote.partial_fit(x.iloc[rows], y.iloc[rows], classes=[0, 1])
        if i == 0:
            local.fit(x.iloc[rows], y.iloc[rows])
        else:
            preprocess.partial_fit(local, x.iloc[rows], y.iloc[rows].to_numpy())
    assert remote.version_ == 3
    np.testing.assert_array_equal(remote.predict(x), local.predict(x))
    np.testing.assert_allclose(remote.decision_function(x), local.decision_function(x), rtol=1e-9, atol=1e-12)
