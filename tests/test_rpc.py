"""The predict RPC on both sides when the connection drops: the gateway's waiting futures, the consumer's replies."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

import pytest

from contracts.errors import Unavailable
from contracts.settings import Settings
from gateway.rpc import Broker


def test_a_connection_lost_during_the_publish_leaves_no_unretrieved_exception() -> None:
    """The caller gets the publish's 503; the reply future that the lost connection failed meanwhile is
    not left for asyncio to log as "Future exception was never retrieved" (an ERROR line per outage)."""

    async def go() -> list[dict[str, Any]]:
        unretrieved: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unretrieved.append(context))
        broker = Broker(Settings.from_env({}))
        broker.reply_queue = SimpleNamespace(name="replies")  # type: ignore[assignment]

        async def publish_while_the_connection_drops(message: Any, routing_key: str, what: str) -> None:
            broker._on_close(None, "connection reset")  # the broker's close callback, mid-publish
            raise Unavailable(f"the broker is unavailable; the {what} was not accepted")

        broker._publish = publish_while_the_connection_drops  # type: ignore[method-assign]
        with pytest.raises(Unavailable, match="was not accepted"):
            await broker.call("logreg", b"", {}, timeout=1.0)
        gc.collect()  # asyncio reports an unretrieved exception when its future is collected
        await asyncio.sleep(0)
        return unretrieved

    assert asyncio.run(go()) == []


class ReopeningChannel:
    """A reply channel that is closed until `reopens_at` (loop time), as aio-pika's is while it restores it."""

    def __init__(self, reopens_at: float) -> None:
        self.reopens_at = reopens_at

    @property
    def is_closed(self) -> bool:
        return asyncio.get_running_loop().time() < self.reopens_at


def test_a_consumer_answers_once_its_reply_channel_is_back_within_the_predicts_time_to_live() -> None:
    """After a reconnect a predict can arrive before the consumer's reply channel is reopened: its answer
    waits for the channel (lost otherwise, its caller waiting for a 504), but no longer than the predict lives."""
    from consumers.worker import Consumer

    async def go() -> tuple[float, float]:
        consumer = Consumer(Settings.from_env({"ML_SERVER_SECRET": "s" * 32, "ML_SERVER_DATABASE_URL": "sqlite://"}), [])
        loop = asyncio.get_running_loop()
        began = loop.time()
        consumer.reply_channel = ReopeningChannel(began + 0.3)  # type: ignore[assignment]
        await consumer._reply_channel_open(expiration=5.0)
        back = loop.time() - began
        consumer.reply_channel = ReopeningChannel(float("inf"))  # type: ignore[assignment]
        began = loop.time()
        await consumer._reply_channel_open(expiration=0.2)
        return back, loop.time() - began

    back, gave_up = asyncio.run(go())
    assert 0.3 <= back < 1.0, back
    assert 0.2 <= gave_up < 1.0, gave_up
