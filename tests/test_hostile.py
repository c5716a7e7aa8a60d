"""Hostile input against the real stack: every case is a clear 4xx naming the problem, never a 500,
never a crash, never a stuck job, and nothing a user sends is ever unpickled.

A tampered stored artifact is covered by `test_contracts.test_artifacts_are_signed_and_tampering_is_refused`
(an altered or unsigned joblib artifact is refused before a byte is unpickled).
"""

from __future__ import annotations

import asyncio
import io
import json
import pickle
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from contracts.frames import PARQUET, TARGET_METADATA_KEY, encode_training
from contracts.topology import Header, MessageType, Topology

from .stack import BROKER_URL, Stack, ready_messages, wait_for, wait_queue_drained

pytestmark = pytest.mark.integration

OCTET = "application/octet-stream"


class Evil:
    """Unpickling this creates the marker file: proof that something unpickled user bytes."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="none", write_statistics=False)
    return sink.getvalue().to_pybytes()


def frame_json(n: int = 20) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "b"])
    y = pd.DataFrame({"t": (x["a"] > 0).astype(int)})
    return json.loads(x.to_json()), json.loads(y.to_json())


def refused(r: requests.Response, status: int, *words: str) -> dict[str, Any]:
    """The response is `status` with the error body, and its message (or fields) names each of `words`."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    error = r.json()["error"]
    text = json.dumps(error)
    for word in words:
        assert word in text, (word, error)
    return error


def assert_alive(stack: Stack) -> None:
    assert stack.gateway is not None and stack.gateway.poll() is None, "the gateway died"
    for family, proc in stack.consumers:
        assert proc.poll() is None, f"consumer {family} died"
    assert requests.get(f"{stack.url}/healthz", timeout=5).ok


@pytest.fixture(scope="module")
def trained(stack: Stack) -> str:
    """A done logreg model on columns a, b."""
    x, y = frame_json(40)
    r = requests.post(stack.fit_url("logreg"), json={"x": x, "y": y, "name": f"hostile-{uuid.uuid4().hex[:6]}"}, timeout=30)
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]
    assert stack.wait_finished("logreg", key)["status"] == "done"
    return key


# ---- NaN, inf, strings, duplicates, empty frames -------------------------------------------


def test_infinity_in_training_data_is_refused_naming_the_column(stack: Stack) -> None:
    x = pa.table({"a": [1.0, float("inf"), 2.0], "b": [1.0, 2.0, 3.0], "t": [0, 1, 0]})
    body = parquet(x.replace_schema_metadata({TARGET_METADATA_KEY: b'["t"]'}))
    r = requests.post(stack.fit_url("logreg"), data=body, headers={"Content-Type": PARQUET}, timeout=30)
    refused(r, 422, "x", "infinite", "'a'")
    y_inf = pa.table({"a": [1.0, 2.0], "t": [0.0, float("-inf")]}).replace_schema_metadata({TARGET_METADATA_KEY: b'["t"]'})
    r = requests.post(stack.fit_url("linreg"), data=parquet(y_inf), headers={"Content-Type": PARQUET}, timeout=30)
    refused(r, 422, "y", "infinite", "'t'")
    # JSON has no infinity; a number too big for a double is the closest thing, in the text form too.
    r = requests.post(stack.fit_url("linreg"), json={"x": '{"a":{"0":1e999,"1":2}}', "y": '{"t":{"0":1,"1":2}}'}, timeout=30)
    refused(r, 422, "x", "not valid JSON")
    r = requests.put(
        stack.family_url("linreg"), data=b'{"x": {"a": {"0": 1e999}}, "y": {"t": {"0": 1}}}',
        headers={"Content-Type": "application/json"}, timeout=30,
    )
    refused(r, 422, "not valid JSON")
    assert_alive(stack)


def test_missing_values_are_imputed_unless_preprocessing_is_off(stack: Stack) -> None:
    """NaN is a missing value: the model's preprocessing imputes it. Without preprocessing, LogisticRegression
    gets the NaN itself, and the version fails with its reason."""
    x = {"a": {"0": 1.0, "1": None, "2": 3.0, "3": 0.5}, "b": {"0": 1, "1": 2, "2": 3, "3": 4}}
    y = {"t": {"0": 0, "1": 1, "2": 0, "3": 1}}
    r = requests.post(stack.fit_url("logreg"), json={"x": x, "y": y, "name": f"nan-{uuid.uuid4().hex[:6]}"}, timeout=30)
    assert r.status_code == 202, r.text
    assert stack.wait_finished("logreg", r.json()["model_key"])["status"] == "done"
    body = {"x": x, "y": y, "name": f"nan-{uuid.uuid4().hex[:6]}", "modkwargs": {"preprocessing": False}}
    r = requests.post(stack.fit_url("logreg"), json=body, timeout=30)
    assert r.status_code == 202, r.text
    status = stack.wait_finished("logreg", r.json()["model_key"])
    assert status["status"] == "failed" and "NaN" in status["error"], status
    assert_alive(stack)


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_inf_and_strings_at_predict_are_422_naming_x_and_nan_is_answered(stack: Stack, trained: str, fmt: str) -> None:
    missing = pd.DataFrame({"a": [np.nan, 1.0], "b": [1.0, 2.0]})
    if fmt == "json":
        r = requests.post(stack.family_url("logreg"), json={"model_key": trained, "x": missing.to_json()}, timeout=30)
    else:
        buf = io.BytesIO()
        missing.to_parquet(buf)
        r = requests.post(stack.family_url("logreg"), params={"model_key": trained}, data=buf.getvalue(), headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 200, r.text  # a missing value is imputed, as at fit
    bad = [pd.DataFrame({"a": ["one", "two"], "b": [1.0, 2.0]})]
    if fmt == "parquet":  # (pandas writes an infinity to JSON as null: a missing value, answered as above)
        bad.append(pd.DataFrame({"a": [np.inf, 1.0], "b": [1.0, 2.0]}))
    for x in bad:
        if fmt == "json":
            r = requests.post(stack.family_url("logreg"), json={"model_key": trained, "x": x.to_json()}, timeout=30)
        else:
            buf = io.BytesIO()
            x.to_parquet(buf)
            r = requests.post(
                stack.family_url("logreg"), params={"model_key": trained}, data=buf.getvalue(),
                headers={"Content-Type": PARQUET}, timeout=30,
            )
        error = refused(r, 422, "x")
        assert error["fields"] and "x" in error["fields"], error
    assert_alive(stack)


def test_strings_in_a_numeric_column_are_refused_naming_the_column(stack: Stack) -> None:
    x = {"a": {"0": 1, "1": "two", "2": 3}, "b": {"0": 1, "1": 2, "2": 3}}
    y = {"t": {"0": 0, "1": 1, "2": 0}}
    r = requests.post(stack.fit_url("logreg"), json={"x": x, "y": y}, timeout=30)
    refused(r, 422, "x", "'a'", "clashing types")
    assert_alive(stack)


def test_duplicate_column_names_are_refused(stack: Stack) -> None:
    x = {"columns": ["a", "a"], "index": [0, 1], "data": [[1, 2], [3, 4]]}
    y = {"columns": ["t"], "index": [0, 1], "data": [[0], [1]]}
    r = requests.post(stack.fit_url("logreg"), json={"x": x, "y": y, "orient": "split"}, timeout=30)
    refused(r, 422, "x", "duplicate column names")
    x_table = {"schema": {"fields": [{"name": "a", "type": "number"}, {"name": "a", "type": "number"}]}, "data": [{"a": 1}]}
    y_table = {"schema": {"fields": [{"name": "t", "type": "integer"}]}, "data": [{"t": 1}]}
    r = requests.post(stack.fit_url("logreg"), json={"x": x_table, "y": y_table, "orient": "table"}, timeout=30)
    refused(r, 422, "x", "duplicate column names")
    table = pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array([3.0, 4.0]), pa.array([0, 1])], names=["a", "a", "t"])
    body = parquet(table.replace_schema_metadata({TARGET_METADATA_KEY: b'["t"]'}))
    r = requests.post(stack.fit_url("logreg"), data=body, headers={"Content-Type": PARQUET}, timeout=30)
    refused(r, 422, "x", "duplicate column names")
    assert_alive(stack)


def test_empty_frames_are_refused(stack: Stack, trained: str) -> None:
    r = requests.post(stack.fit_url("logreg"), json={"x": {}, "y": {}}, timeout=30)
    refused(r, 422, "x", "empty")
    r = requests.post(stack.fit_url("kmeans"), json={"x": {"a": {}}}, timeout=30)
    refused(r, 422, "x", "empty")
    empty = pa.table({"a": pa.array([], pa.float64()), "t": pa.array([], pa.int64())})
    body = parquet(empty.replace_schema_metadata({TARGET_METADATA_KEY: b'["t"]'}))
    r = requests.post(stack.fit_url("logreg"), data=body, headers={"Content-Type": PARQUET}, timeout=30)
    refused(r, 422, "x", "empty")
    r = requests.post(stack.family_url("logreg"), json={"model_key": trained, "x": {}}, timeout=30)
    refused(r, 422, "x", "empty")
    r = requests.post(
        stack.family_url("logreg"), params={"model_key": trained}, data=parquet(pa.table({"a": pa.array([], pa.float64())})),
        headers={"Content-Type": PARQUET}, timeout=30,
    )
    refused(r, 422, "x")
    assert_alive(stack)


def _pandas_metadata_variants() -> list[bytes]:
    meta = json.loads(pa.Table.from_pandas(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0]}, index=[5, 6])).schema.metadata[b"pandas"])
    columns = meta["columns"]
    return [
        b"[" * 5000,
        b"not json",
        b'"a string"',
        b'{"index_columns": 7}',
        json.dumps({**meta, "index_columns": ["nope"]}).encode(),
        json.dumps({**meta, "columns": [{**c, "numpy_type": "nonsense"} for c in columns]}).encode(),
        json.dumps({**meta, "columns": [{**c, "name": ["unhashable"]} for c in columns]}).encode(),
        json.dumps({**meta, "columns": []}).encode(),
        json.dumps({**meta, "column_indexes": [{"name": None, "pandas_type": "datetime", "numpy_type": "object", "metadata": None}]}).encode(),
    ]


@pytest.mark.parametrize("variant", range(len(_pandas_metadata_variants())))
def test_malformed_pandas_metadata_in_parquet_is_422(stack: Stack, trained: str, variant: int) -> None:
    """Parquet files written by pandas carry a `pandas` schema metadata key that `to_pandas()` trusts; a client controls it."""
    pandas_metadata = _pandas_metadata_variants()[variant]
    x = pa.table({"a": [1.0, 2.0], "b": [1.0, 2.0], "__index_level_0__": [5, 6]})
    r = requests.post(
        stack.family_url("logreg"), params={"model_key": trained},
        data=parquet(x.replace_schema_metadata({b"pandas": pandas_metadata})), headers={"Content-Type": PARQUET}, timeout=30,
    )
    refused(r, 422, "x", "pandas")
    training = x.append_column("t", pa.array([0, 1])).replace_schema_metadata({b"pandas": pandas_metadata, TARGET_METADATA_KEY: b'["t"]'})
    r = requests.post(stack.fit_url("logreg"), data=parquet(training), headers={"Content-Type": PARQUET}, timeout=30)
    refused(r, 422, "x", "pandas")
    assert_alive(stack)


# ---- sizes and shapes meant to exhaust the server ------------------------------------------


def test_a_million_json_columns_are_refused_fast(stack: Stack, trained: str) -> None:
    columns = ",".join(f'"c{i}":{{"0":1}}' for i in range(1_000_000))
    body = f'{{"x":{{{columns}}},"y":{{"t":{{"0":1}}}}}}'.encode()
    started = time.monotonic()
    r = requests.post(stack.fit_url("logreg"), data=body, headers={"Content-Type": "application/json"}, timeout=60)
    refused(r, 422, "x", "1000000 columns", "ML_SERVER_MAX_COLUMNS")
    assert time.monotonic() - started < 20, "the column cap should refuse before pandas builds the frame"
    r = requests.post(stack.family_url("logreg"), data=body.replace(b'"y":', b'"model_key":"' + trained.encode() + b'","z":'), headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 422, r.text[:300]
    assert_alive(stack)


def test_a_hundred_thousand_parquet_columns_are_refused_from_the_footer(stack: Stack, trained: str) -> None:
    """Parquet: the column count comes from the file's footer, before a column is read. (A million
    columns is refused by pyarrow itself, the footer is over its thrift size limit; 100,000 columns
    are already ten times the cap and take seconds, not minutes, to write.)"""
    n = 100_000
    column = pa.array([1.0])
    table = pa.Table.from_arrays([column] * n, names=[f"c{i}" for i in range(n)])
    body = parquet(table)
    started = time.monotonic()
    r = requests.post(stack.fit_url("kmeans"), data=body, headers={"Content-Type": PARQUET}, timeout=60)
    refused(r, 422, "x", f"{n} columns", "ML_SERVER_MAX_COLUMNS")
    r = requests.post(
        stack.family_url("logreg"), params={"model_key": trained}, data=body, headers={"Content-Type": PARQUET}, timeout=60
    )
    refused(r, 422, "x", f"{n} columns")
    assert time.monotonic() - started < 30
    assert_alive(stack)


def test_deeply_nested_json_is_422_not_500(stack: Stack, trained: str) -> None:
    deep = "[" * 100_000
    r = requests.post(stack.fit_url("logreg"), data=deep.encode(), headers={"Content-Type": "application/json"}, timeout=30)
    refused(r, 422, "not valid JSON")
    r = requests.post(stack.fit_url("logreg"), json={"x": deep, "y": deep}, timeout=30)
    refused(r, 422, "x", "not valid JSON")
    r = requests.post(stack.fit_url("logreg"), json={"x": {"a": {"0": 1}}, "y": {"t": {"0": 1}}, "modkwargs": deep}, timeout=30)
    refused(r, 422, "modkwargs")
    r = requests.post(stack.family_url("logreg"), json={"model_key": trained, "x": {"a": {"0": 1}, "b": {"0": 1}}, "kwargs": deep}, timeout=30)
    refused(r, 422, "kwargs")
    x = pa.table({"a": [1.0, 2.0], "t": [0, 1]}).replace_schema_metadata({TARGET_METADATA_KEY: b'["t"]'})
    r = requests.put(
        stack.family_url("logreg"), params={"modkwargs": "[" * 2000}, data=parquet(x), headers={"Content-Type": PARQUET}, timeout=30
    )
    refused(r, 422, "modkwargs")
    nested_meta = pa.table({"a": [1.0, 2.0], "t": [0, 1]}).replace_schema_metadata({TARGET_METADATA_KEY: b"[" * 100_000})
    r = requests.post(stack.fit_url("logreg"), data=parquet(nested_meta), headers={"Content-Type": PARQUET}, timeout=30)
    refused(r, 422, "ml_server.target")
    assert_alive(stack)


def test_a_2gb_content_length_is_413_without_reading_the_body(stack: Stack) -> None:
    for method, ctype in (("PUT", "application/json"), ("PUT", PARQUET), ("POST", PARQUET), ("PATCH", "application/json")):
        query = "" if method == "PUT" else "?model_key=abc"
        with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as s:
            s.sendall(
                f"{method} /logreg{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {2 * 2**30}\r\n\r\n".encode() + b"{" * 1024
            )
            started = time.monotonic()
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
            assert time.monotonic() - started < 10
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"payload_too_large" in answer or b"413" in answer
    assert_alive(stack)


def test_integers_beyond_sql_range_are_422_naming_the_field(stack: Stack, trained: str) -> None:
    """Found by the fuzzer: an offset of 2**64 reached SQLite and overflowed into a 500."""
    huge = 2**64
    refused(requests.get(f"{stack.url}/models", params={"offset": huge}, timeout=10), 422, "offset")
    refused(requests.get(f"{stack.url}/models/{trained}/versions", params={"offset": huge}, timeout=10), 422, "offset")
    r = requests.post(stack.family_url("logreg"), json={"model_key": trained, "x": {"a": {"0": 1}, "b": {"0": 1}}, "version": huge}, timeout=10)
    refused(r, 422, "version")
    assert_alive(stack)


# ---- path tricks ---------------------------------------------------------------------------


def test_path_tricks_in_families_model_keys_and_names(stack: Stack, trained: str, tmp_path: Path) -> None:
    for path in ("/..%2F..%2Fetc%2Fpasswd", "/logreg%2F..%2Fkmeans", "/%2e%2e", "/logreg%00", "/.%2E/logreg"):
        r = requests.get(f"{stack.url}{path}", params={"model_key": trained}, timeout=10)
        assert r.status_code in (404, 422), (path, r.status_code, r.text[:300])
        assert "error" in r.json()
        r = requests.put(f"{stack.url}{path}", json={"x": {"a": {"0": 1}}}, timeout=10)
        assert r.status_code in (404, 422), (path, r.status_code, r.text[:300])
    # ".." is a valid key (letters, digits, _ . -): it never becomes a path, so it is just an unknown model.
    refused(requests.get(stack.family_url("logreg"), params={"model_key": ".."}, timeout=10), 404, "model_key")
    for key in ("../../etc/passwd", "a/b", "a\\b", "x" * 65, "key\x00"):
        refused(requests.get(stack.family_url("logreg"), params={"model_key": key}, timeout=10), 422, "model_key")
        refused(requests.delete(stack.family_url("logreg"), params={"model_key": key}, timeout=10), 422, "model_key")
        refused(
            requests.post(stack.family_url("logreg"), json={"model_key": key, "x": {"a": {"0": 1}, "b": {"0": 1}}}, timeout=10),
            422,
            "model_key",
        )
    r = requests.get(f"{stack.url}/models/..%2F..%2Fetc%2Fpasswd/versions", timeout=10)
    assert r.status_code == 404, r.text
    # A name is only a label: it never becomes a path, so a name full of ../ is stored as text.
    target = tmp_path / "escaped"
    name = f"../../../../{target}"
    x, y = frame_json()
    r = requests.post(stack.fit_url("logreg"), json={"x": x, "y": y, "name": name}, timeout=30)
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]
    assert "/" not in key and ".." not in key
    assert stack.wait_finished("logreg", key)["status"] == "done"
    assert stack.status("logreg", key)["name"] == name
    assert not target.exists()
    assert_alive(stack)


# ---- pickles -----------------------------------------------------------------------------


def test_a_malicious_pickle_is_never_unpickled(stack: Stack, trained: str, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Evil(marker))
    pickle.loads(payload).close()  # the payload works: it does create the marker when unpickled
    assert marker.exists()
    marker.unlink()

    for method in ("PUT", "POST", "PATCH"):
        url = stack.family_url("sgd" if method == "PATCH" else "logreg")
        params = {} if method == "PUT" else {"model_key": trained}
        r = requests.request(method, url, params=params, data=payload, headers={"Content-Type": OCTET}, timeout=30)
        refused(r, 415, "Content-Type")
        r = requests.request(method, url, params=params, data=payload, headers={"Content-Type": PARQUET}, timeout=30)
        refused(r, 422, "Parquet")
        r = requests.request(method, url, params=params, data=payload, headers={"Content-Type": "application/json"}, timeout=30)
        refused(r, 422, "not valid JSON")
    assert not marker.exists()
    assert_alive(stack)


def test_a_malicious_pickle_on_the_broker_fails_cleanly(stack: Stack, trained: str, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled-amqp"
    payload = pickle.dumps(Evil(marker))
    topology = Topology(stack.namespace)
    key = f"pickle-{uuid.uuid4().hex[:8]}"

    async def publish() -> list[aio_pika.abc.AbstractIncomingMessage]:
        async with await aio_pika.connect(BROKER_URL) as connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(topology.jobs_exchange)
            for headers in (
                {Header.MODEL_KEY: key, Header.FAMILY: "logreg"},  # well-formed headers, pickled body
                {},  # nothing valid at all: to the dead-letter queue
            ):
                await exchange.publish(
                    aio_pika.Message(
                        payload, headers=headers, content_type="application/python-pickle", type=MessageType.FIT,
                        message_id=uuid.uuid4().hex, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=topology.train_key("logreg"),
                    mandatory=True,
                )
            replies = await channel.declare_queue(exclusive=True, auto_delete=True)
            answers: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
            await replies.consume(answers.put, no_ack=True)
            for headers in ({Header.MODEL_KEY: trained}, {}):
                await exchange.publish(
                    aio_pika.Message(
                        payload, headers=headers, content_type="application/python-pickle", type=MessageType.PREDICT,
                        correlation_id=uuid.uuid4().hex, reply_to=replies.name, expiration=30,
                    ),
                    routing_key=topology.predict_key("logreg"),
                    mandatory=True,
                )
            return [await asyncio.wait_for(answers.get(), 30) for _ in range(2)]

    replies = asyncio.run(publish())
    for reply in replies:
        headers = dict(reply.headers or {})
        assert int(headers[Header.STATUS]) == 422, headers
        assert headers[Header.ERROR_CODE] in ("decode_error", "invalid_input"), headers
        assert reply.body == b""
    messages = sorted(str(dict(r.headers or {})[Header.ERROR_MESSAGE]) for r in replies)
    assert any("Parquet" in m for m in messages), messages
    assert any("model_key" in m or Header.MODEL_KEY in m for m in messages), messages

    status = wait_for(lambda: (s := stack.status("logreg", key))["status"] in ("done", "failed") and s, 60, what="the pickled fit recorded as finished")
    assert status["status"] == "failed" and "Parquet" in status["error"], status
    wait_queue_drained(stack, "logreg")
    assert ready_messages(topology.predict_queue("logreg")) == 0
    assert not marker.exists()
    assert_alive(stack)


def test_training_data_a_consumer_gets_over_amqp_with_infinity_fails_naming_it(stack: Stack) -> None:
    """The consumer side applies the same checks to frames published straight to the broker."""
    topology = Topology(stack.namespace)
    key = f"inf-{uuid.uuid4().hex[:8]}"
    body = encode_training(pd.DataFrame({"a": [1.0, np.inf]}), pd.DataFrame({"t": [0, 1]}))

    async def publish() -> None:
        async with await aio_pika.connect(BROKER_URL) as connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(topology.jobs_exchange)
            await exchange.publish(
                aio_pika.Message(
                    body, headers={Header.MODEL_KEY: key, Header.FAMILY: "logreg"}, content_type=PARQUET,
                    type=MessageType.FIT, message_id=uuid.uuid4().hex, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=topology.train_key("logreg"),
                mandatory=True,
            )

    asyncio.run(publish())
    status = wait_for(lambda: (s := stack.status("logreg", key))["status"] in ("done", "failed") and s, 60, what="the fit recorded as finished")
    assert status["status"] == "failed" and "infinite" in status["error"] and "'a'" in status["error"], status
    wait_queue_drained(stack, "logreg")
    assert_alive(stack)
