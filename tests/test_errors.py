"""Every error status of the REST API, provoked with real requests against real processes.

Errors are JSON `{"error": {"code", "message", "fields"?}}`; each test checks
the status, the code, and that the message or `fields` names what was wrong.
"""

from __future__ import annotations

import io
import json
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from client import GenericModelInterface
from contracts.errors import DeadlineExceeded, InvalidInput, NotFound, NotTrained, TrainingFailed
from contracts.frames import PARQUET, ParquetCodec, encode_training

from .proxy import TcpProxy
from .stack import Stack, wait_for

pytestmark = pytest.mark.integration

BROKER = ("127.0.0.1", 5672)
LIMIT = 4096  # ML_SERVER_MAX_BODY of the stack that checks 413


# ---- data and helpers ---------------------------------------------------------


def classification(n: int = 40, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 3)).round(3), columns=["a", "b", "c"])
    y = pd.DataFrame({"label": (x["a"] + x["b"] > 0).astype(int)})
    return x, y


def tiny(n: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Small enough that a fit or predict body (JSON or Parquet) stays below a 4096-byte limit."""
    x = pd.DataFrame({"a": list(range(n)), "b": [i % 3 for i in range(n)]})
    y = pd.DataFrame({"t": [int(i >= n // 2) for i in range(n)]})
    return x, y


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def fit_body(x: pd.DataFrame, y: pd.DataFrame | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"x": x.to_json(orient="split"), "orient": "split", **extra}
    if y is not None:
        body["y"] = y.to_json(orient="split")
    return body


def predict_body(model_key: str, x: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    return {"model_key": model_key, "x": x.to_json(orient="split"), "orient": "split", **extra}


def error_of(r: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The error object of a response that must be `status` with `code`."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:2000]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert "Traceback" not in err["message"], err
    return err


def names_field(err: dict[str, Any], field: str) -> None:
    """`fields` has the offending field as a key, and the message names it too."""
    assert err.get("fields"), err
    assert field in err["fields"], err
    assert field in err["message"], err


def fit_and_wait(stack: Stack, family: str, x: pd.DataFrame, y: pd.DataFrame | None, **extra: Any) -> dict[str, Any]:
    r = requests.post(stack.fit_url(family), json=fit_body(x, y, **extra), timeout=30)
    assert r.status_code == 202, r.text
    return stack.wait_finished(family, r.json()["model_key"])


@pytest.fixture(scope="module")
def logreg_key(stack: Stack) -> str:
    """A trained logreg model (columns a, b, c) shared by this module's tests."""
    x, y = classification()
    state = fit_and_wait(stack, "logreg", x, y, name=unique("errors-logreg"))
    assert state["status"] == "done", state
    return state["model_key"]


# ---- 422: the body itself ----------------------------------------------------------


@pytest.mark.parametrize("verb", ["PUT", "POST", "PATCH"])
def test_malformed_json_and_non_object_bodies_are_422(stack: Stack, verb: str) -> None:
    url = stack.family_url("sgd")
    headers = {"Content-Type": "application/json"}

    err = error_of(requests.request(verb, url, data=b'{"x": [1, 2', headers=headers, timeout=10), 422, "invalid_input")
    assert "JSON" in err["message"], err

    array = json.dumps([{"x": "{}", "model_key": "k"}]).encode()
    err = error_of(requests.request(verb, url, data=array, headers=headers, timeout=10), 422, "invalid_input")
    assert "object" in err["message"], err


# ---- 422: fields ------------------------------------------------------------------

_X, _Y = classification(8)

FIELD_CASES = [
    # (id, verb, body, offending field)
    ("fit-unknown-orient", "PUT", {**fit_body(_X, _Y), "orient": "sideways"}, "orient"),
    ("predict-unknown-orient", "POST", {**predict_body("some-model", _X), "orient": "diagonal"}, "orient"),
    ("fit-missing-x", "PUT", {"y": _Y.to_json(orient="split"), "orient": "split"}, "x"),
    ("predict-missing-x", "POST", {"model_key": "some-model", "orient": "split"}, "x"),
    ("fit-unknown-field", "PUT", {**fit_body(_X, _Y), "learning_rate": 0.1}, "learning_rate"),
    ("predict-unknown-field", "POST", {**predict_body("some-model", _X), "colour": "blue"}, "colour"),
    # columns-orient JSON given as orient=split
    ("fit-x-not-in-orient", "PUT", {"x": _X.to_json(orient="columns"), "y": _Y.to_json(orient="split"), "orient": "split"}, "x"),
    ("predict-x-not-in-orient", "POST", {"model_key": "some-model", "x": _X.to_json(orient="columns"), "orient": "split"}, "x"),
    ("fit-x-not-json", "PUT", {"x": "this is not a frame", "y": _Y.to_json(orient="split"), "orient": "split"}, "x"),
    ("fit-x-a-number", "PUT", {"x": 5, "y": _Y.to_json(orient="split"), "orient": "split"}, "x"),
    ("fit-y-not-in-orient", "PUT", {"x": _X.to_json(orient="split"), "y": _Y.to_json(orient="columns"), "orient": "split"}, "y"),
    # cells must hold single values of one type per column
    ("fit-x-nested-cells", "PUT", {"x": {"a": {"0": [1, 2], "1": [3]}, "b": {"0": 1, "1": 2}}, "y": {"t": {"0": 0, "1": 1}}}, "x"),
    ("predict-x-object-cells", "POST", {"model_key": "some-model", "x": {"a": {"0": {"k": 1}}, "b": {"0": 1}}}, "x"),
    ("fit-x-mixed-types", "PUT", {"x": {"a": {"0": 1, "1": "q"}, "b": {"0": 1, "1": 2}}, "y": {"t": {"0": 0, "1": 1}}}, "x"),
    ("predict-x-mixed-types", "POST", {"model_key": "some-model", "x": {"a": {"0": 1, "1": "q"}, "b": {"0": 1, "1": 2}}}, "x"),
    ("fit-y-mixed-types", "PUT", {"x": {"a": {"0": 1, "1": 2}}, "y": {"t": {"0": 0, "1": "one"}}}, "y"),
    # the other fields
    ("fit-modkwargs-not-an-object", "PUT", {**fit_body(_X, _Y), "modkwargs": [1]}, "modkwargs"),
    ("fit-empty-name", "PUT", {**fit_body(_X, _Y), "name": ""}, "name"),
    ("predict-as_array-not-a-boolean", "POST", {**predict_body("some-model", _X), "as_array": "perhaps"}, "as_array"),
    ("get-missing-model_key", "GET", {}, "model_key"),
    ("delete-malformed-model_key", "DELETE", {"model_key": "not a key!"}, "model_key"),
]


@pytest.mark.parametrize(("verb", "body", "field"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
def test_invalid_field_is_422_naming_it(stack: Stack, verb: str, body: dict[str, Any], field: str) -> None:
    r = requests.request(verb, stack.family_url("logreg"), json=body, timeout=10)
    err = error_of(r, 422, "invalid_input")
    names_field(err, field)
    assert all(isinstance(v, list) and v for v in err["fields"].values()), err


def test_predict_with_wrong_columns_is_422_listing_expected_columns(stack: Stack, logreg_key: str) -> None:
    url = stack.family_url("logreg")
    x, _ = classification(5)

    err = error_of(requests.post(url, json=predict_body(logreg_key, x[["a", "b"]]), timeout=30), 422, "invalid_input")
    names_field(err, "x")
    assert "['a', 'b', 'c']" in " ".join(err["fields"]["x"]), err

    wider = x.assign(d=1.0)
    err = error_of(requests.post(url, json=predict_body(logreg_key, wider), timeout=30), 422, "invalid_input")
    names_field(err, "x")
    assert "['a', 'b', 'c']" in " ".join(err["fields"]["x"]), err

    # The same model still answers a well-formed predict.
    r = requests.post(url, json=predict_body(logreg_key, x), timeout=30)
    assert r.status_code == 200, r.text


def test_parquet_query_params_and_cells_are_422_naming_the_field(stack: Stack) -> None:
    url = stack.family_url("logreg")
    x, y = classification(8)
    parquet = {"Content-Type": PARQUET}

    r = requests.put(url, params={"retrain": "maybe"}, data=encode_training(x, y), headers=parquet, timeout=10)
    names_field(error_of(r, 422, "invalid_input"), "retrain")
    r = requests.put(url, params={"modkwargs": "{not json"}, data=encode_training(x, y), headers=parquet, timeout=10)
    names_field(error_of(r, 422, "invalid_input"), "modkwargs")
    r = requests.post(url, data=ParquetCodec.encode(x), headers=parquet, timeout=10)
    names_field(error_of(r, 422, "invalid_input"), "model_key")

    # A Parquet list column: a valid file, but not a table of single values.
    buf = io.BytesIO()
    pq.write_table(pa.table({"a": [[1.0, 2.0], [3.0]], "b": [1.0, 2.0]}), buf)
    r = requests.post(url, params={"model_key": "some-model"}, data=buf.getvalue(), headers=parquet, timeout=10)
    names_field(error_of(r, 422, "decode_error"), "x")

    # Not Parquet at all.
    r = requests.post(url, params={"model_key": "some-model"}, data=b"PAR1 but no more", headers=parquet, timeout=10)
    assert "Parquet" in error_of(r, 422, "decode_error")["message"]


def test_predict_with_unknown_method_is_422_naming_kwargs(stack: Stack, logreg_key: str) -> None:
    x, _ = classification(5)
    r = requests.post(
        stack.family_url("logreg"), json=predict_body(logreg_key, x, kwargs={"method": "fit"}), timeout=30
    )
    err = error_of(r, 422, "invalid_input")
    assert "kwargs" in err["fields"] and "predict_proba" in err["message"], err


# ---- 404 ------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["PUT", "POST", "PATCH", "GET", "DELETE"])
def test_unknown_family_is_404(stack: Stack, verb: str) -> None:
    x, y = classification(8)
    bodies = {
        "PUT": fit_body(x, y),
        "POST": predict_body("some-model", x),
        "PATCH": {"model_key": "some-model", **fit_body(x, y)},
        "GET": {"model_key": "some-model"},
        "DELETE": {"model_key": "some-model"},
    }
    r = requests.request(verb, stack.family_url("no-such-family"), json=bodies[verb], timeout=10)
    err = error_of(r, 404, "not_found")
    assert "no-such-family" in err["message"], err


@pytest.mark.parametrize(
    ("verb", "family"), [("GET", "logreg"), ("POST", "logreg"), ("PATCH", "sgd"), ("DELETE", "logreg")]
)
def test_unknown_model_key_is_404(stack: Stack, verb: str, family: str) -> None:
    key = unique(f"{family}-missing")
    x, y = classification(8)
    if verb == "POST":
        r = requests.post(stack.family_url(family), json=predict_body(key, x), timeout=30)
    elif verb == "PATCH":
        r = requests.patch(stack.family_url(family), json={"model_key": key, **fit_body(x, y)}, timeout=30)
    else:
        r = requests.request(verb, stack.family_url(family), params={"model_key": key}, timeout=10)
    err = error_of(r, 404, "not_found")
    assert key in err["message"] and "model_key" in err["message"], err


def test_unknown_version_is_404(stack: Stack, logreg_key: str) -> None:
    x, _ = classification(5)
    r = requests.post(stack.family_url("logreg"), json=predict_body(logreg_key, x, version=99), timeout=30)
    err = error_of(r, 404, "not_found")
    assert "version 99" in err["message"], err


def test_model_key_of_another_family_is_404(stack: Stack, logreg_key: str) -> None:
    r = requests.get(stack.family_url("linreg"), params={"model_key": logreg_key}, timeout=10)
    err = error_of(r, 404, "not_found")
    assert logreg_key in err["message"], err


# ---- 409 training_failed, and the consumer keeps working --------------------------------


def test_unknown_modkwargs_are_422_naming_the_parameter_before_anything_is_queued(stack: Stack) -> None:
    url = stack.family_url("logreg")
    x, y = classification(30, seed=10)
    name = unique("unknown-param")
    body = fit_body(x, y, name=name, modkwargs={"bogus": 1, "C": 1.0})
    err = error_of(requests.put(url, json=body, timeout=30), 422, "invalid_input")
    assert err["fields"] == {"modkwargs": ["unknown parameter 'bogus'"]}, err
    assert "bogus" in err["message"] and "max_iter" in err["message"], err  # names what exists
    r = requests.put(url, params={"name": name, "modkwargs": '{"bogus": 1}'}, data=encode_training(x, y),
                     headers={"Content-Type": PARQUET}, timeout=30)
    assert error_of(r, 422, "invalid_input")["fields"] == {"modkwargs": ["unknown parameter 'bogus'"]}
    assert requests.get(f"{stack.url}/models", params={"name": name}, timeout=10).json()["total"] == 0


def test_bad_modkwargs_fail_the_session_and_predict_is_409_training_failed(stack: Stack) -> None:
    url = stack.family_url("logreg")
    x, y = classification(30, seed=11)

    # A parameter the estimator knows, with a value it rejects: accepted, then failed by the estimator.
    r = requests.put(url, json=fit_body(x, y, name=unique("bad-value"), modkwargs={"C": -1.0}), timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "Queued", r.text
    bad_key = r.json()["model_key"]
    failed = stack.wait_finished("logreg", bad_key)
    assert failed["status"] == "failed", failed
    assert failed["error"] and "InvalidParameterError" in failed["error"] and "'C' parameter" in failed["error"], failed

    err = error_of(requests.post(url, json=predict_body(bad_key, x), timeout=30), 409, "training_failed")
    assert bad_key in err["message"] and "'C' parameter" in err["message"], err

    # The same consumer (the stack has one logreg consumer) trains and serves the next model.
    ok = fit_and_wait(stack, "logreg", x, y, name=unique("after-bad-value"))
    assert ok["status"] == "done", ok
    assert ok["worker"] == failed["worker"], (ok, failed)
    r = requests.post(url, json=predict_body(ok["model_key"], x), timeout=30)
    assert r.status_code == 200, r.text
    assert len(json.loads(r.json()["data"])["data"]) == len(x)


def test_update_of_a_failed_model_is_409_training_failed(stack: Stack) -> None:
    x, y = classification(30, seed=12)
    state = fit_and_wait(stack, "sgd", x, y, name=unique("sgd-bad-value"), modkwargs={"alpha": -3.0})
    assert state["status"] == "failed" and "'alpha' parameter" in state["error"], state
    r = requests.patch(stack.family_url("sgd"), json={"model_key": state["model_key"], **fit_body(x, y)}, timeout=30)
    err = error_of(r, 409, "training_failed")
    assert state["model_key"] in err["message"], err


# ---- 415, 422 family capabilities ----------------------------------------------------


def test_wrong_content_type_is_415(stack: Stack, logreg_key: str) -> None:
    url = stack.family_url("logreg")
    x, y = classification(8)
    text = json.dumps(fit_body(x, y)).encode()
    for verb, body in (("PUT", text), ("POST", json.dumps(predict_body(logreg_key, x)).encode())):
        r = requests.request(verb, url, data=body, headers={"Content-Type": "text/plain"}, timeout=10)
        err = error_of(r, 415, "unsupported_media_type")
        assert "text/plain" in err["message"] and PARQUET in err["message"], err
    r = requests.get(url, data=b"model_key=x", headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    error_of(r, 415, "unsupported_media_type")


def test_patch_on_family_without_update_is_422(stack: Stack, logreg_key: str) -> None:
    x, y = classification(8)
    r = requests.patch(stack.family_url("logreg"), json={"model_key": logreg_key, **fit_body(x, y)}, timeout=10)
    err = error_of(r, 422, "invalid_input")
    assert "logreg" in err["message"] and "update" in err["message"], err
    # Nothing was queued: the model is still at version 1, done.
    state = stack.status("logreg", logreg_key)
    assert (state["version"], state["status"]) == (1, "done"), state


def test_target_mismatch_with_family_is_422_naming_y(stack: Stack) -> None:
    x, y = classification(20)
    err = error_of(requests.post(stack.fit_url("kmeans"), json=fit_body(x, y), timeout=10), 422, "invalid_input")
    assert err["fields"] == {"y": ["not allowed"]}, err
    assert "kmeans" in err["message"] and "unsupervised" in err["message"], err

    err = error_of(requests.post(stack.fit_url("logreg"), json=fit_body(x, None), timeout=10), 422, "invalid_input")
    assert err["fields"] == {"y": ["required"]}, err
    assert "y is required" in err["message"], err

    # The same through Parquet: the target travels in the file's metadata.
    body = encode_training(x, y)
    r = requests.post(stack.fit_url("kmeans"), data=body, headers={"Content-Type": PARQUET}, timeout=10)
    assert error_of(r, 422, "invalid_input")["fields"] == {"y": ["not allowed"]}
    body = encode_training(x, None)
    r = requests.post(stack.fit_url("logreg"), data=body, headers={"Content-Type": PARQUET}, timeout=10)
    assert error_of(r, 422, "invalid_input")["fields"] == {"y": ["required"]}


# ---- the Python client's typed exceptions --------------------------------------------


def test_client_raises_typed_errors(stack: Stack, logreg_key: str) -> None:
    base = stack.url + "/"
    x, y = classification(30, seed=13)

    with pytest.raises(NotFound) as nf:
        GenericModelInterface(base, "logreg").load(unique("logreg-missing")).status()
    assert nf.value.status == 404

    with pytest.raises(NotFound):
        GenericModelInterface(base, "no-such-family").fit(x, y)

    with pytest.raises(InvalidInput) as bad_columns:
        GenericModelInterface(base, "logreg").load(logreg_key).predict(x[["a", "c"]])
    assert bad_columns.value.status == 422
    assert bad_columns.value.fields and "x" in bad_columns.value.fields, bad_columns.value.fields

    with pytest.raises(InvalidInput) as with_y:
        GenericModelInterface(base, "kmeans", n_clusters=2).fit(x, y)
    assert with_y.value.fields == {"y": ["not allowed"]}

    with pytest.raises(InvalidInput) as unknown:
        GenericModelInterface(base, "logreg", bogus=1).fit(x, y, name=unique("client-bogus"))
    assert unknown.value.fields == {"modkwargs": ["unknown parameter 'bogus'"]}

    failing = GenericModelInterface(base, "logreg", C=-1.0)
    with pytest.raises(TrainingFailed) as failed:
        failing.fit(x, y, name=unique("client-bad-value"))
    assert "'C' parameter" in str(failed.value)
    with pytest.raises(TrainingFailed) as served:
        failing.predict(x)  # the server's 409, raised as the same class
    assert served.value.status == 409


# ---- a slow family in a stack of its own: 409 not_trained, 413, 504 ------------------------


def test_slow_consumer_not_trained_body_limit_and_deadline(fresh_stack: Stack) -> None:
    """One stack, one consumer (`slow`), a gateway with a 4096-byte body limit and a 1 s predict deadline."""
    s = fresh_stack
    consumer = s.start_consumer("tests.families_for_tests:slow")
    s.start_gateway(ML_SERVER_MAX_BODY=str(LIMIT), ML_SERVER_PREDICT_TIMEOUT="1")
    url = s.family_url("slow")
    x, y = tiny()

    # -- 409 not_trained while the fit is still running
    body = fit_body(x, y, name="slow-model", modkwargs={"delay": 5})
    assert len(json.dumps(body)) < LIMIT
    r = requests.post(s.fit_url("slow"), json=body, timeout=30)
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]
    err = error_of(requests.post(url, json=predict_body(key, x), timeout=10), 409, "not_trained")
    assert key in err["message"], err
    with pytest.raises(NotTrained):
        GenericModelInterface(s.url, "slow").load(key).predict(x)
    assert s.status("slow", key)["status"] in ("queued", "running")

    # -- 413 over the body limit, with a Content-Length and chunked without one
    big_x = pd.DataFrame({"a": np.arange(1000) * 1.5, "b": np.arange(1000) % 7})
    big_y = pd.DataFrame({"t": (np.arange(1000) > 500).astype(int)})
    big = json.dumps(fit_body(big_x, big_y)).encode()
    assert len(big) > LIMIT
    r = requests.put(url, data=big, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.request.headers["Content-Length"] == str(len(big))
    err = error_of(r, 413, "payload_too_large")
    assert str(LIMIT) in err["message"], err

    parquet = ParquetCodec.encode(big_x)
    assert len(parquet) > LIMIT
    r = requests.post(url, params={"model_key": key}, data=parquet, headers={"Content-Type": PARQUET}, timeout=10)
    assert str(LIMIT) in error_of(r, 413, "payload_too_large")["message"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    r = requests.put(url, data=chunks(), headers={"Content-Type": "application/json"}, timeout=10)
    assert "Content-Length" not in r.request.headers and r.request.headers.get("Transfer-Encoding") == "chunked"
    assert str(LIMIT) in error_of(r, 413, "payload_too_large")["message"]

    # -- the fit finishes and the model serves
    state = s.wait_finished("slow", key, timeout=60)
    assert state["status"] == "done", state
    r = requests.post(url, json=predict_body(key, x), timeout=10)
    assert r.status_code == 200, r.text

    # -- 504 when the only consumer does not answer in time
    consumer.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = requests.post(url, json=predict_body(key, x), timeout=30)
        elapsed = time.monotonic() - started
        err = error_of(r, 504, "deadline_exceeded")
        assert "slow" in err["message"], err
        assert 0.9 <= elapsed < 5, elapsed
        with pytest.raises(DeadlineExceeded):
            GenericModelInterface(s.url, "slow").load(key).predict(x)
    finally:
        consumer.send_signal(signal.SIGCONT)

    # The consumer is back: predicts succeed again.
    wait_for(
        lambda: requests.post(url, json=predict_body(key, x), timeout=10).status_code == 200,
        30,
        what="predict 200 after SIGCONT",
    )


# ---- 503: the broker goes away, and comes back ------------------------------------------


@pytest.fixture
def broker_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(BROKER)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.cut()


def test_broker_unreachable_is_503_fast_and_the_gateway_recovers(fresh_stack: Stack, broker_proxy: TcpProxy) -> None:
    s = fresh_stack
    s.start_consumer("logreg")  # consumers talk to the real broker directly
    s.start_gateway(ML_SERVER_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{broker_proxy.port}/")
    url = s.family_url("logreg")
    x, y = classification(30, seed=21)
    trained = fit_and_wait(s, "logreg", x, y, name="before-outage")
    assert trained["status"] == "done", trained
    key = trained["model_key"]
    assert requests.post(url, json=predict_body(key, x), timeout=10).status_code == 200

    broker_proxy.cut()

    started = time.monotonic()
    r = requests.put(url, json=fit_body(x, y, name="during-outage"), timeout=30)
    elapsed = time.monotonic() - started
    err = error_of(r, 503, "unavailable")
    assert "broker" in err["message"], err
    assert elapsed < 5, elapsed

    started = time.monotonic()
    r = requests.post(url, json=predict_body(key, x), timeout=30)
    elapsed = time.monotonic() - started
    err = error_of(r, 503, "unavailable")
    assert "broker" in err["message"], err
    assert elapsed < 5, elapsed
    assert r.headers["Retry-After"] == "1"  # a passing state: try again shortly

    ready = requests.get(f"{s.url}/readyz", timeout=10)
    assert ready.status_code == 503, ready.text
    assert ready.json()["broker"] == "unavailable" and ready.json()["store"] == "ok", ready.json()

    assert requests.get(f"{s.url}/healthz", timeout=10).status_code == 200  # the process itself is fine

    broker_proxy.start()
    wait_for(lambda: requests.get(f"{s.url}/readyz", timeout=5).status_code == 200, 60, what="gateway ready again")
    wait_for(
        lambda: requests.post(url, json=predict_body(key, x), timeout=10).status_code == 200,
        30,
        what="predict 200 after the broker came back",
    )
    # The fit refused during the outage was recorded as failed (version 1), not silently dropped:
    # sending it again queues version 2, which trains.
    r = requests.post(s.fit_url("logreg"), json=fit_body(x, y, name="during-outage"), timeout=30)
    assert r.status_code == 202, r.text
    assert r.json()["version"] == 2, r.json()
    again = s.wait_finished("logreg", r.json()["model_key"])
    assert (again["status"], again["version"]) == ("done", 2), again
