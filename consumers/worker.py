"""A consumer process: the train and predict queues of one or more families, on one connection.

Each family keeps its own queues, prefetch and metrics labels: a process
serving `logreg` and `nn` looks to the broker like one `logreg` consumer and
one `nn` consumer. Fits of all of them run in one shared `FitPool`.

This module is the transport: connection, channels, queues, replies and
events. What a train job does is `training`'s; what a predict does is
`runtime`'s. Train jobs come with prefetch 1 per family.

Predict jobs (prefetch ML_SERVER_PREDICT_PREFETCH per family): answered on
the caller's reply queue with a Parquet frame, or with an error in the
headers. Always answered (`runtime`). Deletes come by the same queue; imports
by a queue of their own (prefetch 1), answered the same way.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures.process import BrokenProcessPool
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aiormq.exceptions import AMQPError
from marshmallow import ValidationError

from contracts import amqp, brokers
from service import logs
from contracts.amqp import settle
from contracts.errors import InvalidInput, MLServerError
from contracts.events import event_headers
from contracts.frames import JSON, PARQUET
from contracts.messages import ImportJob, PredictJob, Reply, StatusEvent
from contracts.settings import Settings
from contracts.status import Status
from contracts.store import make_engine
from contracts.topology import EventKind, MessageType, Topology

from . import contract, imports, metrics
from .families import Family
from .leases import Leases
from .pool import FitPool
from .records import Records, worker_id
from .runtime import Runtime
from .sandbox import PredictProcesses
from .training import Training

log = logging.getLogger(__name__)

@dataclass
class Served:
    """One family this process serves."""

    family: Family
    spec: str  # how a fit process finds the family again
    runtime: Runtime
    train: AbstractQueue | None = None
    predict: AbstractQueue | None = None
    imports: AbstractQueue | None = None
    train_tag: str | None = None
    predict_tag: str | None = None
    imports_tag: str | None = None


class Consumer:
    def __init__(self, settings: Settings, families: list[tuple[Family, str]]) -> None:
        self.settings = settings
        self.topology = Topology(settings.namespace)
        self.key = settings.signing_key()
        self.stopping = asyncio.Event()
        self.engine = make_engine(settings.database_url)
        self.worker = worker_id()
        self.records = Records(self.engine, self.worker)
        families_served = [f for f, _ in families]
        self.pool = FitPool(settings.fit_processes or len(families), families_served, warm=settings.fit_pool_warm)
        if settings.predict_deadline >= settings.predict_timeout:
            log.warning(
                "ML_SERVER_PREDICT_DEADLINE (%gs) is not below ML_SERVER_PREDICT_TIMEOUT (%gs): callers of a hung imported "
                "model get the gateway's 504 before the consumer's, which names the model",
                settings.predict_deadline,
                settings.predict_timeout,
            )
        # Imported models predict in processes of their own, under a deadline that is enforced (`sandbox`).
        self.isolation = PredictProcesses(settings.predict_processes, settings.predict_deadline, self.pool.modules)
        self.training = Training(self)
        self.served = {
            f.name: Served(
                f,
                spec,
                Runtime(
                    f,
                    self.records,
                    self.key,
                    spec=spec,
                    isolation=self.isolation,
                    quarantine_after=settings.quarantine_after,
                    announce=self._quarantined(f.name),
                ),
            )
            for f, spec in families
        }
        self.names = ", ".join(self.served)
        self.connection: AbstractRobustConnection | None = None
        self.leases: Leases | None = None
        self._predicts_in_flight = 0
        self._predicts_idle = asyncio.Event()
        self._predicts_idle.set()
        self._warming: set[asyncio.Task[None]] = set()
        # Predicts gathering for one predict call, by (family, model, version, alias, kwargs): those waiting on the first.
        self._grouped: dict[tuple[Any, ...], list[tuple[AbstractIncomingMessage, asyncio.Future[None]]]] = {}  # V2 repository `load`s under way

    # ---- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        self.pool.start()
        self.connection = await amqp.connect(
            self.settings.broker_url, f"consumer {self.names} {self.worker}", stopping=self.stopping.is_set
        )
        # Confirmed publishing, for jobs republished from the store when their lease ran out.
        publish_channel = await self.connection.channel(publisher_confirms=True)
        # ... and for train jobs dead-lettered with their reason (`contract`).
        self.dead: AbstractExchange = (await amqp.declare_exchanges(publish_channel, self.topology)).dead
        self.leases = Leases(self.settings, self.records, list(self.served), await publish_channel.get_exchange(self.topology.jobs_exchange))

        self.events_channel = await self.connection.channel()
        self.events: AbstractExchange = await self.events_channel.get_exchange(self.topology.events_exchange)
        # Status events of these families' models: drop cached models that were deleted or superseded.
        listen = await self.events_channel.declare_queue(exclusive=True, auto_delete=True)
        for name in self.served:
            await listen.bind(self.events, self.topology.family_events(name))
        await listen.consume(self._on_event, no_ack=True)
        # Replies are transient and their callers have deadlines: no publisher confirms to wait for.
        self.reply_channel = await self.connection.channel(publisher_confirms=False)

        # Prefetch is per consumer (RabbitMQ's `global=false`): each family gets its own.
        train_channel = await self.connection.channel()
        await train_channel.set_qos(prefetch_count=1)
        predict_channel = await self.connection.channel()
        await predict_channel.set_qos(prefetch_count=self.settings.predict_prefetch)
        # Imports read their file in a fit process: one at a time per family, beside the predicts, not in their slots.
        imports_channel = await self.connection.channel()
        await imports_channel.set_qos(prefetch_count=1)
        t, s = self.topology, self.settings
        quorum = brokers.quorum_predicts(s.predict_queue_type, s.broker_url)
        for served in self.served.values():
            name = served.family.name
            # Declared on the channels that consume them, so a reconnect restores both together.
            served.train = await amqp.declare_train(train_channel, t, name, s.max_train_queue)
            served.predict = await amqp.declare_predict(predict_channel, t, name, s.max_predict_queue, quorum)
            served.imports = await amqp.declare_imports(imports_channel, t, name, quorum)
            await self.records.register(await asyncio.to_thread(served.family.info))
            served.train_tag = await served.train.consume(self.training.handler(served))
            served.predict_tag = await served.predict.consume(self._predict_handler(served))
            served.imports_tag = await served.imports.consume(self._predict_handler(served))
        self.leases.start()
        log.info("consumer ready: %s (%s)", self.names, self.worker)

    async def run(self) -> None:
        await self.start()
        try:
            await self.stopping.wait()
        finally:
            await self.close()

    async def close(self, grace: float = 10.0) -> None:
        """Stop taking work, answer the predicts already taken, then disconnect.

        A fit in progress is left to redelivery: its message is still unacked.
        """
        log.info("consumer stopping: %s", self.names)
        if self.leases is not None:
            self.leases.stop()
        for served in self.served.values():
            for queue, tag in ((served.train, served.train_tag), (served.predict, served.predict_tag), (served.imports, served.imports_tag)):
                if queue is not None and tag is not None:
                    try:
                        await queue.cancel(tag)
                    except Exception:  # noqa: BLE001 - the channel may already be gone
                        pass
        try:
            await asyncio.wait_for(self._predicts_idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("%d predicts still running after %.0fs; their callers will time out", self._predicts_in_flight, grace)
        if self.connection is not None:
            await self.connection.close()
        self.pool.close()
        self.isolation.close()
        await self.engine.dispose()

    # ---- events --------------------------------------------------------------

    async def _publish_event(
        self,
        family: str,
        model_key: str,
        version: int | None,
        status: Status | None,
        error: str | None = None,
        message_id: str | None = None,
        kind: EventKind = EventKind.STATUS,
        fields: dict[str, Any] | None = None,
    ) -> None:
        event = {
            "event": kind,
            "model_key": model_key,
            "family": family,
            "version": version,
            "status": status.value if status is not None else None,
            "error": error,
            "message_id": message_id,
            "fields": fields,
        }
        try:
            await self.events.publish(
                aio_pika.Message(b"", headers=event_headers(self.topology.namespace, event), type=MessageType.STATUS),
                routing_key=self.topology.event_key(family, model_key),
                mandatory=False,
            )
        except (AMQPError, ConnectionError, asyncio.TimeoutError, RuntimeError) as e:
            log.warning("status event for %s v%s not published: %s", model_key, version, e)

    async def _dead_letter(
        self, family: str, message: AbstractIncomingMessage, reason: str, fields: dict[str, Any], model_key: str | None = None
    ) -> None:
        """To the dead-letter queue with its reason, then a `rejected` event for its model when the key is known."""
        await contract.dead_letter(self.dead, self.topology.train_key(family), message, reason, fields)
        if model_key is not None:
            await self._publish_event(family, model_key, None, None, reason, message.message_id, EventKind.REJECTED, fields)

    def _quarantined(self, family: str) -> Callable[[str, int], Awaitable[None]]:
        async def announce(model_key: str, version: int) -> None:
            await self._publish_event(family, model_key, version, Status.FAILED)

        return announce

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        try:
            event = StatusEvent().load(dict(message.headers or {}))
        except ValidationError:
            return
        served = self.served.get(event["family"])
        if served is None:
            return
        if event["event"] == EventKind.LOAD:
            task = asyncio.get_running_loop().create_task(served.runtime.warm(event["model_key"]))
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)
            return
        if event["event"] == EventKind.UNLOAD:
            dropped = served.runtime.forget(event["model_key"])
            log.info("model=%s dropped %d cached version(s) (unload)", event["model_key"], dropped)
            return
        # Deleted, an alias moved, or a newer version is the default now (older ones load again if asked for).
        deleted = event["event"] == EventKind.DELETED
        # (A version that failed after being done was quarantined by another consumer.)
        if deleted or event["event"] == EventKind.ALIAS or event["status"] in (Status.DONE.value, Status.FAILED.value):
            dropped = served.runtime.forget(event["model_key"])
            if dropped:
                why = "deleted" if deleted else "alias" if event["event"] == EventKind.ALIAS else "new version"
                log.info("model=%s dropped %d cached version(s) (%s)", event["model_key"], dropped, why)

    # ---- predict -----------------------------------------------------------

    def _predict_handler(self, served: Served) -> Any:
        async def on_predict(message: AbstractIncomingMessage) -> None:
            self._predicts_in_flight += 1
            self._predicts_idle.clear()
            try:
                if message.type in (MessageType.IMPORT, MessageType.DELETE):
                    await self._answer(served, message)
                else:
                    await self._predict(served, message)
            finally:
                self._predicts_in_flight -= 1
                if not self._predicts_in_flight:
                    self._predicts_idle.set()

        return on_predict

    async def _predict(self, served: Served, message: AbstractIncomingMessage) -> None:
        """Predicts already delivered for the same model, version and arguments are answered by one
        predict call (`Runtime.answer_many`), each on its own reply queue. The first of them waits one turn
        of the event loop for the others it came with; a lone one is answered at once."""
        try:
            job = PredictJob.read(message.headers or {})
        except ValidationError:
            await self._answer(served, message)  # answered with the error that names the header
            return
        key = (served.family.name, job.model_key, job.version, job.alias, orjson.dumps(job.kwargs, option=orjson.OPT_SORT_KEYS))
        waiting = self._grouped.get(key)
        if waiting is not None:  # another predict of the same group is gathering: it answers this one too
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiting.append((message, done))
            await done
            return
        waiting = self._grouped[key] = []
        await asyncio.sleep(0)  # one turn: the deliveries read with this one join it
        del self._grouped[key]
        if not waiting:
            metrics.PREDICT_GROUPS.labels(served.family.name).observe(1)
            await self._answer(served, message)
            return
        group = [message, *(m for m, _ in waiting)]
        metrics.PREDICT_GROUPS.labels(served.family.name).observe(len(group))
        started = metrics.clock()
        answers: list[bytes | BaseException]
        try:
            answers = [*await served.runtime.answer_many(job, [m.body for m in group])]
        except Exception as e:  # noqa: BLE001 - every caller always gets an answer
            log.exception("predict failed unexpectedly")
            answers = [e] * len(group)
        try:
            for m, answer in zip(group, answers):
                reply = _reply(answer)
                metrics.predict_answered(served.family.name, reply.status, started)
                await self._send(m, answer if isinstance(answer, bytes) else b"", reply, PARQUET)
        finally:
            for _, done in waiting:
                if not done.done():
                    done.set_result(None)

    async def _answer(self, served: Served, message: AbstractIncomingMessage) -> None:
        """One RPC on its own: a predict, a delete or an import (these two answered in JSON, not counted as predicts)."""
        started = metrics.clock()
        body = b""
        importing = message.type in (MessageType.IMPORT, MessageType.DELETE)
        try:
            if message.type == MessageType.DELETE:
                body = await self._delete(served, message)
            elif importing:
                body = await self._import(served, message)
            else:
                body = await served.runtime.answer(message.headers or {}, message.body)
            reply = Reply(200)
        except Exception as e:  # noqa: BLE001 - the caller always gets an answer
            if not isinstance(e, MLServerError):
                log.exception("%s failed unexpectedly", "import" if importing else "predict")
            reply = _reply(e)
        if not importing:
            metrics.predict_answered(served.family.name, reply.status, started)
        await self._send(message, body, reply, JSON if importing else PARQUET)

    async def _send(self, message: AbstractIncomingMessage, body: bytes, reply: Reply, content_type: str) -> None:
        """The reply on the caller's queue (when it gave one), then the ack."""
        if message.reply_to:
            try:
                if self.reply_channel.is_closed:  # only after a reconnect: no wait on the predict path otherwise
                    await self._reply_channel_open(message.expiration)
                await self.reply_channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        headers=reply.headers(),
                        correlation_id=message.correlation_id,
                        content_type=content_type,
                        type=MessageType.REPLY,
                    ),
                    routing_key=message.reply_to,
                    mandatory=False,
                )
            except (AMQPError, ConnectionError, RuntimeError) as e:
                log.warning("reply (status %s) not delivered: %s", reply.status, e)
        await settle(message.ack())

    async def _reply_channel_open(self, expiration: Any) -> None:
        """Until the reply channel is open, for the predict's time to live at most.

        After a reconnect aio-pika reopens the connection's channels one by one, in no set order: a
        predict can arrive on its reopened channel while the reply channel is still closed, and its
        answer would be lost (the caller waiting until its deadline for a 504)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (float(expiration) if expiration is not None else self.settings.predict_timeout)
        while self.reply_channel.is_closed and loop.time() < deadline and not self.stopping.is_set():
            await asyncio.sleep(0.02)

    # ---- import --------------------------------------------------------------

    async def _import(self, served: Served, message: AbstractIncomingMessage) -> bytes:
        """Check a model file in a fit process (`imports`), store it as a done version, announce it;
        the reply is `{model_key, version}`. A file that can't be served is a 422 and stores nothing."""
        try:
            job = ImportJob.read(message.headers or {})
        except ValidationError as e:
            raise InvalidInput(f"invalid import headers: {e.messages}") from e
        family = served.family.name
        if job.family != family:
            raise InvalidInput(f"an import for family {job.family!r} came to the {family!r} queue")
        logs.bind(model_key=job.model_key)
        blob = message.body
        if job.payload_id is not None:
            stored = await self.records.payload(job.payload_id)
            if stored is None:
                raise InvalidInput("the uploaded file is gone from the store")
            blob = stored
        try:
            try:
                limits = imports.ImportLimits.from_settings(self.settings)
                done = await self.pool.run(imports.import_model, served.spec, blob, job.format, job.features, job.types, limits)
            except imports.ImportRefused as e:
                raise InvalidInput(f"{job.format} file refused: {e}", fields={"file": [str(e)]}) from None
            except BrokenProcessPool:
                self.pool.broken()
                raise InvalidInput("the process reading the file died: the file is not servable", fields={"file": ["unreadable"]}) from None
            version = await self.records.import_version(
                family, job.model_key, job.name, done.artifact, done.backend, done.meta, job.actor
            )
        finally:
            if job.payload_id is not None:
                await self.records.drop_payload(job.payload_id)
        log.info("model=%s version=%d imported from a %s file by %s", job.model_key, version, job.format, job.actor or "anonymous")
        await self._publish_event(family, job.model_key, version, Status.DONE)
        return orjson.dumps({"model_key": job.model_key, "version": version})

    # ---- delete ---------------------------------------------------------------

    async def _delete(self, served: Served, message: AbstractIncomingMessage) -> bytes:
        """Delete a model over AMQP, as `DELETE /models/{key}` does (`contract.delete`); then the `deleted` event."""
        key, answer = await contract.delete(self.records, served.family.name, message.headers or {})
        await self._publish_event(served.family.name, key, None, None, message_id=message.message_id, kind=EventKind.DELETED)
        return answer


def _reply(answer: bytes | BaseException) -> Reply:
    """The reply headers of an answer, or of the error that ended it (an unexpected one is a 500 naming its type)."""
    if isinstance(answer, bytes):
        return Reply(200)
    if isinstance(answer, MLServerError):
        return Reply.error(answer, contract.error_fields(answer))
    return Reply(500, "internal_error", f"{type(answer).__name__}: {answer}", {})
