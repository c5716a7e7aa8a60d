"""Each verb in JSON (the seed's format) and in Parquet; predictions equal the same model fitted in-process."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from client import GenericModelInterface
from contracts.frames import PARQUET, ParquetCodec, encode_training

from .stack import Stack, wait_for

pytestmark = pytest.mark.integration


def regression_data(n: int = 500, seed: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    y = pd.Series(x @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.normal(scale=0.1, size=n), name="target")
    return x, y


def classification_data(n: int = 600, seed: int = 2) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"f{i}" for i in range(5)])
    y = pd.Series((x["f0"] + x["f1"] - x["f2"] > 0).astype(int), name="label")
    return x, y


def test_json_fit_status_predict_delete(stack: Stack) -> None:
    x, y = regression_data()
    url = stack.family_url("linreg")
    r = requests.put(
        url,
        json={"x": x.to_json(orient="split"), "y": y.to_frame().to_json(orient="split"), "orient": "split", "name": "json-linreg"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    accepted = r.json()
    assert accepted == {"status": "Queued", "model_key": accepted["model_key"]}
    key = accepted["model_key"]

    state = stack.wait_finished("linreg", key)
    assert state["status"] == "done", state
    assert state["rows"] == len(x) and state["kind"] == "fit" and state["family"] == "linreg" and state["version"] == 1

    # The seed's client sends model_key in a JSON body with GET too.
    assert requests.get(url, json={"model_key": key}, timeout=10).json() == {"status": "Done"}

    expected = LinearRegression().fit(x, y).predict(x.head(50))
    for orient in ("columns", "split", "records", "index"):
        r = requests.post(url, json={"model_key": key, "x": x.head(50).to_json(orient=orient), "orient": orient}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["orient"] == orient
        got = pd.read_json(io.StringIO(body["data"]), orient=orient)
        assert list(got.columns) == ["target"]
        np.testing.assert_allclose(got["target"].to_numpy(), expected, rtol=1e-9, atol=1e-9)

    # x as parsed JSON rather than JSON text, and as_array.
    r = requests.post(url, json={"model_key": key, "x": x.head(3).to_dict(orient="list"), "orient": "columns", "as_array": True}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(json.loads(r.json()["data"])), expected[:3], rtol=1e-9)

    r = requests.delete(url, params={"model_key": key}, timeout=10)
    assert r.status_code == 200 and r.json() == {}
    assert requests.get(url, params={"model_key": key}, timeout=10).status_code == 404
    assert requests.post(url, json={"model_key": key, "x": x.head(1).to_json()}, timeout=10).status_code == 404
    # The consumer that cached the model dropped it when it heard of the delete.
    wait_for(lambda: f"model={key} dropped 1 cached version(s) (deleted)" in stack.logs(), 10, what="cache drop")


def test_parquet_fit_and_predict(stack: Stack) -> None:
    x, y = regression_data(seed=7)
    url = stack.family_url("linreg")
    r = requests.put(
        url,
        params={"name": "parquet-linreg", "modkwargs": '{"fit_intercept": false}'},
        data=encode_training(x, y.to_frame()),
        headers={"Content-Type": PARQUET},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["status"] == "Queued", r.text
    key = r.json()["model_key"]
    assert stack.wait_finished("linreg", key)["status"] == "done"

    expected = LinearRegression(fit_intercept=False).fit(x, y).predict(x)
    r = requests.post(
        url,
        params={"model_key": key},
        data=ParquetCodec.encode(x),
        headers={"Content-Type": PARQUET, "Accept": PARQUET},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith(PARQUET)
    got = pq.read_table(io.BytesIO(r.content)).to_pandas()
    assert list(got.columns) == ["target"]
    np.testing.assert_allclose(got["target"].to_numpy(), expected, rtol=1e-9, atol=1e-9)

    # Parquet in, JSON out.
    r = requests.post(url, params={"model_key": key}, data=ParquetCodec.encode(x.head(2)), headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 200 and r.json()["orient"] == "columns"

    # The same on ml-server's own route, and a frame with an index of its own keeps it (in Parquet and in JSON).
    labelled = x.head(5).set_axis(pd.Index([f"row-{i}" for i in range(5)], name="id"))
    r = requests.post(
        stack.model_url(key, "predict"), data=ParquetCodec.encode(labelled), headers={"Content-Type": PARQUET, "Accept": PARQUET}, timeout=30
    )
    assert r.status_code == 200, r.text
    got = ParquetCodec.decode(r.content)
    assert got.index.tolist() == labelled.index.tolist() and got.index.name == "id"
    np.testing.assert_allclose(got["target"].to_numpy(), expected[:5], rtol=1e-9, atol=1e-9)
    r = requests.post(stack.model_url(key, "predict"), json={"x": x.head(3).set_axis([7, 8, 9]).to_json(orient="split"), "orient": "split"}, timeout=30)
    assert json.loads(r.json()["data"])["index"] == [7, 8, 9], r.text


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the in-process reference fit
def test_client_classifiers_match_in_process(stack: Stack) -> None:
    x, y = classification_data()
    logreg = GenericModelInterface(stack.url, "logreg", C=0.3)
    logreg.fit(x, y, name="client-logreg")
    reference = LogisticRegression(C=0.3).fit(x, y)
    pred = logreg.predict(x)
    assert list(pred.columns) == ["label"]
    assert pred.index.equals(x.index)
    np.testing.assert_array_equal(pred["label"].to_numpy(), reference.predict(x))
    proba = logreg.predict(x.head(20), method="predict_proba")
    assert list(proba.columns) == ["0", "1"]
    np.testing.assert_allclose(proba.to_numpy(), reference.predict_proba(x.head(20)), rtol=1e-7)
    np.testing.assert_array_equal(logreg.predict(x.head(5), as_array=True), reference.predict(x.head(5)))

    onnx = GenericModelInterface(stack.url, "logreg", C=0.3).fit(x, y, name="client-logreg-onnx", backend="onnx")
    np.testing.assert_array_equal(onnx.predict(x, as_array=True), reference.predict(x))
    np.testing.assert_allclose(
        onnx.predict(x.head(20), method="predict_proba").to_numpy(), reference.predict_proba(x.head(20)), rtol=1e-4, atol=1e-5
    )
    listing = requests.get(f"{stack.url}/models/{onnx.model_key}/versions", timeout=10).json()
    assert listing["versions"][0]["backend"] == "onnx"

    nn = GenericModelInterface(stack.url, "nn", hidden_layer_sizes=[8], max_iter=300, random_state=0)
    nn.fit(x, y, name="client-nn")
    mlp = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=[8], max_iter=300, random_state=0)).fit(x, y)
    np.testing.assert_array_equal(nn.predict(x, as_array=True), mlp.predict(x))


def test_unsupervised_family_fits_on_x_alone(stack: Stack) -> None:
    x, _ = classification_data(seed=3)
    km = GenericModelInterface(stack.url, "kmeans", n_clusters=3, random_state=0)
    km.fit(x, name="client-kmeans")
    reference = make_pipeline(StandardScaler(), KMeans(n_clusters=3, random_state=0, n_init="auto")).fit(x)
    np.testing.assert_array_equal(km.predict(x, as_array=True), reference.predict(x))
    distances = km.predict(x.head(4), method="transform")
    assert distances.shape == (4, 3)
    np.testing.assert_allclose(distances.to_numpy(), reference.transform(x.head(4)), rtol=1e-9)
