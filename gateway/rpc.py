"""The gateway's side of the broker: confirmed job publishing and predict RPC.

Train jobs are published persistent, mandatory, with publisher confirms, and
the gateway answers 202 only after the broker confirmed. Predicts go out with
a `reply_to` naming this process's exclusive reply queue, a `correlation_id`,
and an `expiration` equal to the caller's deadline; replies are matched to
waiting futures by correlation id. Every future has a timeout and is removed
on reply, on timeout and when the connection drops. (aio-pika's
`patterns.RPC` pickles its payloads and has no timeout, so it is not used.)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq.exceptions import AMQPError

from contracts import amqp, brokers
from contracts.errors import DeadlineExceeded, Unavailable
from contracts.events import event_headers
from contracts.frames import PARQUET
from contracts.settings import Settings
from contracts.topology import Header, MessageType, Topology

log = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], bytes]


class Broker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topology = Topology(settings.namespace)
        self.instance = uuid.uuid4().hex[:12]
        self.connection: AbstractRobustConnection | None = None
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._closing = False
        self.quorum_predicts = brokers.quorum_predicts(settings.predict_queue_type, settings.broker_url)

    async def connect(self, deadline: float = 60.0) -> None:
        try:
            self.connection = await amqp.connect(self.settings.broker_url, f"gateway {self.instance}", deadline)
        except amqp.CONNECT_ERRORS as e:
            raise Unavailable(f"cannot connect to the broker: {e}") from e
        self.connection.close_callbacks.add(self._on_close)
        log.info("connected to the broker as %r", f"gateway {self.instance}")
        self.channel: AbstractChannel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges = await amqp.declare_exchanges(self.channel, self.topology)
        self.jobs: AbstractExchange = exchanges.jobs
        self.events: AbstractExchange = exchanges.events
        # The queues of the families this deployment serves exist before their consumers do:
        # a fit for one whose consumer is still starting waits in its queue instead of being refused.
        s = self.settings
        for family in s.families:
            await amqp.declare_train(self.channel, self.topology, family, s.max_train_queue)
            await amqp.declare_predict(self.channel, self.topology, family, s.max_predict_queue, self.quorum_predicts)
            await amqp.declare_imports(self.channel, self.topology, family, self.quorum_predicts)
        self.reply_channel = await self.connection.channel(publisher_confirms=False)
        self.reply_queue = await self.reply_channel.declare_queue(
            self.topology.reply_queue(self.instance), exclusive=True, auto_delete=True
        )
        await self.reply_queue.consume(self._on_reply, no_ack=True)

    async def close(self) -> None:
        self._closing = True
        self._fail_pending(Unavailable("the gateway is shutting down"))
        if self.connection is not None:
            await self.connection.close()

    @property
    def ready(self) -> bool:
        return self.connection is not None and not self.connection.is_closed and not self.channel.is_closed

    async def inspect(self, queues: list[str]) -> dict[str, amqp.QueueState]:
        """Messages and consumers of each queue that exists (nothing while the broker is away)."""
        if not self.ready or self.connection is None:
            return {}
        return await amqp.inspect(self.connection, queues)

    async def consumers(self, families: list[str]) -> dict[str, bool]:
        """Whether each family has a consumer on both its train and its predict queue."""
        t = self.topology
        states = await self.inspect([q for f in families for q in (t.train_queue(f), t.predict_queue(f))])
        return {
            f: all(states.get(q, amqp.QueueState(0, 0)).consumers > 0 for q in (t.train_queue(f), t.predict_queue(f)))
            for f in families
        }

    async def publish_job(self, family: str, body: bytes, headers: dict[str, Any], kind: str) -> None:
        """Persistent, confirmed, mandatory; Unavailable (503) if that can't be had in time."""
        message = aio_pika.Message(
            body,
            headers=headers,
            content_type=PARQUET,
            type=kind,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(headers.get(Header.JOB_ID, "")),
        )
        await self._publish(message, self.topology.train_key(family), what=f"{kind} job")

    async def publish_event(self, family: str, model_key: str, event: dict[str, Any]) -> None:
        """Best effort: consumers use events only to drop cached models. `event` as `StatusEvent` loads it."""
        try:
            await asyncio.wait_for(
                self.events.publish(
                    aio_pika.Message(b"", headers=event_headers(self.topology.namespace, event), type=MessageType.STATUS),
                    self.topology.event_key(family, model_key),
                    mandatory=False,
                ),
                self.settings.publish_timeout,
            )
        except (AMQPError, ConnectionError, RuntimeError, asyncio.TimeoutError) as e:
            log.warning("event for %s not published: %s", model_key, e)

    async def call(
        self, family: str, body: bytes, headers: dict[str, Any], timeout: float, kind: str = MessageType.PREDICT
    ) -> Reply:
        """Publish a predict (or an import: `kind`) and wait for its reply, for `timeout` seconds at most."""
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            message = aio_pika.Message(
                body,
                headers=headers,
                content_type=PARQUET if kind == MessageType.PREDICT else "application/octet-stream",
                type=kind,
                correlation_id=correlation_id,
                reply_to=self.reply_queue.name,
                expiration=timeout,
            )
            key = self.topology.import_key(family) if kind == MessageType.IMPORT else self.topology.predict_key(family)
            await self._publish(message, key, what=kind)
            try:
                return await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"no {family} consumer answered within {timeout:g}s") from None
        finally:
            self._pending.pop(correlation_id, None)
            if future.done() and not future.cancelled():
                # Failed by a lost connection while the publish was under way: the caller has the publish's
                # error; reading this one keeps asyncio from logging it as never retrieved.
                future.exception()

    async def _publish(self, message: aio_pika.Message, routing_key: str, what: str) -> None:
        if not self.ready:
            raise Unavailable(f"the broker is unavailable; the {what} was not accepted")
        try:
            await asyncio.wait_for(
                self.jobs.publish(message, routing_key, mandatory=True), self.settings.publish_timeout
            )
        except PublishError as e:
            raise Unavailable(f"no queue takes {routing_key!r} (no consumer has declared it); the {what} was not accepted") from e
        except DeliveryError as e:
            raise Unavailable(f"the broker refused the {what}: its queue is full (or the broker is out of resources)") from e
        except asyncio.TimeoutError as e:
            raise Unavailable(f"the broker did not confirm the {what} within {self.settings.publish_timeout:g}s") from e
        except (AMQPError, ConnectionError, RuntimeError) as e:
            raise Unavailable(f"the broker is unavailable ({type(e).__name__}); the {what} was not accepted") from e

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result((dict(message.headers or {}), message.body))

    def _on_close(self, _connection: Any = None, reason: Any = None) -> None:
        if not self._closing:
            log.warning("the connection to the broker was lost (%s); reconnecting", reason)
        self._fail_pending(Unavailable("the connection to the broker was lost"))

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
