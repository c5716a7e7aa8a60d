"""The Open Inference Protocol (KServe V2) through the real stack, asked by Triton's own client and raw.

Every answer is checked against what ml-server's native predict answers for the same rows of the same
model: the V2 routes are another wire to the same road, not another model.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from palmerpenguins import load_penguins
from tritonclient.utils import InferenceServerException

from client import AsyncModelClient, ModelClient, NotFound
from gateway.auth import new_token

from .stack import Stack, wait_for

pytestmark = pytest.mark.integration

FEATURES = ["a", "b", "c", "d"]
_MODELS: dict[tuple[str, str], dict[str, Any]] = {}


def numbers(rows: int, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(rows, len(FEATURES))), columns=FEATURES)


def numeric_model(stack: Stack) -> dict[str, Any]:
    """A logreg on four numbers whose classes are text (`no`, `yes`), fitted once per stack."""
    key = (stack.namespace, "numeric")
    if key not in _MODELS:
        x = numbers(200)
        y = pd.Series(np.where(x["a"] + x["b"] > 0, "yes", "no"), name="answer")
        name = f"v2-numeric-{stack.namespace}"
        state = ModelClient(stack.url).fit("logreg", x, y, name=name)
        _MODELS[key] = {"name": name, "key": state["model_key"], "version": state["version"]}
    return _MODELS[key]


def triton_client(stack: Stack) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=stack.url.removeprefix("http://"))


def native(stack: Stack, key: str, x: pd.DataFrame, method: str = "predict", version: int | None = None) -> pd.DataFrame:
    return ModelClient(stack.url).predict("logreg", key, x, method=method, version=version)


def test_server_is_live_ready_and_describes_itself(stack: Stack) -> None:
    client = triton_client(stack)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "ml-server" and {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])
    assert requests.get(f"{stack.url}/v2/health/live", timeout=10).json() == {"live": True}


def test_model_metadata_from_the_recorded_schema_and_readiness(stack: Stack) -> None:
    model = numeric_model(stack)
    client = triton_client(stack)
    for name in (model["name"], model["key"]):
        meta = client.get_model_metadata(name)
        assert meta["name"] == name and str(model["version"]) in meta["versions"]
        assert meta["inputs"] == [{"name": "x", "datatype": "FP64", "shape": [-1, 4], "parameters": {"columns": FEATURES}}]
        outputs = {o["name"]: o for o in meta["outputs"]}
        assert outputs["predict"]["datatype"] == "BYTES" and outputs["predict"]["shape"] == [-1]
        assert outputs["predict_proba"] == {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2], "parameters": {"columns": ["no", "yes"]}}
        assert client.is_model_ready(name) and client.is_model_ready(name, str(model["version"]))
    assert client.get_model_metadata(model["name"], str(model["version"]))["parameters"]["model_key"] == model["key"]
    assert not client.is_model_ready(model["name"], "99")
    r = requests.get(f"{stack.url}/v2/models/{model['name']}/versions/99/ready", timeout=10)
    assert r.status_code == 404 and "no version 99" in r.json()["error"]
    r = requests.get(f"{stack.url}/v2/models/{model['key']}/ready", timeout=10)
    assert r.status_code == 200 and r.json() == {"name": model["key"], "ready": True}


@pytest.mark.parametrize("binary_in, binary_out", [(True, True), (False, False), (True, False), (False, True)])
def test_infer_with_tritonclient_matches_the_native_predict(stack: Stack, binary_in: bool, binary_out: bool) -> None:
    model = numeric_model(stack)
    x = numbers(7, seed=5)
    tensor = triton.InferInput("x", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x.to_numpy(), binary_data=binary_in)
    outputs = [triton.InferRequestedOutput(m, binary_data=binary_out) for m in ("predict", "predict_proba")]
    result = triton_client(stack).infer(model["name"], [tensor], outputs=outputs, request_id="req-1")
    response = result.get_response()
    assert response["id"] == "req-1" and response["model_version"] == str(model["version"])
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict")]
    assert labels == list(native(stack, model["key"], x)["answer"])
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (7, 2)
    np.testing.assert_allclose(proba, native(stack, model["key"], x, "predict_proba")[["no", "yes"]].to_numpy(), rtol=1e-9)
    assert result.get_output("predict_proba")["parameters"]["columns"] == ["no", "yes"]


def test_infer_without_outputs_answers_predict_in_binary_as_tritonclient_asks(stack: Stack) -> None:
    model = numeric_model(stack)
    x = numbers(3, seed=6)
    tensor = triton.InferInput("anything", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x.to_numpy().astype(np.float32))
    result = triton_client(stack).infer(model["key"], [tensor])  # binary_data_output: true
    assert result.get_output("predict")["parameters"]["binary_data_size"] > 0
    expected = native(stack, model["key"], x.astype(np.float32).astype(np.float64))["answer"]
    assert [v.decode() for v in result.as_numpy("predict")] == list(expected)


def penguin_rows() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    df = load_penguins()
    x, y = df.drop(columns=["species"]), df["species"]
    rows = x.iloc[[0, 50, 150, 220, 300]].copy()
    rows.iloc[1, rows.columns.get_loc("island")] = "Atlantis"  # a category never seen
    rows.iloc[2, rows.columns.get_loc("bill_depth_mm")] = np.nan  # a missing number
    rows.iloc[3, rows.columns.get_loc("sex")] = None  # a missing text
    return x, y, rows


def test_a_pd_request_with_text_columns_is_read_against_the_schema(stack: Stack) -> None:
    x, y, rows = penguin_rows()
    name = f"v2-penguins-{stack.namespace}"
    key = ModelClient(stack.url).fit("logreg", x, y, name=name)["model_key"]
    meta = requests.get(f"{stack.url}/v2/models/{name}", timeout=10).json()
    described = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert described == {
        "island": "BYTES", "sex": "BYTES", "year": "INT64",
        "bill_length_mm": "FP64", "bill_depth_mm": "FP64", "flipper_length_mm": "FP64", "body_mass_g": "FP64",
    }
    assert meta["parameters"]["content_type"] == "pd"
    expected = list(native(stack, key, rows)["species"])

    # As MLServer's PandasCodec sends a DataFrame: one input per column, text as BYTES, JSON.
    inputs = []
    for column in rows.columns:
        values = rows[column]
        if described[column] == "BYTES":
            data = [None if pd.isna(v) else str(v) for v in values]
        else:
            data = [None if pd.isna(v) else v for v in values.tolist()]
        inputs.append({"name": column, "shape": [len(rows)], "datatype": described[column], "data": data})
    r = requests.post(f"{stack.url}/v2/models/{name}/infer", json={"parameters": {"content_type": "pd"}, "inputs": inputs}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == expected

    # The same rows through tritonclient, every column a binary tensor (BYTES with length prefixes).
    tensors = []
    for column in rows.columns:
        datatype = described[column]
        values = rows[column]
        array = (
            np.array([b"" if pd.isna(v) else str(v).encode() for v in values], dtype=object)
            if datatype == "BYTES"
            else values.to_numpy(dtype=np.float64 if datatype == "FP64" else np.int64)
        )
        tensor = triton.InferInput(column, [len(rows)], datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = triton_client(stack).infer(name, tensors, parameters={"content_type": "pd"})
    assert [v.decode() for v in result.as_numpy("predict")] == expected

    # The project's own client in V2 mode: the frame as it is (a category column, missing values), labels kept.
    client = ModelClient(stack.url)
    labelled = rows.assign(island=rows["island"].astype("category")).set_axis(list("vwxyz"))
    got = client.infer(name, labelled)
    assert list(got.index) == list("vwxyz") and list(got["species"]) == expected
    proba = client.infer(key, labelled, version=1, method="predict_proba")
    np.testing.assert_allclose(proba.to_numpy(dtype=float), native(stack, key, rows, "predict_proba").to_numpy(), rtol=1e-9)
    assert list(proba.columns) == sorted(y.unique())
    with pytest.raises(NotFound, match="no model named"):
        client.infer(f"{name}-nobody", rows)


def test_an_alias_is_a_version(stack: Stack) -> None:
    client = ModelClient(stack.url)
    name = f"v2-alias-{stack.namespace}"
    x = numbers(150, seed=1)
    first = client.fit("logreg", x, pd.Series((x["a"] > 0).astype(int), name="t"), name=name)
    second = client.fit("logreg", x, pd.Series((x["b"] > 0).astype(int), name="t"), name=name, retrain=True)
    key = first["model_key"]
    client.set_alias(key, "champion", first["version"])
    probe = numbers(20, seed=9)
    body = {"inputs": [{"name": "x", "shape": list(probe.shape), "datatype": "FP64", "data": probe.to_numpy().tolist()}]}
    for path, version in ((f"versions/champion/", first["version"]), ("", second["version"]), (f"versions/{first['version']}/", first["version"])):
        r = requests.post(f"{stack.url}/v2/models/{name}/{path}infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == str(version)
        assert r.json()["outputs"][0]["data"] == list(native(stack, key, probe, version=version)["t"])
    assert triton_client(stack).is_model_ready(name, "champion")
    assert triton_client(stack).get_model_metadata(name, "champion")["parameters"]["version"] == str(first["version"])
    r = requests.post(f"{stack.url}/v2/models/{name}/versions/nobody/infer", json=body, timeout=30)
    assert r.status_code == 404 and "no alias 'nobody'" in r.json()["error"]

    # The model now serves its champion: paths without a version follow (the gateway forgets what it resolved).
    client.edit_model(key, serving="champion")

    def default_version() -> str:
        return str(requests.post(f"{stack.url}/v2/models/{name}/infer", json=body, timeout=30).json()["model_version"])

    wait_for(lambda: default_version() == str(first["version"]), what="the serving alias followed")

    async def ask() -> pd.DataFrame:
        async with AsyncModelClient(stack.url) as remote:
            return await remote.infer(name, probe, version="champion")

    assert list(asyncio.run(ask())["t"]) == list(native(stack, key, probe, version=first["version"])["t"])


def test_errors_are_the_protocols_and_name_what_is_wrong(stack: Stack) -> None:
    model = numeric_model(stack)
    url = f"{stack.url}/v2/models/{model['name']}/infer"

    def post(body: Any, **kw: Any) -> requests.Response:
        return requests.post(url, data=body if isinstance(body, bytes) else json.dumps(body).encode(), timeout=30, **kw)

    def tensor(shape: list[int], data: Any, datatype: str = "FP64", name: str = "x") -> dict[str, Any]:
        return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}

    cases = [
        (b"{not json", 400, "not valid JSON"),
        ({"inputs": []}, 400, "inputs"),
        (tensor([1, 3], [1, 2, 3]), 400, "the model takes 4 columns"),
        (tensor([1, 4], [1, 2, 3]), 400, "3 values for shape of 4 elements"),
        (tensor([1, 4], ["a", "b", "c", "d"]), 400, "are not FP64 values"),
        (tensor([1, 4], [1, 2, 3, 4], "FP65"), 400, "datatype 'FP65'"),
        ({**tensor([1, 4], [1, 2, 3, 4]), "outputs": [{"name": "explain"}]}, 400, "output 'explain'"),
        ({"parameters": {"content_type": "pd"}, "inputs": [{"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}]}, 400, "['zz'] are not columns"),
    ]
    for body, status, words in cases:
        r = post(body)
        assert r.status_code == status and set(r.json()) == {"error"} and words in r.json()["error"], (body, r.status_code, r.text)
    # Binary data shorter than its binary_data_size says.
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "parameters": {"binary_data_size": 32}}]}).encode()
    r = post(header + b"\0" * 16, headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400 and "binary_data_size 32" in r.json()["error"], r.text
    r = requests.post(f"{stack.url}/v2/models/no-such-model/infer", json=tensor([1, 4], [1, 2, 3, 4]), timeout=30)
    assert r.status_code == 404 and "no model named 'no-such-model'" in r.json()["error"]
    with pytest.raises(InferenceServerException, match="the model takes 4 columns"):
        t = triton.InferInput("x", [2, 3], "FP64")
        t.set_data_from_numpy(np.zeros((2, 3)))
        triton_client(stack).infer(model["name"], [t])


def test_the_protocols_own_examples_sent_raw(stack: Stack) -> None:
    """The specification's request shapes (flat and nested `data`, an `id`, a binary body as Triton's
    extension documents it), for a model of two features."""
    name = f"v2-spec-{stack.namespace}"
    x = pd.DataFrame({"input0": [1, 2, 3, 4, 5, 6] * 10, "other": [4, 3, 2, 1, 0, 9] * 10})
    key = ModelClient(stack.url).fit("linreg", x, pd.Series(x["input0"] * 2.0 + x["other"], name="y"), name=name)["model_key"]
    expected = list(ModelClient(stack.url).predict("linreg", key, pd.DataFrame({"input0": [1.0, 3.0], "other": [2.0, 4.0]}))["y"])
    url = f"{stack.url}/v2/models/{name}/infer"
    for data in ([1, 2, 3, 4], [[1, 2], [3, 4]]):
        request = {"id": "42", "inputs": [{"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": data}], "outputs": [{"name": "predict"}]}
        r = requests.post(url, json=request, timeout=30)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["id"] == "42" and answer["model_name"] == name
        (output,) = answer["outputs"]
        assert output["name"] == "predict" and output["shape"] == [2] and output["datatype"] == "FP64"
        np.testing.assert_allclose(output["data"], expected)
    # Binary: `Inference-Header-Content-Length`, 16 bytes of UINT32 after the JSON, the output asked for in binary.
    header = json.dumps(
        {"model_name": name, "inputs": [{"name": "input0", "shape": [2, 2], "datatype": "UINT32", "parameters": {"binary_data_size": 16}}],
         "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}
    ).encode()
    body = header + struct.pack("<4I", 1, 2, 3, 4)
    r = requests.post(url, data=body, headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}, timeout=30)
    assert r.status_code == 200, r.text
    n = int(r.headers["Inference-Header-Content-Length"])
    answer = json.loads(r.content[:n])
    assert answer["outputs"][0]["parameters"]["binary_data_size"] == 16
    np.testing.assert_allclose(np.frombuffer(r.content[n:], dtype="<f8"), expected)


def test_the_repository_lists_loads_and_unloads(stack: Stack) -> None:
    model = numeric_model(stack)
    client = triton_client(stack)
    index = client.get_model_repository_index()
    mine = [e for e in index if e["name"] == model["name"]]
    assert mine == [{"name": model["name"], "version": str(model["version"]), "state": "READY", "reason": ""}]
    assert all(e["state"] == "READY" for e in requests.post(f"{stack.url}/v2/repository/index", json={"ready": True}, timeout=10).json())
    client.unload_model(model["name"])
    wait_for(lambda: f"model={model['key']} dropped" in stack.logs() and "(unload)" in stack.logs(), what="the consumer's unload")
    client.load_model(model["name"])
    wait_for(lambda: f"model={model['key']} version {model['version']} loaded into the cache" in stack.logs(), what="the consumer's load")
    x = numbers(2, seed=3)
    tensor = triton.InferInput("x", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x.to_numpy())
    assert len(client.infer(model["name"], [tensor]).as_numpy("predict")) == 2
    with pytest.raises(InferenceServerException, match="can't be given here"):
        client.load_model(model["name"], config="{}")
    r = requests.post(f"{stack.url}/v2/repository/models/no-such-model/load", timeout=10)
    assert r.status_code == 404 and set(r.json()) == {"error"}


def test_scopes_read_for_asking_write_for_load_and_unload(fresh_stack: Stack) -> None:
    write, write_entry = new_token("write", "alice")
    read, read_entry = new_token("read")
    fresh_stack.start_consumer("logreg")
    fresh_stack.start_gateway(ML_SERVER_TOKENS=f"{write_entry},{read_entry}")
    name = f"v2-scopes-{fresh_stack.namespace}"
    x = numbers(60)
    ModelClient(fresh_stack.url, token=write).fit("logreg", x, pd.Series((x["a"] > 0).astype(int), name="t"), name=name)
    base = f"{fresh_stack.url}/v2"
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}

    for path in ("/health/live", "/health/ready"):  # probes: open
        assert requests.get(base + path, timeout=10).status_code == 200
    asks = (("GET", "", None), ("GET", f"/models/{name}", None), ("GET", f"/models/{name}/ready", None),
            ("POST", f"/models/{name}/infer", body), ("POST", "/repository/index", None))
    for method, path, payload in asks:
        r = requests.request(method, base + path, json=payload, timeout=30)
        assert r.status_code == 401 and set(r.json()) == {"error"} and r.headers["WWW-Authenticate"].startswith("Bearer"), (path, r.text)
        r = requests.request(method, base + path, json=payload, headers={"Authorization": f"Bearer {read}"}, timeout=30)
        assert r.status_code == 200, (path, r.text)
    for change in ("load", "unload"):
        url = f"{base}/repository/models/{name}/{change}"
        r = requests.post(url, headers={"Authorization": f"Bearer {read}"}, timeout=10)
        assert r.status_code == 403 and "write" in r.json()["error"], r.text
        assert requests.post(url, headers={"Authorization": f"Bearer {write}"}, timeout=10).status_code == 200


def test_the_docs_examples_run_as_written(stack: Stack) -> None:
    """docs/v2.md's examples, against this stack: the first fits the model the others ask (`v2-churn`)."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "v2.md").read_text()
    host = stack.url.removeprefix("http://")
    blocks = re.findall(r"```(bash|python)\n(.*?)```", text, re.S)
    assert [kind for kind, _ in blocks] == ["python", "bash", "python", "python"]
    for kind, code in blocks:
        code = code.replace("localhost:8080", host)
        if kind == "bash":
            out = subprocess.run(["bash", "-ec", code], capture_output=True, text=True, timeout=60, check=True).stdout
            assert '"error"' not in out and out.count('"model_name"') == 2 and '"state":"READY"' in out, out
        else:
            namespace: dict[str, Any] = {}
            exec(compile(code, "docs/v2.md", "exec"), namespace)  # noqa: S102 - the documentation's own example
            if "state" in namespace:
                assert namespace["state"]["status"] == "done"
            elif "result" in namespace:
                assert len(namespace["labels"]) == 1000 and namespace["classes"] == ["leaves", "stays"]
            else:
                assert list(namespace["proba"].columns) == ["leaves", "stays"] and len(namespace["answer"]) == 5
