"""Prometheus metrics: the gateway's /metrics and a consumer's own /metrics port, against the real stack."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import new_token
from commands.main import metrics_ports

from .proxy import TcpProxy
from .stack import Stack, free_port, wait_for

pytestmark = pytest.mark.integration

BROKER = ("127.0.0.1", 5672)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page, keyed by (sample name, labels)."""
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sample with exactly these labels (histogram buckets aside), 0 when it is not there yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def data(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    return x, (x["a"] + x["b"] > 0).astype(int).rename("t")


def fit(stack: Stack, name: str, modkwargs: dict[str, float] | None = None) -> dict[str, object]:
    x, y = data(60, seed=len(name))
    r = requests.put(
        stack.family_url("logreg"),
        json={"x": x.to_json(), "y": y.to_frame().to_json(), "name": name, "modkwargs": modkwargs or {}},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["status"] == "Queued", r.text  # the seed's PUT
    return stack.wait_finished("logreg", r.json()["model_key"])


def predict(stack: Stack, model_key: str, rows: int, own_index: bool = False) -> None:
    x, _ = data(rows, seed=rows)
    if own_index:  # answered with that index, so sent alone, never coalesced with others
        x.index += 100
    r = requests.post(stack.family_url("logreg"), json={"model_key": model_key, "x": x.to_json()}, timeout=30)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def metered(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """A gateway and one logreg consumer serving /metrics on a known port."""
    s = Stack(database_url, tmp_path_factory.mktemp("metrics"))
    port = free_port()
    try:
        s.start_consumer("logreg", ML_SERVER_METRICS_PORT=str(port))
        s.start_gateway()
        yield s, f"http://127.0.0.1:{port}/metrics"
    finally:
        s.stop()


def test_gateway_counts_predicts_times_them_and_reports_queue_depth(metered: tuple[Stack, str]) -> None:
    stack, _ = metered
    trained = fit(stack, f"{stack.namespace}-gateway")
    assert trained["status"] == "done", trained
    url = f"{stack.url}/metrics"
    predict_200 = {"family": "logreg", "verb": "predict", "status": "200"}

    before = scrape(url)
    sent, rows = 7, 3
    for i in range(sent):
        predict(stack, trained["model_key"], rows, own_index=i == 0)
    assert requests.post(stack.family_url("nosuchfamily"), json={}, timeout=10).status_code == 404
    after = scrape(url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ml_server_gateway_requests_total", **predict_200) == sent
    assert delta("ml_server_gateway_request_seconds_count", family="logreg", verb="predict") == sent
    assert delta("ml_server_gateway_request_seconds_sum", family="logreg", verb="predict") > 0
    assert delta("ml_server_gateway_requests_total", family="none", verb="predict", status="404") == 1
    # Each predict message carries whole requests: however they were batched, the sums add up.
    assert delta("ml_server_gateway_predict_batch_requests_sum") == sent
    assert delta("ml_server_gateway_predict_batch_rows_sum") == sent * rows
    assert 1 <= delta("ml_server_gateway_predict_batch_requests_count") <= sent
    # The status polls of the fit were counted too, and the scrape itself as `other`.
    assert value(after, "ml_server_gateway_requests_total", family="logreg", verb="status", status="200") >= 1
    assert value(after, "ml_server_gateway_requests_total", family="logreg", verb="fit", status="200") >= 1
    assert value(after, "ml_server_gateway_requests_total", family="none", verb="other", status="200") >= 1
    # Queue depths, read from the broker at scrape time: nothing waits once every predict was answered.
    assert ("ml_server_queue_messages", frozenset({"family": "logreg", "queue": "train"}.items())) in after
    assert value(after, "ml_server_queue_messages", family="logreg", queue="predict") == 0


def test_consumer_serves_fit_predict_and_cache_metrics(metered: tuple[Stack, str]) -> None:
    stack, url = metered
    fam = {"family": "logreg"}
    before = scrape(url)

    trained = fit(stack, f"{stack.namespace}-consumer")
    failed = fit(stack, f"{stack.namespace}-bad", {"C": -1.0})  # accepted, refused by the estimator
    assert trained["status"] == "done" and failed["status"] == "failed", (trained, failed)
    after_fits = scrape(url)

    def delta(now: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
        return value(now, name, **labels) - value(before, name, **labels)

    assert delta(after_fits, "ml_server_consumer_fits_total", **fam, kind="fit", outcome="done") == 1
    assert delta(after_fits, "ml_server_consumer_fits_total", **fam, kind="fit", outcome="failed") == 1
    assert delta(after_fits, "ml_server_consumer_fit_seconds_count", **fam, kind="fit") == 1
    assert delta(after_fits, "ml_server_consumer_fit_seconds_sum", **fam, kind="fit") > 0

    # The first predict loads the model (a miss), the next ones find it in memory.
    predict(stack, trained["model_key"], 4)
    first = scrape(url)
    assert delta(first, "ml_server_consumer_model_cache_total", **fam, result="miss") == 1
    assert delta(first, "ml_server_consumer_model_cache_total", **fam, result="hit") == 0
    for _ in range(3):
        predict(stack, trained["model_key"], 4)
    last = scrape(url)
    hits = delta(last, "ml_server_consumer_model_cache_total", **fam, result="hit")
    misses = delta(last, "ml_server_consumer_model_cache_total", **fam, result="miss")
    # A `done` event reaching the consumer after the first predict may drop the model once more.
    assert hits >= 2 and hits + misses == 4, (hits, misses)
    assert delta(last, "ml_server_consumer_predicts_total", **fam, status="200") == 4
    assert delta(last, "ml_server_consumer_predict_seconds_count", **fam) == 4
    assert delta(last, "ml_server_consumer_predict_rows_sum", **fam) == 16

    # An error reply is counted with its status.
    r = requests.post(stack.family_url("logreg"), json={"model_key": "logreg-missing", "x": data(2, 1)[0].to_json()}, timeout=30)
    assert r.status_code == 404, r.text
    assert delta(scrape(url), "ml_server_consumer_predicts_total", **fam, status="404") == 1


def test_gateway_metrics_answer_at_once_when_the_broker_is_cut_off(fresh_stack: Stack) -> None:
    s = fresh_stack
    proxy = TcpProxy(BROKER)
    proxy.start()
    try:
        s.start_consumer("logreg")  # the consumer talks to the broker directly and declares the queues
        s.start_gateway(ML_SERVER_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        depth = ("ml_server_queue_messages", frozenset({"family": "logreg", "queue": "predict"}.items()))
        wait_for(lambda: depth in scrape(f"{s.url}/metrics"), 30, what="queue depth gauge")
        proxy.cut()
        for _ in range(3):
            started = time.monotonic()
            samples = scrape(f"{s.url}/metrics")
            assert time.monotonic() - started < 3.0
            assert depth in samples  # the last value read
    finally:
        proxy.cut()


def test_gateway_metrics_need_a_read_token_when_tokens_are_set(fresh_stack: Stack) -> None:
    read, read_entry = new_token("read")
    fresh_stack.start_gateway(ML_SERVER_TOKENS=read_entry)
    url = f"{fresh_stack.url}/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {read}"}, timeout=10)
    assert r.status_code == 200 and "ml_server_gateway_requests_total" in r.text
    # The refused scrapes were counted as well.
    samples = {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(r.text) for s in f.samples
    }
    assert value(samples, "ml_server_gateway_requests_total", family="none", verb="other", status="401") == 2


def test_run_gives_each_consumer_its_own_metrics_port() -> None:
    assert metrics_ports(9464, ["consumer a", "consumer b", "consumer c"]) == {
        "consumer a": 9464,
        "consumer b": 9465,
        "consumer c": 9466,
    }
    assert set(metrics_ports(0, ["consumer a", "consumer b"]).values()) == {0}


def test_predicts_delivered_together_are_answered_by_one_call_each_with_its_own_rows(metered: tuple[Stack, str]) -> None:
    """Direct AMQP callers don't pass the gateway's coalescer: the consumer groups what it was delivered."""
    import asyncio
    import uuid

    import aio_pika
    from sklearn.linear_model import LogisticRegression

    from contracts.frames import PARQUET, ParquetCodec
    from contracts.messages import PredictJob, read_reply
    from contracts.topology import MessageType, Topology

    stack, url = metered
    trained = fit(stack, f"{stack.namespace}-grouped")
    x, y = data(60, seed=len(f"{stack.namespace}-grouped"))
    expected = LogisticRegression().fit(x, y)
    before = scrape(url)
    requests_ = [data(1 + i % 3, seed=100 + i)[0] for i in range(120)]
    bad = 7  # not Parquet: refused alone, the others still answered

    async def burst() -> dict[int, tuple[dict[str, object], bytes]]:
        t = Topology(stack.namespace)
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        async with connection:
            channel = await connection.channel()
            replies = await channel.declare_queue(exclusive=True, auto_delete=True)
            got: dict[int, tuple[dict[str, object], bytes]] = {}
            every = asyncio.get_running_loop().create_future()

            async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                got[int(message.correlation_id or -1)] = (dict(message.headers or {}), message.body)
                if len(got) == len(requests_) and not every.done():
                    every.set_result(None)

            await replies.consume(on_reply, no_ack=True)
            exchange = await channel.get_exchange(t.jobs_exchange)
            headers = PredictJob(str(trained["model_key"])).headers()
            for i, frame in enumerate(requests_):
                body = b"not parquet" if i == bad else ParquetCodec.encode(frame, index=False)
                message = aio_pika.Message(body, headers=headers, content_type=PARQUET, type=MessageType.PREDICT,
                                           correlation_id=str(i), reply_to=replies.name, message_id=uuid.uuid4().hex)
                await exchange.publish(message, routing_key=t.predict_key("logreg"))
            await asyncio.wait_for(every, 60)
            return got

    got = asyncio.run(burst())
    for i, frame in enumerate(requests_):
        headers, body = got[i]
        if i == bad:
            assert headers["x-status"] == 422, headers
            continue
        answer = ParquetCodec.decode(read_reply(headers, body))
        assert answer["t"].tolist() == expected.predict(frame).tolist(), i
    after = scrape(url)
    fam = {"family": "logreg"}
    calls = value(after, "ml_server_consumer_predict_group_messages_count", **fam) - value(before, "ml_server_consumer_predict_group_messages_count", **fam)
    messages = value(after, "ml_server_consumer_predict_group_messages_sum", **fam) - value(before, "ml_server_consumer_predict_group_messages_sum", **fam)
    assert messages == len(requests_)
    assert calls < messages, (calls, messages)  # some were answered together
