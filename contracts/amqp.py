"""The broker side of the topology: connecting, and declaring what `topology` names.

The gateway, the consumers and the tests declare the same exchanges and
queues with the same arguments through these functions, so a declaration
can't differ between them (RabbitMQ closes the channel of a declaration that
does).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue, AbstractRobustConnection
from aiormq.exceptions import AMQPError

from . import brokers
from .topology import IMPORT_QUEUE_LENGTH, Topology

log = logging.getLogger(__name__)

# What a failed connection attempt raises: the broker is not there (yet), or refused us.
CONNECT_ERRORS = brokers.CONNECT_ERRORS


async def connect(
    url: str, name: str, deadline: float = 60.0, stopping: Callable[[], bool] = lambda: False
) -> AbstractRobustConnection:
    """A robust connection named `name` (as the broker lists it) to the first node of `url` (one AMQP URL,
    or several, comma-separated: the nodes of a cluster) that answers, retried for `deadline` seconds
    (the broker may start after us); once connected, aio-pika reconnects by itself, to the next node
    when its own is lost (`brokers`). The last error is raised when the deadline passes or `stopping()`
    turns true."""
    return await brokers.connect(brokers.split(url), name, deadline, stopping)


@dataclass
class Exchanges:
    jobs: AbstractExchange
    events: AbstractExchange
    dead: AbstractExchange


async def declare_exchanges(channel: AbstractChannel, topology: Topology) -> Exchanges:
    """The three durable exchanges: jobs (direct), events (topic), dead letters (direct)."""
    return Exchanges(
        jobs=await channel.declare_exchange(topology.jobs_exchange, aio_pika.ExchangeType.DIRECT, durable=True),
        events=await channel.declare_exchange(topology.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True),
        dead=await channel.declare_exchange(topology.dead_exchange, aio_pika.ExchangeType.DIRECT, durable=True),
    )


async def declare_train(channel: AbstractChannel, topology: Topology, family: str, max_length: int) -> AbstractQueue:
    """A family's train queue (quorum, dead-lettered) and its dead-letter queue, bound.

    `max_length` must be the same in every process of a deployment (ML_SERVER_MAX_TRAIN_QUEUE)."""
    x = await declare_exchanges(channel, topology)
    dead = await channel.declare_queue(topology.dead_queue(family), durable=True, arguments=topology.dead_queue_arguments())
    await dead.bind(x.dead, topology.train_key(family))
    train = await channel.declare_queue(
        topology.train_queue(family), durable=True, arguments=topology.train_queue_arguments(max_length)
    )
    await train.bind(x.jobs, topology.train_key(family))
    return train


async def declare_predict(
    channel: AbstractChannel, topology: Topology, family: str, max_length: int, quorum: bool = False
) -> AbstractQueue:
    """A family's predict queue, bound (ML_SERVER_MAX_PREDICT_QUEUE and its type, `quorum_predicts`:
    the same in every process)."""
    predict = await channel.declare_queue(
        topology.predict_queue(family), durable=True, arguments=topology.predict_queue_arguments(max_length, quorum)
    )
    await predict.bind(topology.jobs_exchange, topology.predict_key(family))
    return predict


async def declare_imports(channel: AbstractChannel, topology: Topology, family: str, quorum: bool = False) -> AbstractQueue:
    """A family's import queue, bound: model files wait here for a fit process, not in the predicts' queue."""
    queue = await channel.declare_queue(
        topology.import_queue(family), durable=True, arguments=topology.predict_queue_arguments(IMPORT_QUEUE_LENGTH, quorum)
    )
    await queue.bind(topology.jobs_exchange, topology.import_key(family))
    return queue


@dataclass(frozen=True)
class QueueState:
    messages: int  # ready to be delivered
    consumers: int


async def inspect(connection: AbstractConnection, queues: Iterable[str]) -> dict[str, QueueState]:
    """Messages and consumers of each queue, from passive declares (a queue that does not exist is left out).

    A passive declare of a missing queue closes its channel, so this uses channels of its own."""
    states: dict[str, QueueState] = {}
    channel: AbstractChannel | None = None
    try:
        for queue in queues:
            if channel is None or channel.is_closed:
                channel = await connection.channel(publisher_confirms=False)
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except AMQPError as e:  # NOT_FOUND: no such queue
                log.debug("queue %s not inspected: %s", queue, e)
                continue
            result = declared.declaration_result
            states[queue] = QueueState(int(result.message_count or 0), int(result.consumer_count or 0))
    finally:
        if channel is not None and not channel.is_closed:
            await channel.close()
    return states


async def settle(op: Awaitable[Any]) -> None:
    """Ack, nack or reject a delivery; on a channel that died under us, leave the job to redelivery.

    (After a reconnect, settling a delivery of the old channel fails: the broker
    has already put the message back in its queue.)"""
    try:
        await op
    except (AMQPError, ConnectionError, RuntimeError) as e:
        log.warning("could not settle a delivery (%s); the broker will redeliver it", e)


async def delete_namespace(
    connection: AbstractConnection, topology: Topology, families: Iterable[str], queues: Iterable[str] = (), exchanges: Iterable[str] = ()
) -> None:
    """Delete what a namespace declares on the broker: its families' queues, and its
    exchanges (with `queues`/`exchanges` of the caller's own). Jobs waiting in those queues are deleted too.
    Reply and event queues are exclusive: they go with their connections."""
    channel = await connection.channel(publisher_confirms=False)
    for family in families:
        for name in topology.family_queues(family):
            await channel.queue_delete(name)
    for name in queues:
        await channel.queue_delete(name)
    for name in (topology.jobs_exchange, topology.events_exchange, topology.dead_exchange, *exchanges):
        await channel.exchange_delete(name)
    await channel.close()
