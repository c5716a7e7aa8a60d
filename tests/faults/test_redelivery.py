"""An update delivered again after its commit (or twice while queued) is applied once.

Fits delivered twice are covered in tests/test_lifecycle.py
(`test_duplicate_job_messages_yield_one_done_version`,
`test_duplicate_delivered_to_a_second_consumer_mid_fit`); this adds updates.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest
import requests
from sqlalchemy import select

from contracts.frames import PARQUET, encode_training
from contracts.messages import TrainHeaders
from contracts.status import JobKind
from contracts.store import Artifact
from contracts.topology import MessageType, Topology

from ..conftest import Stack
from ..stack import BROKER_URL, wait_queue_drained
from ..test_lifecycle import sessions_of, store
from .helpers import data, fit_body

pytestmark = pytest.mark.integration


def _publish_update_again(stack: Stack, session: dict, model_key: str, body: bytes, times: int = 1) -> None:
    headers = TrainHeaders().dump(
        {"job_id": session["id"], "model_key": model_key, "family": "sgd", "version": session["version"],
         "kind": JobKind.UPDATE, "modkwargs": {}, "algkwargs": {}}
    )

    async def send() -> None:
        connection = await aio_pika.connect(BROKER_URL)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(Topology(stack.namespace).jobs_exchange)
            for _ in range(times):
                await exchange.publish(
                    aio_pika.Message(body, headers={k: v for k, v in headers.items() if v is not None},
                                     content_type=PARQUET, type=MessageType.UPDATE,
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(session["id"])),
                    routing_key=Topology.train_key("sgd"),
                    mandatory=True,
                )
        finally:
            await connection.close()

    asyncio.run(send())


def test_update_redelivered_is_applied_once(stack: Stack) -> None:
    x, y = data(41)
    r = requests.post(stack.fit_url("sgd"), json=fit_body(x, y, name=f"{stack.namespace}-update-once", modkwargs={"random_state": 0}), timeout=30)
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]
    assert stack.wait_finished("sgd", key)["status"] == "done"

    x2, y2 = data(42)
    body = encode_training(x2, y2.to_frame())
    r = requests.post(stack.model_url(key, "update"), data=body, headers={"Content-Type": PARQUET}, timeout=30)
    assert r.status_code == 202 and r.json()["version"] == 2, r.text
    v2 = sessions_of(stack, key)[1]
    _publish_update_again(stack, v2, key, body, times=2)  # delivered twice more while queued or running
    state = stack.wait_finished("sgd", key, version=2)
    assert state["status"] == "done" and state["base_version"] == 1, state
    with store(stack) as engine, engine.connect() as conn:
        digest = conn.execute(select(Artifact.digest).where(Artifact.session_id == v2["id"])).scalar_one()

    _publish_update_again(stack, v2, key, body)  # redelivered after the commit (as if the ack was lost)
    wait_queue_drained(stack, "sgd")

    rows = sessions_of(stack, key)
    assert [(r["version"], r["kind"].value, r["status"].value, r["base_version"], r["artifacts"]) for r in rows] == [
        (1, "fit", "done", None, 1),
        (2, "update", "done", 1, 1),
    ]
    with store(stack) as engine, engine.connect() as conn:
        assert conn.execute(select(Artifact.digest).where(Artifact.session_id == v2["id"])).scalar_one() == digest
    assert stack.status("sgd", key)["version"] == 2
