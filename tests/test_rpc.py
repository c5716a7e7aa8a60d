"""The gateway's predict RPC bookkeeping: what happens to a waiting reply when the connection drops."""

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
