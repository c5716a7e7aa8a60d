"""A job that kills its consumer every time ends failed, with the reason, in the dead-letter queue."""

from __future__ import annotations

import asyncio

import aio_pika
import numpy as np
import pandas as pd
import pytest
import requests

from consumers.training import MAX_ATTEMPTS
from contracts.topology import Topology

from .stack import BROKER_URL, Stack, wait_for

pytestmark = pytest.mark.integration


def queue_depth(name: str) -> int:
    async def ask() -> int:
        async with await aio_pika.connect(BROKER_URL) as connection:
            channel = await connection.channel()
            return int((await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0)

    return asyncio.run(ask())


def test_poison_job_is_dead_lettered_and_failed_after_bounded_attempts(fresh_stack: Stack) -> None:
    fresh_stack.start_consumer("tests.families_for_tests:killer")
    fresh_stack.start_gateway()
    x = pd.DataFrame(np.random.default_rng(1).normal(size=(40, 2)), columns=["a", "b"])
    y = pd.DataFrame({"t": (x["a"] > 0).astype(int)})
    r = requests.post(fresh_stack.fit_url("killer"), json={"x": x.to_json(), "y": y.to_json(), "name": "poison"}, timeout=30)
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]

    # Like `ml-server run` or a container orchestrator: a consumer that dies is replaced.
    deaths = 0

    def settled() -> dict | None:
        nonlocal deaths
        for family, proc in list(fresh_stack.consumers):
            if proc.poll() is not None:
                fresh_stack.consumers.remove((family, proc))
                deaths += 1
                fresh_stack.start_consumer("tests.families_for_tests:killer", wait=False)
        state = fresh_stack.status("killer", key)
        return state if state["status"] == "failed" else None

    state = wait_for(settled, 120, interval=0.3, what="the poison job failed")
    assert deaths == MAX_ATTEMPTS, deaths
    assert state["attempts"] == MAX_ATTEMPTS
    assert f"gave up after {MAX_ATTEMPTS} attempts" in state["error"] and "dead-letter" in state["error"], state
    dead = Topology(fresh_stack.namespace).dead_queue("killer")
    wait_for(lambda: queue_depth(dead) == 1, 30, what="the job in the dead-letter queue")
    # The consumer that refused it is alive and serving.
    assert all(proc.poll() is None for _, proc in fresh_stack.consumers)
