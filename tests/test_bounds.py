"""Parquet bodies that inflate past the caps are refused from their footers, on every road, without the memory.

Two bombs made here: 100 million rows of zeros in 100 row groups (the rows cap), and a million rows of two 2 KiB strings
that declare 4 GB once decoded (the decoded-bytes cap); each is about 0.5 MiB of zstd. Both go
to fit, update and predict over REST and to fit and predict straight over AMQP; the peak resident
memory (VmHWM) of the gateway and of the consumer is read before and after.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from pathlib import Path

import aio_pika
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from contracts import frames
from contracts.errors import DecodeError, PayloadTooLarge
from contracts.frames import PARQUET
from contracts.pandas_json import parse
from contracts.messages import PredictHeaders, TrainHeaders, read_reply
from contracts.settings import Settings, SettingsError
from contracts.status import JobKind
from contracts.topology import MessageType, Topology

from .stack import BROKER_URL, Stack, wait_for

MiB = 2**20
# How far the peak resident memory of the gateway or the consumer may rise while the bombs are
# refused: a few copies of the bombs' own bytes and the work of the requests around them. Each bomb
# would take 1.6 or 4 GB decoded.
GROWTH_ALLOWED = 64 * MiB


def _write(table: pa.Table, groups: int) -> bytes:
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, compression="zstd", use_dictionary=False, write_statistics=False) as writer:
        for _ in range(groups):
            writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


@functools.cache
def rows_bomb() -> bytes:
    """100 row groups of a million rows of two float64 columns of zeros: 100 million rows, 1.6 GB decoded."""
    return _write(pa.table({"a": np.zeros(1_000_000), "b": np.zeros(1_000_000)}), 100)


@functools.cache
def bytes_bomb() -> bytes:
    """200 row groups of 5,000 rows of two 2 KiB strings: a million rows (under the rows cap), 4 GB decoded."""
    return _write(pa.table({"a": pa.array(["x" * 2048] * 5_000), "b": pa.array(["y" * 2048] * 5_000)}), 200)


BOMBS = {"rows": rows_bomb, "bytes": bytes_bomb}


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_the_bombs_are_small_and_declare_what_they_inflate_to() -> None:
    for make in BOMBS.values():
        blob = make()
        meta = pq.ParquetFile(pa.BufferReader(blob)).metadata
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        assert len(blob) < 4 * MiB and declared > frames.MAX_FRAME_BYTES, (len(blob), declared)


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_bomb_is_refused_from_its_footer_in_the_codec(bomb: str) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        frames.ParquetCodec.decode_table(BOMBS[bomb]())
    assert caught.value.fields == {"x": [caught.value.fields["x"][0]]}
    assert ("ML_SERVER_MAX_ROWS" if bomb == "rows" else "ML_SERVER_MAX_FRAME_BYTES") in caught.value.message
    with pytest.raises(PayloadTooLarge):
        frames.rows_from_parquet(BOMBS[bomb](), 10_000)
    with pytest.raises(PayloadTooLarge):
        frames.decode_training(BOMBS[bomb]())


def test_a_seed_frame_inside_json_is_capped_before_it_is_parsed() -> None:
    text = pd.DataFrame({"a": range(1000)}).to_json()
    before = (frames.MAX_COLUMNS, frames.MAX_ROWS, frames.MAX_FRAME_BYTES, frames.MAX_JSON_FRAME)
    frames.set_limits(columns=before[0], rows=before[1], frame_bytes=before[2], json_frame=len(text) - 1)
    try:
        with pytest.raises(PayloadTooLarge) as caught:
            parse(text + "x", "x")  # not even valid JSON: refused on its length, never parsed
        assert "ML_SERVER_MAX_JSON_FRAME" in caught.value.message and "x" in (caught.value.fields or {})
        frames.set_limits(columns=before[0], rows=before[1], frame_bytes=before[2], json_frame=len(text) + 1)
        assert parse(text, "x")["a"]["0"] == 0
        with pytest.raises(DecodeError):
            parse(text + "x", "x")
    finally:
        frames.set_limits(columns=before[0], rows=before[1], frame_bytes=before[2], json_frame=before[3])


def test_a_short_secret_is_refused_at_start() -> None:
    base = {"ML_SERVER_DATABASE_URL": "sqlite://"}
    with pytest.raises(SettingsError, match="ML_SERVER_SECRET is shorter than 16 bytes"):
        Settings.from_env({**base, "ML_SERVER_SECRET": "s" * 15})
    assert Settings.from_env({**base, "ML_SERVER_SECRET": "s" * 16}).signing_key() == b"s" * 16


async def _publish(stack: Stack, family: str, body: bytes, *, predict_key: str | None = None, fit_key: str | None = None) -> bytes | None:
    """A fit (no answer) or a predict (the reply's body, or its error raised) straight to the broker."""
    topology = Topology(stack.namespace)
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(topology.jobs_exchange)
        if fit_key is not None:
            headers = TrainHeaders().dump({"model_key": fit_key, "family": family, "kind": JobKind.FIT, "modkwargs": {}, "algkwargs": {}})
            message = aio_pika.Message(
                body, headers={k: v for k, v in headers.items() if v is not None}, content_type=PARQUET, type=JobKind.FIT.value,
                message_id=uuid.uuid4().hex, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key=topology.train_key(family), mandatory=True)
            return None
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        answer: asyncio.Future[aio_pika.abc.AbstractIncomingMessage] = asyncio.get_running_loop().create_future()

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if not answer.done():
                answer.set_result(message)

        await replies.consume(on_reply, no_ack=True)
        headers = PredictHeaders().dump({"model_key": predict_key, "version": None, "alias": None, "kwargs": {}})
        await exchange.publish(
            aio_pika.Message(
                body, headers={k: v for k, v in headers.items() if v is not None}, content_type=PARQUET, type=MessageType.PREDICT,
                correlation_id=uuid.uuid4().hex, reply_to=replies.name, expiration=30,
            ),
            routing_key=topology.predict_key(family),
            mandatory=True,
        )
        reply = await asyncio.wait_for(answer, 30)
        return read_reply(reply.headers or {}, reply.body)


@pytest.fixture(scope="module")
def normal_model(stack: Stack) -> str:
    x = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    y = pd.DataFrame({"t": (x["a"] > 20).astype(int)})
    r = requests.put(stack.family_url("logreg"), json={"x": x.to_json(), "y": y.to_json(), "orient": "columns"}, timeout=30)
    assert r.status_code == 200, r.text
    key = str(r.json()["model_key"])
    assert stack.wait_finished("logreg", key, timeout=120)["status"] == "done"
    return key


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_parquet_bombs_are_refused_on_every_road_without_the_memory(stack: Stack, normal_model: str, bomb: str) -> None:
    blob = BOMBS[bomb]()
    cap = "ML_SERVER_MAX_ROWS" if bomb == "rows" else "ML_SERVER_MAX_FRAME_BYTES"
    assert stack.gateway is not None
    pids = {"gateway": stack.gateway.pid, "consumer": stack.consumers[0][1].pid}
    before = {name: peak_rss(pid) for name, pid in pids.items()}
    headers = {"Content-Type": PARQUET}

    # REST: fit, update and predict, on the seed's routes and ml-server's own.
    answers = [
        requests.put(stack.family_url("logreg"), data=blob, headers=headers, timeout=60),
        requests.post(stack.fit_url("logreg"), data=blob, headers=headers, timeout=60),
        requests.patch(stack.family_url("logreg"), params={"model_key": normal_model}, data=blob, headers=headers, timeout=60),
        requests.post(stack.family_url("logreg"), params={"model_key": normal_model}, data=blob, headers=headers, timeout=60),
        requests.post(stack.model_url(normal_model, "predict"), data=blob, headers=headers, timeout=60),
    ]
    for r in answers:
        assert r.status_code == 413, (r.request.method, r.request.url, r.status_code, r.text)
        error = r.json()["error"]
        assert error["code"] == "payload_too_large" and cap in error["message"] and "x" in error["fields"], error

    # Straight over AMQP: the predict is answered 413, the fit fails saying why (and no fit process decodes it).
    with pytest.raises(PayloadTooLarge, match=cap):
        asyncio.run(_publish(stack, "logreg", blob, predict_key=normal_model))
    key = f"bomb-{bomb}-{uuid.uuid4().hex[:8]}"
    asyncio.run(_publish(stack, "logreg", blob, fit_key=key))
    state = wait_for(lambda: requests.get(stack.model_url(key), timeout=10).ok and stack.wait_finished("logreg", key), 60, what="the bomb's fit")
    assert state["status"] == "failed" and cap in state["error"], state

    # Memory, measured: neither process came near what the bomb declares.
    after = {name: peak_rss(pid) for name, pid in pids.items()}
    for name in pids:
        grew = after[name] - before[name]
        assert grew < GROWTH_ALLOWED, f"{name}'s peak resident memory grew by {grew / MiB:.0f} MiB (from {before[name] / MiB:.0f} MiB)"
    # And the consumer still answers.
    x = pd.DataFrame({"a": [1.0, 30.0], "b": [0.0, 1.0]})
    r = requests.post(stack.family_url("logreg"), json={"model_key": normal_model, "x": x.to_json(), "orient": "columns"}, timeout=30)
    assert r.status_code == 200, r.text
