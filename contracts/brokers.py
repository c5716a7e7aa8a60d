"""Several brokers (the nodes of a RabbitMQ cluster) behind one setting.

`ML_SERVER_BROKER_URL` holds one AMQP URL or a comma-separated list of them.
Every process connects to the first node that answers; when its connection
is lost (the node stopped, or the network between them broke) the next
attempt goes to the next node of the list, round and round, so a process
follows the cluster instead of waiting for its node to come back.

aio-pika's robust connection takes one URL. `ClusterConnection` is that
connection with a list: each failed attempt and each lost connection end in
`_on_connection_close` (aio-pika reports a failed attempt there too), and
that is where the URL of the next attempt is chosen. Channels, queues,
bindings and consumers are restored on the new node by aio-pika as after any
reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import ChannelInvalidStateError
from aio_pika.robust_connection import RobustConnection
from aiormq.exceptions import AMQPError
from yarl import URL

log = logging.getLogger(__name__)

# What a failed connection attempt raises: the broker is not there (yet), or refused us.
CONNECT_ERRORS = (AMQPError, ConnectionError, OSError, asyncio.TimeoutError)

# Seconds an attempt to reach one node may take before the next one is tried.
CONNECT_TIMEOUT = 10.0
# Seconds between a failed attempt and the next, with several nodes (aio-pika's default, 5, with one).
RECONNECT_INTERVAL = 1.0

T = TypeVar("T")


class BrokerURLError(ValueError):
    """A broker list with an entry that is not an AMQP URL (the message never shows a password)."""


def split(raw: str) -> list[str]:
    """The URLs of a broker list (`amqp://a:5672/,amqp://b:5672/`), in order, without repeats."""
    urls = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not urls:
        raise BrokerURLError("no broker URL given")
    for url in urls:
        parsed = URL(url)
        if parsed.scheme not in ("amqp", "amqps") or not parsed.host:
            raise BrokerURLError(f"{masked(url)!r} is not an amqp:// or amqps:// URL with a host")
    return urls


def quorum_predicts(queue_type: str, broker_url: str) -> bool:
    """Whether predict queues are quorum queues (ML_SERVER_PREDICT_QUEUE_TYPE): `quorum`, or `auto`
    with a broker list of several nodes. (Train and dead-letter queues are quorum queues always.)"""
    if queue_type == "auto":
        return len(split(broker_url)) > 1
    return queue_type == "quorum"


def masked(url: str | URL) -> str:
    """A URL fit for a log line: its password replaced."""
    parsed = URL(str(url))
    return str(parsed.with_password("******")) if parsed.password else str(parsed)


class ClusterConnection(RobustConnection):
    """A robust connection to one node of a cluster at a time, moving to the next node of `urls`
    whenever its connection is lost or an attempt fails."""

    def __init__(self, urls: Sequence[str], start: int = 0, **kwargs: Any) -> None:
        self.urls = [URL(u) for u in urls]
        self.index = start % len(self.urls)
        if len(self.urls) > 1 and "reconnect_interval" not in self.urls[self.index].query:
            # The next attempt goes to another node: no point in aio-pika's 5 s pause before it.
            kwargs.setdefault("reconnect_interval", RECONNECT_INTERVAL)
        super().__init__(self.urls[self.index], **kwargs)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        await super()._on_connection_close(closing)
        if len(self.urls) > 1 and not (self._close_called or self.is_closed):
            lost = self.url
            self.index = (self.index + 1) % len(self.urls)
            # Each node is reached with its own entry (its credentials, its vhost, its TLS options).
            self.url = self.urls[self.index]
            log.info("broker %s lost or not answering; the next attempt goes to %s", masked(lost), masked(self.url))


async def connect(
    urls: Sequence[str], name: str, deadline: float = 60.0, stopping: Callable[[], bool] = lambda: False
) -> ClusterConnection:
    """A robust connection named `name` (as the broker lists it) to the first of `urls` that answers,
    every node tried in turn for `deadline` seconds (the brokers may start after us); once connected,
    it reconnects by itself, to the next node when its own is lost. The last error is raised when
    the deadline passes or `stopping()` turns true."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    index = 0
    while True:
        connection = ClusterConnection(urls, index, client_properties={"connection_name": name})
        try:
            await connection.connect(timeout=CONNECT_TIMEOUT)
            log.info("%r connected to %s", name, masked(connection.url))
            return connection
        except CONNECT_ERRORS as e:
            await connection.close()
            index = (index + 1) % len(urls)
            if loop.time() > give_up or stopping():
                raise
            if index == 0:  # every node tried: wait before the next round
                log.warning("no broker reachable yet (%s); retrying", e)
                await asyncio.sleep(1)
            else:
                log.warning("broker %s not reachable (%s); trying %s", masked(urls[index - 1]), e, masked(urls[index]))


# What ends an attempt of `call` and sends it to the next node: the connection failed or was lost.
LOST = (ConnectionError, OSError, asyncio.TimeoutError, ChannelInvalidStateError)


async def call(urls: Sequence[str], op: Callable[[AbstractConnection, float], Awaitable[T]], deadline: float) -> T:
    """`await op(connection, seconds_left)` on a plain (not robust) connection to the first of `urls`
    that answers; when that connection fails before `op` is done, `op` runs again on the next node,
    until `deadline` seconds have passed. `op` must be safe to run twice (a publish with a message id
    that makes a second one a no-op, a predict), and should raise `ConnectionError` when its
    connection is lost while it waits (`lost(connection)`)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    index = 0
    while True:
        url = urls[index]
        try:
            connection = await aio_pika.connect(url, timeout=min(CONNECT_TIMEOUT, max(0.1, give_up - loop.time())))
            async with connection:
                return await op(connection, max(0.0, give_up - loop.time()))
        except LOST as e:
            index = (index + 1) % len(urls)
            if loop.time() >= give_up:
                raise
            log.warning("broker %s failed (%s); trying %s", masked(url), e, masked(urls[index]))
            if index == 0:  # every node tried: wait a little before the next round
                await asyncio.sleep(min(1.0, max(0.0, give_up - loop.time())))


def lost(connection: AbstractConnection) -> asyncio.Future[None]:
    """A future that fails with `ConnectionError` when `connection` closes (to wait on beside a reply)."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_close(_connection: Any = None, reason: Any = None) -> None:
        if not future.done():
            future.set_exception(ConnectionError(f"the connection to the broker closed ({reason})"))

    connection.close_callbacks.add(on_close)
    return future
