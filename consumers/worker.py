"""A consumer process: the train and predict queues of one or more families, on one connection.

Each family keeps its own queues, prefetch and metrics labels: a process
serving `logreg` and `nn` looks to the broker like one `logreg` consumer and
one `nn` consumer. Fits of all of them run in one shared `FitPool`.

Train jobs (prefetch 1 per family): claim the session in the store, fit in a
fit process, commit artifact and `done` together, publish the status event,
and only then ack. A fit that raises is a user error: `failed`, acked, not
requeued. A job whose session is already finished is acked untouched. Long
fits are handed over to a lease (`leases`). A job that can't be run as sent
is dead-lettered with its reason (`contract`).

Predict jobs (prefetch ML_SERVER_PREDICT_PREFETCH per family): answered on
the caller's reply queue with a Parquet frame, or with an error in the
headers. Always answered (`runtime`). Deletes and imports come by the same queue.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from sqlalchemy.exc import SQLAlchemyError

from contracts import amqp, brokers
from service import logs
from contracts.amqp import settle
from contracts.errors import InvalidInput, MLServerError
from contracts.events import event_headers
from contracts.frames import JSON, PARQUET, ParquetCodec
from contracts.schemas import ImportHeaders, ReplyHeaders, StatusEvent
from contracts.settings import Settings
from contracts.status import JobKind, Status
from contracts.store import make_engine
from contracts.topology import EventKind, Header, MessageType, Topology

from . import contract, imports, jobs, metrics
from .families import Family
from .leases import Leases
from .pool import FitPool
from .records import Records, worker_id
from .runtime import Runtime
from .sandbox import PredictProcesses

log = logging.getLogger(__name__)

# A fit started this many times without finishing (its process died each time) is a poison job.
MAX_ATTEMPTS = 3

# How long an update waits for the model's earlier versions before it gives its message back.
UPDATE_ORDER_WAIT = 60.0


class EarlierVersionPending(Exception):
    """An update whose model still has a lower version queued or running."""


@dataclass
class Served:
    """One family this process serves."""

    family: Family
    spec: str  # how a fit process finds the family again
    runtime: Runtime
    train: AbstractQueue | None = None
    predict: AbstractQueue | None = None
    train_tag: str | None = None
    predict_tag: str | None = None


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
        self._warming: set[asyncio.Task[None]] = set()  # V2 repository `load`s under way

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
        t, s = self.topology, self.settings
        quorum = brokers.quorum_predicts(s.predict_queue_type, s.broker_url)
        for served in self.served.values():
            name = served.family.name
            # Declared on the channels that consume them, so a reconnect restores both together.
            served.train = await amqp.declare_train(train_channel, t, name, s.max_train_queue)
            served.predict = await amqp.declare_predict(predict_channel, t, name, s.max_predict_queue, quorum)
            await self.records.register(await asyncio.to_thread(served.family.info))
            served.train_tag = await served.train.consume(self._train_handler(served))
            served.predict_tag = await served.predict.consume(self._predict_handler(served))
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
            for queue, tag in ((served.train, served.train_tag), (served.predict, served.predict_tag)):
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

    # ---- train -------------------------------------------------------------

    def _train_handler(self, served: Served) -> Any:
        async def on_train(message: AbstractIncomingMessage) -> None:
            await self._on_train(served, message)

        return on_train

    async def _on_train(self, served: Served, message: AbstractIncomingMessage) -> None:
        family = served.family.name
        try:
            job = contract.read_train(family, message.headers or {}, message.type)
        except contract.Refused as e:
            log.error("%s train message sent to the dead-letter queue: %s %s", family, e.reason, e.fields)
            await self._dead_letter(family, message, e.reason, e.fields, contract.readable_key(message.headers or {}))
            return
        job["message_id"] = message.message_id  # carried by the job's status events
        assert self.leases is not None
        ctx = f"model={job['model_key']}"
        logs.bind(model_key=job["model_key"], version=job.get("version"))
        try:
            if job["job_id"] is None:
                # Published straight to the broker: record the job first (once per message id).
                ref = message.message_id or hashlib.sha256(message.body).hexdigest()
                job["job_id"] = await self.records.adopt(family, job, ref)
                if job["job_id"] is None:
                    reason = f"model {job['model_key']!r} belongs to another family than {family!r}"
                    log.error("%s; job sent to the dead-letter queue", reason)
                    await self._dead_letter(family, message, reason, {Header.MODEL_KEY: [reason]}, job["model_key"])
                    return
            ctx = f"{ctx} job={job['job_id']}"
            attempts = await self.records.abandoned_attempts(job["job_id"])
            if attempts >= MAX_ATTEMPTS:
                # Every start of this fit ended with its process dying: a poison job. Stop here.
                reason = (
                    f"gave up after {attempts} attempts: each one ended with the consumer or its fit process dying "
                    f"(killed, out of memory or crashed); the job is in the dead-letter queue "
                    f"{self.topology.dead_queue(family)}"
                )
                log.error("%s %s", ctx, reason)
                version = await self.records.fail_poison(job["job_id"], reason)
                metrics.fit_finished(family, job["kind"], "failed")
                if version is not None:
                    await self._publish_event(family, job["model_key"], version, Status.FAILED, reason, job["message_id"])
                await self._dead_letter(family, message, reason, {contract.BODY: [reason]})
                return
            body = message.body
            if job["payload_id"] is not None:
                stored = await self.records.payload(job["payload_id"])
                body = stored if stored is not None else b""  # gone: the job already finished
            reclaim = str((message.headers or {}).get(Header.RECLAIM_TOKEN) or "") or None
            outcome = await self._train(served, job, body, ctx, message, reclaim)
            if job["payload_id"] is not None and outcome is not None:  # the session is finished
                await self.records.drop_payload(job["payload_id"])
        except (SQLAlchemyError, OSError) as e:
            # Could not record the outcome: never ack. Hold the delivery until the store
            # answers again, then give it back once (every redelivery counts toward the
            # queue's delivery limit, so no fast nack loop during an outage).
            log.error("%s store unavailable; holding the job until it is back: %s", ctx, e)
            await self._wait_for_store()
            await self._give_back(message, job)
            return
        except EarlierVersionPending as e:
            log.info("%s; job returned to the queue", e)
            await self._give_back(message, job)
            return
        except BrokenProcessPool:
            log.error("%s the fit process died; job returned to the queue", ctx)
            metrics.fit_finished(family, job["kind"], "crashed")
            self.pool.broken()
            await self._give_back(message, job)
            return
        if outcome is not None:
            await self._publish_event(family, job["model_key"], *outcome, message_id=job["message_id"])
        if self.leases.release(job["job_id"]):
            return  # acked at the hand-over
        await settle(message.ack())

    async def _give_back(self, message: AbstractIncomingMessage, job: dict[str, Any]) -> None:
        """Requeue a job that did not finish; one already handed over is left to its lease running out."""
        assert self.leases is not None
        if self.leases.release(job.get("job_id")):
            log.warning("job=%s was handed over; another consumer reclaims it when its lease runs out", job["job_id"])
            return
        await settle(message.nack(requeue=True))

    async def _train(
        self,
        served: Served,
        job: dict[str, Any],
        body: bytes,
        ctx: str,
        message: AbstractIncomingMessage | None = None,
        reclaim: str | None = None,
    ) -> tuple[int, Status, str | None] | None:
        family = served.family
        assert self.leases is not None
        if job["kind"] is JobKind.UPDATE:
            await self._wait_for_earlier_versions(job["job_id"], ctx)
        claim = await self.records.claim(job["job_id"], reclaim)
        if claim is None:
            log.info("%s already finished, deleted or held by a live lease; acked without running", ctx)
            return None
        ctx = f"{ctx} version={claim.version}"
        logs.bind(version=claim.version)
        log.info("%s %s started (attempt by %s)", ctx, claim.kind.value, self.worker)
        await self._publish_event(family.name, job["model_key"], claim.version, Status.RUNNING, message_id=job.get("message_id"))
        try:
            # The training data's footer against the caps, before a fit process inflates it.
            ParquetCodec.footer(body)
            if claim.kind is JobKind.UPDATE:
                if not family.supports_update:
                    raise jobs.JobError(f"family {family.name!r} does not support update")
                if claim.base is None or claim.base_backend is None:
                    raise jobs.JobError("the model has no trained version to update")
                running = self.pool.run(jobs.update, served.spec, body, claim.base, claim.base_backend, self.key, claim.base_meta)
            else:
                backend = (job["backend"] or family.backend).value
                running = self.pool.run(jobs.fit, served.spec, body, job["modkwargs"], job["algkwargs"], self.key, backend)
            result = await self.leases.await_fit(asyncio.ensure_future(running), job, body, message, claim, ctx)
        except (jobs.JobError, MLServerError) as e:
            log.warning("%s failed: %s", ctx, e)
            await self.records.fail(claim.session_id, e.message if isinstance(e, MLServerError) else str(e))
            metrics.fit_finished(family.name, claim.kind, "failed")
            return claim.version, Status.FAILED, str(e)
        if await self.records.finish(
            claim.session_id, result.artifact, result.backend, result.meta, result.rows, token=claim.token
        ):
            log.info("%s done in %.3fs", ctx, result.meta["fit_seconds"])
            metrics.fit_finished(family.name, claim.kind, "done", result.meta["fit_seconds"])
            return claim.version, Status.DONE, None
        log.info("%s finished elsewhere first; result dropped", ctx)
        return None

    async def _wait_for_store(self) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                await self.records.ping()
                return
            except (SQLAlchemyError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _wait_for_earlier_versions(self, job_id: int, ctx: str) -> None:
        """Updates apply in version order: wait while a lower version of the model is still open.

        Another consumer holds that version (or the broker will redeliver it); if
        it is stuck behind this very message, giving the message back after the
        wait lets it through.
        """
        deadline = asyncio.get_running_loop().time() + UPDATE_ORDER_WAIT
        while await self.records.earlier_open(job_id):
            if asyncio.get_running_loop().time() > deadline:
                raise EarlierVersionPending(f"{ctx}: an earlier version is still open")
            await asyncio.sleep(0.2)

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
                await self._answer(served, message)
            finally:
                self._predicts_in_flight -= 1
                if not self._predicts_in_flight:
                    self._predicts_idle.set()

        return on_predict

    async def _answer(self, served: Served, message: AbstractIncomingMessage) -> None:
        family = served.family.name
        started = metrics.clock()
        body, status = b"", 200
        headers: dict[str, Any]
        importing = message.type in (MessageType.IMPORT, MessageType.DELETE)  # answered in JSON, not counted as predicts
        try:
            if message.type == MessageType.DELETE:
                body = await self._delete(served, message)
            elif importing:
                body = await self._import(served, message)
            else:
                body = await served.runtime.answer(message.headers or {}, message.body)
            headers = _REPLY.dump({"status": 200})
        except MLServerError as e:
            status = e.status
            headers = _REPLY.dump({"status": e.status, "code": e.code, "message": e.message, "fields": contract.error_fields(e)})
        except Exception as e:  # noqa: BLE001 - the caller always gets an answer
            status = 500
            log.exception("%s failed unexpectedly", "import" if importing else "predict")
            headers = _REPLY.dump({"status": 500, "code": "internal_error", "message": f"{type(e).__name__}: {e}", "fields": {}})
        if not importing:
            metrics.predict_answered(family, status, started)
        if message.reply_to:
            try:
                if self.reply_channel.is_closed:  # only after a reconnect: no wait on the predict path otherwise
                    await self._reply_channel_open(message.expiration)
                await self.reply_channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        headers={k: v for k, v in headers.items() if v is not None},
                        correlation_id=message.correlation_id,
                        content_type=JSON if importing else PARQUET,
                        type=MessageType.REPLY,
                    ),
                    routing_key=message.reply_to,
                    mandatory=False,
                )
            except (AMQPError, ConnectionError, RuntimeError) as e:
                log.warning("predict reply (status %s) not delivered: %s", status, e)
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
            job = _IMPORT_HEADERS.load(dict(message.headers or {}))
        except ValidationError as e:
            raise InvalidInput(f"invalid import headers: {e.messages}") from e
        family = served.family.name
        if job["family"] != family:
            raise InvalidInput(f"an import for family {job['family']!r} came to the {family!r} queue")
        logs.bind(model_key=job["model_key"])
        blob = message.body
        if job["payload_id"] is not None:
            stored = await self.records.payload(job["payload_id"])
            if stored is None:
                raise InvalidInput("the uploaded file is gone from the store")
            blob = stored
        try:
            try:
                limits = imports.ImportLimits.from_settings(self.settings)
                done = await self.pool.run(imports.import_model, served.spec, blob, job["format"], job["features"], job["types"], limits)
            except imports.ImportRefused as e:
                raise InvalidInput(f"{job['format']} file refused: {e}", fields={"file": [str(e)]}) from None
            except BrokenProcessPool:
                self.pool.broken()
                raise InvalidInput("the process reading the file died: the file is not servable", fields={"file": ["unreadable"]}) from None
            version = await self.records.import_version(
                family, job["model_key"], job["name"], done.artifact, done.backend, done.meta, job["actor"]
            )
        finally:
            if job["payload_id"] is not None:
                await self.records.drop_payload(job["payload_id"])
        log.info("model=%s version=%d imported from a %s file by %s", job["model_key"], version, job["format"], job["actor"] or "anonymous")
        await self._publish_event(family, job["model_key"], version, Status.DONE)
        return orjson.dumps({"model_key": job["model_key"], "version": version})

    # ---- delete ---------------------------------------------------------------

    async def _delete(self, served: Served, message: AbstractIncomingMessage) -> bytes:
        """Delete a model over AMQP, as `DELETE /models/{key}` does (`contract.delete`); then the `deleted` event."""
        key, answer = await contract.delete(self.records, served.family.name, message.headers or {})
        await self._publish_event(served.family.name, key, None, None, message_id=message.message_id, kind=EventKind.DELETED)
        return answer


_REPLY = ReplyHeaders()
_IMPORT_HEADERS = ImportHeaders()
