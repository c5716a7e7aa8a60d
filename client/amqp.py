"""Talk to the consumers straight over RabbitMQ, without the gateway.

This module uses nothing but the message contract (`contracts`) and aio-pika;
it is the executable form of the contract in `GET /asyncapi.json` (docs/amqp.md).

    key = await publish_fit(url, "logreg", x, y, model_key="churn-v1")
    ...  # GET /logreg?model_key=churn-v1 or the status events say when it is done
    yhat = await predict(url, "logreg", "churn-v1", x)
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import pandas as pd
from aio_pika.abc import AbstractConnection

from contracts import brokers
from contracts.errors import DeadlineExceeded
from contracts.frames import PARQUET, ParquetCodec, encode_training
from contracts.messages import PredictJob, TrainJob, read_reply
from contracts.settings import Settings
from contracts.status import Backend, JobKind
from contracts.topology import MessageType, Topology


def _topology(namespace: str | None) -> Topology:
    """The deployment's names: the namespace given, or the one the settings read (ML_SERVER_NAMESPACE)."""
    return Topology(namespace if namespace is not None else Settings.from_env().namespace)


async def publish_fit(
    broker_url: str,
    family: str,
    x: pd.DataFrame,
    y: pd.DataFrame | pd.Series | None = None,
    *,
    model_key: str,
    name: str | None = None,
    modkwargs: dict[str, Any] | None = None,
    algkwargs: dict[str, Any] | None = None,
    kind: JobKind = JobKind.FIT,
    backend: Backend | None = None,
    namespace: str | None = None,
    message_id: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Publish a fit (or update) job; returns its message id. Publishing the same id again is a no-op.
    `namespace`: None reads ML_SERVER_NAMESPACE (default `ml-server`), as the gateway and consumers do.

    `broker_url` may list several nodes of a cluster, comma-separated: the job goes to the first that
    answers, and to the next if the connection is lost before the broker confirmed it (for `timeout` s)."""
    topology = _topology(namespace)
    if isinstance(y, pd.Series):
        y = y.to_frame()
    x = x.set_axis([str(c) for c in x.columns], axis=1)
    if y is not None:
        y = y.set_axis([str(c) for c in y.columns], axis=1)
    backend_ = Backend(backend) if backend is not None else None
    headers = TrainJob(model_key, family, kind, name=name, modkwargs=modkwargs or {}, algkwargs=algkwargs or {}, backend=backend_).headers()
    message_id = message_id or uuid.uuid4().hex
    body = encode_training(x, y)

    async def publish(connection: AbstractConnection, _left: float) -> None:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(topology.jobs_exchange)
        await exchange.publish(
            aio_pika.Message(
                body,
                headers=headers,
                content_type=PARQUET,
                type=kind.value,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=topology.train_key(family),
            mandatory=True,
        )

    # Lost before the broker confirmed: published again on the next node, under the same message id.
    await brokers.call(brokers.split(broker_url), publish, timeout)
    return message_id


async def predict(
    broker_url: str,
    family: str,
    model_key: str,
    x: pd.DataFrame,
    *,
    kwargs: dict[str, Any] | None = None,
    version: int | None = None,
    alias: str | None = None,
    timeout: float = 30.0,
    namespace: str | None = None,
) -> pd.DataFrame:
    """One predict as an RPC: our own exclusive reply queue, a correlation id, a deadline. `version` or
    `alias` (the `x-alias` header) picks the version; `namespace` as for `publish_fit`. With several brokers
    in `broker_url`, a predict whose connection is lost is asked again on the next node, within the same deadline."""
    topology = _topology(namespace)
    headers = PredictJob(model_key, version, alias, kwargs or {}).headers()
    body = ParquetCodec.encode(x.set_axis([str(c) for c in x.columns], axis=1))

    async def ask(connection: AbstractConnection, left: float) -> aio_pika.abc.AbstractIncomingMessage:
        correlation_id = uuid.uuid4().hex
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        answer: asyncio.Future[aio_pika.abc.AbstractIncomingMessage] = asyncio.get_running_loop().create_future()
        closed = brokers.lost(connection)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if message.correlation_id == correlation_id and not answer.done():
                answer.set_result(message)

        try:
            await replies.consume(on_reply, no_ack=True)
            exchange = await channel.get_exchange(topology.jobs_exchange)
            await exchange.publish(
                aio_pika.Message(
                    body,
                    headers=headers,
                    content_type=PARQUET,
                    type=MessageType.PREDICT,
                    correlation_id=correlation_id,
                    reply_to=replies.name,
                    expiration=max(left, 0.001),
                ),
                routing_key=topology.predict_key(family),
                mandatory=True,
            )
            # The reply, or the connection lost (then asked again on the next node), or the deadline.
            waiters: set[asyncio.Future[Any]] = {answer, closed}
            await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if answer.done():
                return answer.result()
            if closed.done():
                closed.result()  # raises ConnectionError
            raise DeadlineExceeded(f"no {family} consumer answered within {timeout:g}s")
        finally:
            closed.cancel()

    reply = await brokers.call(brokers.split(broker_url), ask, timeout)
    return ParquetCodec.decode(read_reply(reply.headers or {}, reply.body), what="prediction")
