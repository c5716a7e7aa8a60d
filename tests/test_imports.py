"""Importing trained models: skops files into scikit-learn families, ONNX graphs into `onnx`; refusals store nothing."""

from __future__ import annotations

import http.client
import io
import pickle
from urllib.parse import urlsplit

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import requests
import skops.io
from palmerpenguins import load_penguins
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from client import ModelClient
from contracts.errors import Conflict
from contracts.frames import PARQUET, ParquetCodec

from .stack import Stack

pytestmark = pytest.mark.integration

NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins().dropna().reset_index(drop=True)


def seed_predict(stack: Stack, family: str, key: str, x: pd.DataFrame, **extra: object) -> pd.DataFrame:
    """The seed's JSON predict (`POST /{family}`), as the seed's client sends it."""
    body = {"model_key": key, "x": x.to_json(orient="columns"), "orient": "columns", **extra}
    r = requests.post(stack.family_url(family), json=body, timeout=30)
    assert r.status_code == 200, r.text
    return pd.read_json(io.StringIO(r.json()["data"]), orient="columns")


def models_named(stack: Stack, name: str) -> int:
    r = requests.get(f"{stack.url}/models", params={"name": name}, timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_skops_pipeline_imports_and_predicts_as_in_process(stack: Stack, penguins: pd.DataFrame) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    client = ModelClient(stack.url)
    answer = client.import_model("logreg", skops.io.dumps(model), name="imported-penguins")
    assert answer["status"] == "done" and answer["version"] == 1
    key = answer["model_key"]

    probe = x.iloc[::17]
    expected = model.predict(probe)
    assert client.predict("logreg", key, probe)["predict"].tolist() == expected.tolist()
    proba = client.predict("logreg", key, probe, method="predict_proba")
    assert list(proba.columns) == list(model.classes_)
    np.testing.assert_array_equal(proba.to_numpy(), model.predict_proba(probe))
    assert seed_predict(stack, "logreg", key, probe).iloc[:, 0].tolist() == expected.tolist()

    version = client.versions(key)["versions"][0]
    assert version["kind"] == "import" and version["status"] == "done"
    assert version["metadata"]["features"] == NUMBERS
    assert version["metadata"]["imported"]["format"] == "skops"
    assert client.history(key)[0]["action"] == "import"

    # The same name again is another model's name: a conflict, nothing stored.
    with pytest.raises(Conflict):
        client.import_model("logreg", skops.io.dumps(model), name="imported-penguins")
    assert len(client.versions(key)["versions"]) == 1


def test_skops_with_text_columns_and_a_new_version_of_a_fitted_model(stack: Stack, penguins: pd.DataFrame) -> None:
    x, y = penguins[["island", "sex", *NUMBERS]], penguins["species"]
    client = ModelClient(stack.url)
    fitted = client.fit("forest", x, y, name="forest-then-import", modkwargs={"n_estimators": 10, "random_state": 0})
    key = fitted["model_key"]

    encode = ColumnTransformer([("text", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"])], remainder="passthrough")
    mine = make_pipeline(encode, RandomForestClassifier(n_estimators=25, random_state=1)).fit(x, y)
    assert skops.io.get_untrusted_types(data=skops.io.dumps(mine))  # types skops does not trust by default
    answer = client.import_version(key, skops.io.dumps(mine), types={"island": "string", "sex": "string"})
    assert answer == {"model_key": key, "status": "done", "version": 2}

    probe = x.iloc[::11]
    assert client.predict("forest", key, probe)["predict"].tolist() == mine.predict(probe).tolist()
    np.testing.assert_array_equal(client.predict("forest", key, probe, method="predict_proba").to_numpy(), mine.predict_proba(probe))
    # Version 1 is still the fitted one.
    assert client.predict("forest", key, probe, version=1).shape == (len(probe), 1)
    schema = client.versions(key)["versions"][0]["metadata"]["schema"]
    assert [c["kind"] for c in schema[:2]] == ["string", "string"]


def test_onnx_graph_imports_and_predicts_as_onnxruntime(stack: Stack, penguins: pd.DataFrame) -> None:
    x, y = penguins[NUMBERS].to_numpy(dtype=np.float32), penguins["species"].to_numpy()
    model = RandomForestClassifier(n_estimators=15, random_state=0).fit(x, y)
    graph = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}).SerializeToString()
    client = ModelClient(stack.url)
    answer = client.import_model("onnx", graph, name="onnx-penguins", features=NUMBERS)
    key = answer["model_key"]

    probe = pd.DataFrame(x[::13], columns=NUMBERS)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {session.get_inputs()[0].name: probe.to_numpy(dtype=np.float32)})
    assert client.predict("onnx", key, probe)["predict"].tolist() == labels.tolist()
    proba = client.predict("onnx", key, probe, method="predict_proba")
    assert list(proba.columns) == list(model.classes_)  # the class labels the graph carries
    np.testing.assert_array_equal(proba.to_numpy(), probabilities)
    assert seed_predict(stack, "onnx", key, probe).iloc[:, 0].tolist() == labels.tolist()

    # A regressor graph taking doubles, columns named by position.
    xr = penguins[NUMBERS[:3]].to_numpy()
    reg = LinearRegression().fit(xr, penguins["body_mass_g"].to_numpy())
    reg_graph = to_onnx(reg, xr[:1]).SerializeToString()
    key = client.import_model("onnx", reg_graph)["model_key"]
    frame = pd.DataFrame(xr[:20]).set_axis(["0", "1", "2"], axis=1)
    session = ort.InferenceSession(reg_graph, providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {session.get_inputs()[0].name: xr[:20]})
    np.testing.assert_array_equal(client.predict("onnx", key, frame).iloc[:, 0].to_numpy(), expected[:, 0])
    # The same file again is the same model.
    assert client.import_model("onnx", reg_graph)["model_key"] == key


def post_file(stack: Stack, path: str, blob: bytes, **params: str) -> requests.Response:
    return requests.post(stack.url + path, data=blob, params=params, headers={"Content-Type": "application/octet-stream"}, timeout=60)


@pytest.mark.parametrize("case", ["untrusted", "pickle", "joblib", "truncated-skops", "truncated-onnx", "wrong-family", "onnx-into-logreg"])
def test_refused_files_get_a_clear_4xx_and_store_nothing(stack: Stack, penguins: pd.DataFrame, case: str) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    x = (x - x.mean()) / x.std()
    plain = LogisticRegression(max_iter=500).fit(x, y)
    family, status, words = "logreg", 422, ""
    if case == "untrusted":
        blob = skops.io.dumps(make_pipeline(FunctionTransformer(np.tanh), LogisticRegression(max_iter=500)).fit(x, y))
        words = "numpy.tanh"
    elif case == "pickle":
        blob, status, words = pickle.dumps(plain), 415, "pickle"
    elif case == "joblib":
        buf = io.BytesIO()
        joblib.dump(plain, buf, compress=3)
        blob, status, words = buf.getvalue(), 415, "joblib"
    elif case == "truncated-skops":
        whole = skops.io.dumps(plain)
        blob, words = whole[: len(whole) // 2], "truncated"
    elif case == "truncated-onnx":
        whole = to_onnx(plain, x.to_numpy(dtype=np.float32)[:1]).SerializeToString()
        blob, family, words = whole[: len(whole) // 2], "onnx", "not a valid ONNX model"
    elif case == "wrong-family":
        blob, family, words = skops.io.dumps(plain), "forest", "LogisticRegression"
    else:
        blob, words = to_onnx(plain, x.to_numpy(dtype=np.float32)[:1]).SerializeToString(), "onnx family"
    name = f"refused-{case}"
    r = post_file(stack, f"/families/{family}/models/import", blob, name=name)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"], error
    assert "file" in (error.get("fields") or {}), error
    assert models_named(stack, name) == 0


def test_an_oversize_file_is_refused_before_it_is_read(stack: Stack) -> None:
    url = urlsplit(stack.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("POST", "/families/logreg/models/import?name=too-big")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(2**40))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413, response.read()
    assert b"limit" in response.read()
    conn.close()
    assert models_named(stack, "too-big") == 0


def test_import_over_parquet_query_and_bad_params(stack: Stack, penguins: pd.DataFrame) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    x = (x - x.mean()) / x.std()
    model = LogisticRegression(max_iter=500).fit(x.to_numpy(), y)  # no feature names in the file
    blob = skops.io.dumps(model)
    r = post_file(stack, "/families/logreg/models/import", blob, features='["a", "b"]')
    assert r.status_code == 422 and "4" in r.json()["error"]["message"], r.text
    r = post_file(stack, "/families/logreg/models/import", blob, types='{"a": "text"}')
    assert r.status_code == 422 and "types" in r.json()["error"]["fields"], r.text
    r = post_file(stack, "/families/kmeans/models/import", b"")
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"], r.text
    r = post_file(stack, "/families/logreg/models/import", blob, features=str(NUMBERS).replace("'", '"'))
    assert r.status_code == 201, r.text
    key = r.json()["model_key"]
    r = requests.post(
        stack.model_url(key, "predict"), data=ParquetCodec.encode(x.iloc[:9]), headers={"Content-Type": PARQUET, "Accept": PARQUET}, timeout=30
    )
    assert r.status_code == 200, r.text
    assert ParquetCodec.decode(r.content).iloc[:, 0].tolist() == model.predict(x.iloc[:9].to_numpy()).tolist()
