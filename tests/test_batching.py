"""Predict coalescing: the gateway's batching logic, then the real thing through the broker."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

from contracts.errors import DeadlineExceeded, InvalidInput, NotFound
from contracts.frames import PARQUET, ParquetCodec, Rows, encode_training, rows_from_parquet
from gateway.batching import Coalescer

from .stack import Stack

# ---- the logic, with a scripted broker ------------------------------------------------


class ScriptedBroker:
    """Answers each call with one row per input row (the row's `a` value doubled), after `delay` seconds;
    a call whose rows include a negative `a` is refused as bad input, like a consumer would."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.calls: list[int] = []  # rows per call, in order
        self.started: list[float] = []

    async def call(self, family: str, body: bytes, headers: dict[str, Any], timeout: float) -> tuple[dict[str, Any], bytes]:
        table = ParquetCodec.decode_table(body)
        self.calls.append(table.num_rows)
        self.started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.delay)
        a = table.column("a").to_numpy()
        if (a < 0).any():
            return {"x-status": 422, "x-error-code": "invalid_input", "x-error-message": "negative a"}, b""
        if headers.get("x-model-key") == "gone":
            return {"x-status": 404, "x-error-code": "not_found", "x-error-message": "no such model"}, b""
        return {"x-status": 200}, ParquetCodec.encode_table(pa.table({"out": a * 2}))


def rows(*values: float, labels: list[Any] | None = None) -> Rows:
    return Rows(pa.table({"a": np.asarray(values, dtype=float)}), labels)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_lone_predict_is_sent_at_once() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=0.0)
        c = Coalescer(broker.call, max_rows=1000, max_wait=10.0, inflight=1)
        t0 = asyncio.get_running_loop().time()
        answer = await c.predict("f", "m", None, {}, rows(1, 2), timeout=5)
        assert answer.table.column("out").to_pylist() == [2, 4]
        assert broker.calls == [2]
        assert broker.started[0] - t0 < 0.05  # not held back for max_wait (10 s)

    run(go())


def test_predicts_queued_behind_one_in_flight_go_together_and_are_split_in_order() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=0.05)
        c = Coalescer(broker.call, max_rows=1000, max_wait=10.0, inflight=1)
        first = asyncio.create_task(c.predict("f", "m", None, {}, rows(0), timeout=5))
        await asyncio.sleep(0.01)  # the first is in flight now
        rest = [asyncio.create_task(c.predict("f", "m", None, {}, rows(i, i + 0.5), timeout=5)) for i in range(1, 11)]
        answers = await asyncio.gather(first, *rest)
        assert broker.calls == [1, 20]  # the ten queued ones left as one message
        assert answers[0].table.column("out").to_pylist() == [0]
        for i, answer in enumerate(answers[1:], start=1):
            assert answer.table.column("out").to_pylist() == [2 * i, 2 * i + 1]

    run(go())


def test_groups_do_not_mix_models_versions_kwargs_or_schemas() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=0.05)
        c = Coalescer(broker.call, max_rows=1000, max_wait=10.0, inflight=1)
        calls = [
            c.predict("f", "m", None, {}, rows(1), timeout=5),
            c.predict("f", "m2", None, {}, rows(2), timeout=5),
            c.predict("f", "m", 1, {}, rows(3), timeout=5),
            c.predict("f", "m", None, {"method": "predict_proba"}, rows(4), timeout=5),
            c.predict("f", "m", None, {}, Rows(pa.table({"a": [5.0], "b": [1.0]})), timeout=5),
        ]
        answers = await asyncio.gather(*calls)
        assert [a.table.column("out").to_pylist() for a in answers] == [[2], [4], [6], [8], [10]]
        assert broker.calls == [1, 1, 1, 1, 1]  # five groups, each alone

    run(go())


def test_max_rows_caps_a_message() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=0.05)
        c = Coalescer(broker.call, max_rows=4, max_wait=10.0, inflight=1)
        first = asyncio.create_task(c.predict("f", "m", None, {}, rows(0), timeout=5))
        await asyncio.sleep(0.01)
        rest = [asyncio.create_task(c.predict("f", "m", None, {}, rows(i, i), timeout=5)) for i in range(1, 6)]
        answers = await asyncio.gather(first, *rest)
        assert max(broker.calls) <= 4 and sum(broker.calls) == 11
        assert [a.table.column("out").to_pylist() for a in answers[1:]] == [[2 * i, 2 * i] for i in range(1, 6)]

    run(go())


def test_rows_with_labels_share_a_message_and_a_big_parquet_goes_alone_as_it_came() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=0.05)
        sent: list[bytes] = []
        call = broker.call

        async def spy(family: str, body: bytes, headers: dict[str, Any], timeout: float) -> tuple[dict[str, Any], bytes]:
            sent.append(body)
            return await call(family, body, headers, timeout)

        c = Coalescer(spy, max_rows=10, max_wait=10.0, inflight=1)
        first = asyncio.create_task(c.predict("f", "m", None, {}, rows(0), timeout=5))
        await asyncio.sleep(0.01)
        labelled = [asyncio.create_task(c.predict("f", "m", None, {}, rows(i, labels=[f"r{i}"]), timeout=5)) for i in (1, 2)]
        big_body = ParquetCodec.encode(pd.DataFrame({"a": np.arange(12, dtype=float)}))
        big = asyncio.create_task(c.predict("f", "m", None, {}, rows_from_parquet(big_body, 10), timeout=5))
        answers = await asyncio.gather(first, *labelled, big)
        assert [a.table.column("out").to_pylist() for a in answers[1:3]] == [[2], [4]]  # labels stay in the gateway
        assert answers[3].table.column("out").to_pylist() == [2 * i for i in range(12)]
        assert big_body in sent  # forwarded as it came, never re-encoded
        assert sorted(broker.calls) == [1, 2, 12]

    run(go())


def test_max_wait_sends_queued_predicts_while_a_slow_one_is_in_flight() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=0.5)
        c = Coalescer(broker.call, max_rows=1000, max_wait=0.02, inflight=1)
        first = asyncio.create_task(c.predict("f", "m", None, {}, rows(0), timeout=5))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(c.predict("f", "m", None, {}, rows(1), timeout=5))
        await asyncio.gather(first, second)
        assert broker.calls == [1, 1]
        assert broker.started[1] - broker.started[0] < 0.3  # did not wait for the first's 0.5 s

    run(go())


def test_bad_rows_fail_only_their_own_request() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=0.05)
        c = Coalescer(broker.call, max_rows=1000, max_wait=10.0, inflight=1)
        first = asyncio.create_task(c.predict("f", "m", None, {}, rows(0), timeout=5))
        await asyncio.sleep(0.01)
        good = [asyncio.create_task(c.predict("f", "m", None, {}, rows(i), timeout=5)) for i in (1, 2, 3)]
        bad = asyncio.create_task(c.predict("f", "m", None, {}, rows(-1), timeout=5))
        await first
        assert [(await g).table.column("out").to_pylist() for g in good] == [[2], [4], [6]]
        with pytest.raises(InvalidInput):
            await bad

    run(go())


def test_other_errors_reach_every_caller_of_the_message() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=0.05)
        c = Coalescer(broker.call, max_rows=1000, max_wait=10.0, inflight=1)
        tasks = [asyncio.create_task(c.predict("f", "gone", None, {}, rows(i), timeout=5)) for i in range(4)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, NotFound) for r in results), results
        assert len(broker.calls) < 4  # they did go together

    run(go())


def test_a_caller_gets_its_deadline_even_when_queued() -> None:
    async def go() -> None:
        broker = ScriptedBroker(delay=1.0)
        c = Coalescer(broker.call, max_rows=1000, max_wait=10.0, inflight=1)
        first = asyncio.create_task(c.predict("f", "m", None, {}, rows(0), timeout=5))
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(DeadlineExceeded):
            await c.predict("f", "m", None, {}, rows(1), timeout=0.1)
        assert loop.time() - t0 < 0.5
        await first

    run(go())


# ---- through the real gateway, broker and consumer -----------------------------------


def _batch_counts(stack: Stack) -> tuple[float, float]:
    text = requests.get(f"{stack.url}/metrics", timeout=10).text
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "ml_server_gateway_predict_batch_requests":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    count += sample.value
                elif sample.name.endswith("_sum"):
                    total += sample.value
    return count, total


def test_concurrent_predicts_are_coalesced_and_each_gets_its_own_rows(stack: Stack) -> None:
    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(600, 4)), columns=["a", "b", "c", "d"])
    y = (x["a"] - x["b"] > 0).astype(int).to_frame("label")
    url = stack.family_url("logreg")
    r = requests.put(url, data=encode_training(x, y), params={"name": "coalesce-me"}, headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 200, r.text
    key = r.json()["model_key"]
    stack.wait_finished("logreg", key)
    local = LogisticRegression().fit(x, y["label"])

    requests_sent = 160
    sizes = [1 + i % 5 for i in range(requests_sent)]
    starts = np.cumsum([0, *sizes[:-1]])
    frames = [x.iloc[s : s + n].reset_index(drop=True) for s, n in zip(starts, sizes)]
    frames[13] = frames[13].assign(a=np.inf)  # one bad request among them (a missing value would be imputed)
    answers: dict[int, requests.Response] = {}
    before = _batch_counts(stack)

    def send(i: int) -> None:
        with requests.Session() as s:
            for j in range(i, requests_sent, 16):
                body = ParquetCodec.encode(frames[j])
                answers[j] = s.post(
                    url, params={"model_key": key}, data=body, headers={"Content-Type": PARQUET, "Accept": PARQUET}, timeout=60
                )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert answers[13].status_code == 422, answers[13].text
    assert "x" in answers[13].json()["error"]["fields"]
    for j in range(requests_sent):
        if j == 13:
            continue
        assert answers[j].status_code == 200, answers[j].text
        got = ParquetCodec.decode(answers[j].content, "prediction")
        assert got["label"].tolist() == local.predict(frames[j]).tolist(), j

    after = _batch_counts(stack)
    messages, carried = after[0] - before[0], after[1] - before[1]
    assert carried >= requests_sent  # every request went in some message (the bad one twice)
    assert messages < requests_sent, f"{messages} messages for {requests_sent} concurrent requests: nothing was coalesced"


def test_json_predicts_with_their_own_index_keep_it(stack: Stack, tmp_path: Any) -> None:
    rng = np.random.default_rng(8)
    x = pd.DataFrame(rng.normal(size=(60, 3)), columns=["p", "q", "r"])
    y = (x["p"] > 0).astype(int).to_frame("label")
    url = stack.family_url("logreg")
    r = requests.put(url, data=encode_training(x, y), params={"name": "coalesce-index"}, headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 200, r.text
    key = r.json()["model_key"]
    stack.wait_finished("logreg", key)
    part = x.iloc[10:14]
    body = {"model_key": key, "x": part.to_json(orient="split"), "orient": "split"}
    r = requests.post(url, json=body, timeout=30)
    assert r.status_code == 200, r.text
    got = pd.read_json(__import__("io").StringIO(r.json()["data"]), orient="split")
    assert got.index.tolist() == [10, 11, 12, 13]
    assert got["label"].tolist() == LogisticRegression().fit(x, y["label"]).predict(part).tolist()
