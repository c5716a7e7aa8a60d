"""A list of brokers: parsing it, and connections that move to the next node when theirs is lost.

The nodes here are two TCP proxies in front of the one test broker: cutting a
proxy is, for a client, what losing its node is. (tests/faults/test_cluster.py
does it with a real three-node cluster.)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection

from contracts import brokers
from contracts.settings import Settings, SettingsError

from .proxy import TcpProxy
from .stack import BROKER_URL, free_port

BROKER = tuple(BROKER_URL.rsplit("@", 1)[1].split("/")[0].split(":"))


def via(proxy: TcpProxy | int) -> str:
    port = proxy.port if isinstance(proxy, TcpProxy) else proxy
    return BROKER_URL.replace(f":{BROKER[1]}/", f":{port}/")


@pytest.fixture
def proxies() -> Iterator[list[TcpProxy]]:
    started = [TcpProxy((BROKER[0], int(BROKER[1]))) for _ in range(2)]
    for p in started:
        p.start()
    try:
        yield started
    finally:
        for p in started:
            p.cut()


def test_a_broker_list_is_split_in_order_without_repeats() -> None:
    assert brokers.split(" amqp://a:5672/ ,amqps://u:p@b/vh,amqp://a:5672/,") == ["amqp://a:5672/", "amqps://u:p@b/vh"]
    with pytest.raises(brokers.BrokerURLError, match="no broker URL"):
        brokers.split(" , ")


def test_a_bad_entry_names_the_setting_and_hides_its_password() -> None:
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"ML_SERVER_BROKER_URL": "amqp://a/,http://user:hunter2@b/"})
    assert "ML_SERVER_BROKER_URL" in str(e.value) and "hunter2" not in str(e.value), e.value
    settings = Settings.from_env({"ML_SERVER_BROKER_URL": "amqp://a/, amqp://b/", "ML_SERVER_DATA_DIR": "/tmp"})
    assert settings.broker_url == "amqp://a/,amqp://b/"


@pytest.mark.parametrize(
    ("queue_type", "url", "quorum"),
    [
        ("auto", "amqp://a/", False),
        ("auto", "amqp://a/,amqp://b/", True),
        ("classic", "amqp://a/,amqp://b/", False),
        ("quorum", "amqp://a/", True),
    ],
)
def test_predict_queues_are_quorum_queues_on_a_cluster(queue_type: str, url: str, quorum: bool) -> None:
    settings = Settings.from_env({"ML_SERVER_BROKER_URL": url, "ML_SERVER_PREDICT_QUEUE_TYPE": queue_type, "ML_SERVER_DATA_DIR": "/tmp"})
    assert brokers.quorum_predicts(settings.predict_queue_type, settings.broker_url) is quorum
    with pytest.raises(SettingsError, match="ML_SERVER_PREDICT_QUEUE_TYPE"):
        Settings.from_env({"ML_SERVER_PREDICT_QUEUE_TYPE": "mirrored"})


async def _round_trip(connection: AbstractConnection) -> bytes:
    """Publish to a queue of our own and get the message back: the connection works."""
    channel = await connection.channel()
    queue = await channel.declare_queue(f"test-brokers-{uuid.uuid4().hex[:8]}", auto_delete=True)
    await channel.default_exchange.publish(aio_pika.Message(b"ping"), routing_key=queue.name)
    for _ in range(100):
        message = await queue.get(fail=False)
        if message is not None:
            await message.ack()
            await queue.delete()
            return message.body
        await asyncio.sleep(0.05)
    raise AssertionError("the message did not come back")


def test_a_connection_starts_on_the_first_node_that_answers_and_moves_on_when_it_is_lost(proxies: list[TcpProxy]) -> None:
    down = free_port()  # nothing listens there: the first node of the list is down

    async def scenario() -> list[str]:
        connection = await brokers.connect([via(down), via(proxies[0]), via(proxies[1])], "test brokers", deadline=30)
        try:
            seen = [str(connection.url.port)]
            assert await _round_trip(connection) == b"ping"
            reconnected = asyncio.Event()
            connection.reconnect_callbacks.add(lambda *_: reconnected.set())
            proxies[0].cut()  # the node it is connected to is lost
            # aio-pika tries the next node at once; channels opened before work again once it is back.
            await asyncio.wait_for(reconnected.wait(), 30)
            seen.append(str(connection.url.port))
            assert await _round_trip(connection) == b"ping"
            assert connection.reconnect_interval == brokers.RECONNECT_INTERVAL  # another node: no 5 s pause
            return seen
        finally:
            await connection.close()

    assert asyncio.run(scenario()) == [str(proxies[0].port), str(proxies[1].port)]


def test_a_call_whose_connection_is_lost_runs_again_on_the_next_node(proxies: list[TcpProxy]) -> None:
    attempts: list[int] = []

    async def op(connection: AbstractConnection, left: float) -> bytes:
        attempts.append(int(connection.url.port or 0))
        if len(attempts) == 1:
            closed = brokers.lost(connection)
            proxies[0].cut()  # lost while the op waits for something
            await asyncio.wait_for(closed, 10)
        return await _round_trip(connection)

    began = time.monotonic()
    assert asyncio.run(brokers.call([via(proxies[0]), via(proxies[1])], op, deadline=20)) == b"ping"
    assert attempts == [proxies[0].port, proxies[1].port]
    assert time.monotonic() - began < 15


def test_the_settings_accept_a_list_only_of_amqp_urls(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="is not an amqp"):
        Settings.from_env({"ML_SERVER_BROKER_URL": "localhost:5672", "ML_SERVER_DATA_DIR": str(tmp_path)})
