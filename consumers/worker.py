"""A consumer process: one family, a train queue and a predict queue.

Train jobs (prefetch 1): claim the session in the store, fit in a separate
process, commit artifact and `done` together, publish the status event, and
only then ack. A fit that raises is a user error: `failed`, acked, not
requeued. A job whose session is already finished is acked untouched.
A fit still running after ML_SERVER_HANDOVER_AFTER seconds is handed over
(job stored, message acked, lease renewed) so that RabbitMQ's consumer
timeout never cuts it off; expired leases are reclaimed by any consumer of
the family, and a claim's fencing token decides which fit may finish.

Predict jobs (higher prefetch): answered on the caller's reply queue with a
Parquet frame, or with an error in the headers. Always answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import aio_pika
import numpy as np
import pandas as pd
import pyarrow as pa
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import AMQPError
from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from contracts import logs
from contracts.errors import InvalidInput, MLServerError
from contracts.frames import PARQUET, ParquetCodec, check_table, has_default_index, normalize, numeric_matrix
from contracts.schemas import PredictHeaders, ReplyHeaders, StatusEvent, TrainHeaders
from contracts.settings import Settings
from contracts.status import JobKind, Status
from contracts.store import make_engine
from contracts.topology import Header, MessageType, Topology

from . import backends, jobs, metrics
from .cache import Loaded, ModelCache, Resolutions
from .families import Family
from .records import WORKER, Expired, Records

log = logging.getLogger(__name__)

# A fit started this many times without finishing (its process died each time) is a poison job.
MAX_ATTEMPTS = 3

# How long an update waits for the model's earlier versions before it gives its message back.
UPDATE_ORDER_WAIT = 60.0


# A job published again from the store after its lease ran out carries the reclaim's token here.
RECLAIM_HEADER = "x-reclaim-token"


class EarlierVersionPending(Exception):
    """An update whose model still has a lower version queued or running."""


# Frames up to this many rows are predicted on the event loop; bigger ones in a thread.
_INLINE_ROWS = 2_000


class Worker:
    def __init__(self, settings: Settings, family: Family, spec: str) -> None:
        self.settings = settings
        self.family = family
        self.spec = spec  # how the pool's child process finds the family again
        self.topology = Topology(settings.namespace)
        self.key = settings.signing_key()
        self.cache = ModelCache(family=family.name)
        self.resolutions = Resolutions()
        self.stopping = asyncio.Event()
        self._handed_over: set[int] = set()  # jobs whose message was acked mid-fit (they hold a lease)
        self._reclaimer: asyncio.Task[None] | None = None
        self._train_task: asyncio.Task[Any] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self.connection: AbstractRobustConnection | None = None
        self._predicts_in_flight = 0
        self._predicts_idle = asyncio.Event()
        self._predicts_idle.set()

    # ---- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        self.engine = make_engine(self.settings.database_url)
        self.records = Records(self.engine)
        self._pool = self._new_pool()
        await asyncio.get_running_loop().run_in_executor(self._pool, jobs.warm_up)

        self.connection = await self._connect()
        t, name = self.topology, self.family.name
        train_ch = await self.connection.channel()
        await train_ch.set_qos(prefetch_count=1)
        jobs_x = await train_ch.declare_exchange(t.jobs_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        dead_x = await train_ch.declare_exchange(t.dead_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        await train_ch.declare_exchange(t.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        dead_q = await train_ch.declare_queue(t.dead_queue(name), durable=True, arguments=t.dead_queue_arguments())
        await dead_q.bind(dead_x, t.train_key(name))
        train_q = await train_ch.declare_queue(t.train_queue(name), durable=True, arguments=t.train_queue_arguments(self.settings.max_train_queue))
        await train_q.bind(jobs_x, t.train_key(name))
        # Confirmed publishing, for jobs republished from the store when their lease ran out.
        self.publish_channel = await self.connection.channel(publisher_confirms=True)
        self._jobs_x = await self.publish_channel.get_exchange(t.jobs_exchange)

        predict_ch = await self.connection.channel()
        await predict_ch.set_qos(prefetch_count=self.settings.predict_prefetch)
        predict_q = await predict_ch.declare_queue(
            t.predict_queue(name), durable=True, arguments=t.predict_queue_arguments(self.settings.max_predict_queue)
        )
        await predict_q.bind(t.jobs_exchange, t.predict_key(name))

        self.events_channel = await self.connection.channel()
        self.events = await self.events_channel.get_exchange(t.events_exchange)
        # Status events of this family's models: drop cached models that were deleted or superseded.
        listen = await self.events_channel.declare_queue(exclusive=True, auto_delete=True)
        await listen.bind(self.events, f"{name}.#")
        await listen.consume(self._on_event, no_ack=True)
        # Replies are transient and their callers have deadlines: no publisher confirms to wait for.
        self.reply_channel = await self.connection.channel(publisher_confirms=False)

        await self.records.register(self.family)
        self._train_q, self._predict_q = train_q, predict_q
        self._train_tag = await train_q.consume(self._on_train)
        self._predict_tag = await predict_q.consume(self._on_predict)
        self._reclaimer = asyncio.create_task(self._reclaim_loop())
        log.info("consumer %s ready (%s)", name, WORKER)

    async def _connect(self, deadline: float = 60.0) -> AbstractRobustConnection:
        """The first connection, retried for `deadline` seconds (the broker may start after us);
        once connected, aio-pika's robust connection reconnects by itself."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline
        while True:
            try:
                return await aio_pika.connect_robust(
                    self.settings.broker_url,
                    timeout=10,
                    client_properties={"connection_name": f"consumer {self.family.name} {WORKER}"},
                )
            except (AMQPError, ConnectionError, OSError, asyncio.TimeoutError) as e:
                if loop.time() > give_up or self.stopping.is_set():
                    raise
                log.warning("broker not reachable yet (%s); retrying", e)
                await asyncio.sleep(1)

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
        log.info("consumer %s stopping", self.family.name)
        if self._reclaimer is not None:
            self._reclaimer.cancel()
        for queue, tag in ((self._train_q, self._train_tag), (self._predict_q, self._predict_tag)):
            try:
                await queue.cancel(tag)
            except Exception:  # the channel may already be gone
                pass
        try:
            await asyncio.wait_for(self._predicts_idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("%d predicts still running after %.0fs; their callers will time out", self._predicts_in_flight, grace)
        if self.connection is not None:
            await self.connection.close()
        if self._pool is not None:
            children = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in children:  # a fit in progress is abandoned; its job will be redelivered
                proc.kill()
        await self.engine.dispose()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=jobs.init_child
        )

    # ---- train -------------------------------------------------------------

    async def _on_train(self, message: AbstractIncomingMessage) -> None:
        try:
            job = TrainHeaders().load(dict(message.headers or {}))
        except ValidationError as e:
            log.error("malformed train message sent to the dead-letter queue: %s", e.messages)
            await _settle(message.reject(requeue=False))
            return
        ctx = f"model={job['model_key']}"
        logs.bind(model_key=job["model_key"], version=job.get("version"))
        try:
            if job["job_id"] is None:
                # Published straight to the broker: record the job first (once per message id).
                ref = message.message_id or hashlib.sha256(message.body).hexdigest()
                job["job_id"] = await self.records.adopt(self.family.name, job, ref)
                if job["job_id"] is None:
                    log.error("model %s belongs to another family; job sent to the dead-letter queue", job["model_key"])
                    await _settle(message.reject(requeue=False))
                    return
            ctx = f"{ctx} job={job['job_id']}"
            attempts = await self.records.abandoned_attempts(job["job_id"])
            if attempts >= MAX_ATTEMPTS:
                # Every start of this fit ended with its process dying: a poison job. Stop here.
                reason = (
                    f"gave up after {attempts} attempts: each one ended with the consumer or its fit process dying "
                    f"(killed, out of memory or crashed); the job is in the dead-letter queue "
                    f"{self.topology.dead_queue(self.family.name)}"
                )
                log.error("%s %s", ctx, reason)
                version = await self.records.fail_poison(job["job_id"], reason)
                metrics.fit_finished(self.family.name, job["kind"], "failed")
                if version is not None:
                    await self._publish_event(job["model_key"], version, Status.FAILED)
                await _settle(message.reject(requeue=False))
                return
            body = message.body
            if job["payload_id"] is not None:
                stored = await self.records.payload(job["payload_id"])
                body = stored if stored is not None else b""  # gone: the job already finished
            reclaim = str((message.headers or {}).get(RECLAIM_HEADER) or "") or None
            outcome = await self._train(job, body, ctx, message, reclaim)
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
            metrics.fit_finished(self.family.name, job["kind"], "crashed")
            self._pool = self._new_pool()
            await self._give_back(message, job)
            return
        if outcome is not None:
            await self._publish_event(job["model_key"], *outcome)
        if job["job_id"] in self._handed_over:
            self._handed_over.discard(job["job_id"])  # acked at the hand-over
            return
        await _settle(message.ack())

    async def _give_back(self, message: AbstractIncomingMessage, job: dict[str, Any]) -> None:
        """Requeue a job that did not finish; one already handed over is left to its lease running out."""
        if job.get("job_id") in self._handed_over:
            self._handed_over.discard(job["job_id"])
            log.warning("job=%s was handed over; another consumer reclaims it when its lease runs out", job["job_id"])
            return
        await _settle(message.nack(requeue=True))

    async def _train(
        self,
        job: dict[str, Any],
        body: bytes,
        ctx: str,
        message: AbstractIncomingMessage | None = None,
        reclaim: str | None = None,
    ) -> tuple[int, Status] | None:
        if job["kind"] is JobKind.UPDATE:
            await self._wait_for_earlier_versions(job["job_id"], ctx)
        claim = await self.records.claim(job["job_id"], reclaim)
        if claim is None:
            log.info("%s already finished, deleted or held by a live lease; acked without running", ctx)
            return None
        loop = asyncio.get_running_loop()
        assert self._pool is not None
        ctx = f"{ctx} version={claim.version}"
        logs.bind(version=claim.version)
        log.info("%s %s started (attempt by %s)", ctx, claim.kind.value, WORKER)
        await self._publish_event(job["model_key"], claim.version, Status.RUNNING)  # for event streams
        try:
            if claim.kind is JobKind.UPDATE:
                if not self.family.supports_update:
                    raise jobs.JobError(f"family {self.family.name!r} does not support update")
                if claim.base is None:
                    raise jobs.JobError("the model has no trained version to update")
                running = loop.run_in_executor(
                    self._pool, jobs.update, self.spec, body, claim.base, claim.base_backend, self.key, claim.base_meta
                )
            else:
                backend = (job["backend"] or self.family.backend).value
                running = loop.run_in_executor(
                    self._pool, jobs.fit, self.spec, body, job["modkwargs"], job["algkwargs"], self.key, backend
                )
            result = await self._await_fit(running, job, body, message, claim, ctx)
        except jobs.JobError as e:
            log.warning("%s failed: %s", ctx, e)
            await self.records.fail(claim.session_id, str(e))
            metrics.fit_finished(self.family.name, claim.kind, "failed")
            return claim.version, Status.FAILED
        if await self.records.finish(
            claim.session_id, result.artifact, result.backend, result.meta, result.rows, token=claim.token
        ):
            log.info("%s done in %.3fs", ctx, result.meta["fit_seconds"])
            metrics.fit_finished(self.family.name, claim.kind, "done", result.meta["fit_seconds"])
            return claim.version, Status.DONE
        log.info("%s finished elsewhere first; result dropped", ctx)
        return None

    # ---- long fits: hand-over, lease, reclaim --------------------------------------

    async def _await_fit(
        self, running: asyncio.Future[Any], job: dict[str, Any], body: bytes, message: AbstractIncomingMessage | None, claim: Any, ctx: str
    ) -> Any:
        """The fit's result. A fit still running after ML_SERVER_HANDOVER_AFTER seconds is handed over:
        the job is made durable in the store, its message acked (before RabbitMQ's consumer_timeout
        closes the channel), and a lease renewed until the fit ends."""
        done, _ = await asyncio.wait({running}, timeout=self.settings.handover_after)
        if done or message is None:
            return await running
        headers = {k: v for k, v in TrainHeaders().dump(job).items() if v is not None}
        inline = body if job["payload_id"] is None else None
        lease = self.settings.lease_seconds
        if not await self.records.hand_over(claim.session_id, claim.token, headers, inline, lease):
            log.info("%s claim taken over meanwhile; not handed over", ctx)
            return await running
        self._handed_over.add(job["job_id"])
        await _settle(message.ack())
        log.info("%s running for %.0fs: handed over (message acked, lease of %.0fs)", ctx, self.settings.handover_after, lease)
        renewing = asyncio.create_task(self._renew(claim.session_id, claim.token, ctx))
        try:
            return await running
        finally:
            renewing.cancel()

    async def _renew(self, session_id: int, token: str, ctx: str) -> None:
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await self.records.renew(session_id, token, lease):
                    log.warning("%s lease lost (it ran out and the job was reclaimed); this fit's result will be dropped", ctx)
                    return
            except (SQLAlchemyError, OSError) as e:
                log.warning("%s lease not renewed (store unavailable): %s", ctx, e)

    async def _reclaim_loop(self) -> None:
        """Publish again, from the store, handed-over jobs of this family whose lease ran out."""
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(max(0.5, lease / 3))
            try:
                for expired in await self.records.expired(self.family.name):
                    token = await self.records.take_over(expired, lease)
                    if token is not None:
                        await self._republish(expired, token)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # store or broker away: try again on the next round
                log.warning("reclaiming expired leases failed: %s", e)

    async def _republish(self, expired: Expired, token: str) -> None:
        headers = {**expired.handover, RECLAIM_HEADER: token}
        message = aio_pika.Message(
            b"",
            headers=headers,
            content_type=PARQUET,
            type=str(headers.get(Header.KIND, JobKind.FIT.value)),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=f"{expired.session_id}:{token}",
        )
        await asyncio.wait_for(
            self._jobs_x.publish(message, self.topology.train_key(self.family.name), mandatory=True),
            self.settings.publish_timeout,
        )
        log.warning("job=%s lease of %s ran out; published again from the store", expired.session_id, expired.owner)

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

    async def _publish_event(self, model_key: str, version: int, status: Status) -> None:
        headers = StatusEvent().dump(
            {"event": "status", "model_key": model_key, "family": self.family.name, "version": version, "status": status.value}
        )
        try:
            await self.events.publish(
                aio_pika.Message(b"", headers={k: v for k, v in headers.items() if v is not None}, type=MessageType.STATUS),
                routing_key=self.topology.event_key(self.family.name, model_key),
                mandatory=False,
            )
        except (AMQPError, ConnectionError, asyncio.TimeoutError, RuntimeError) as e:
            log.warning("status event for %s v%s not published: %s", model_key, version, e)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        try:
            event = StatusEvent().load(dict(message.headers or {}))
        except ValidationError:
            return
        # Deleted, or a newer version is the default now (older ones load again if asked for by number).
        if event["event"] == "deleted" or event["status"] == Status.DONE.value:
            self.resolutions.drop(event["model_key"])
            dropped = self.cache.drop(event["model_key"])
            if dropped:
                log.info("model=%s dropped %d cached version(s) (%s)", event["model_key"], dropped, event["event"] if event["event"] == "deleted" else "new version")

    # ---- predict -----------------------------------------------------------

    async def _on_predict(self, message: AbstractIncomingMessage) -> None:
        self._predicts_in_flight += 1
        self._predicts_idle.clear()
        try:
            await self._answer(message)
        finally:
            self._predicts_in_flight -= 1
            if not self._predicts_in_flight:
                self._predicts_idle.set()

    async def _answer(self, message: AbstractIncomingMessage) -> None:
        started = metrics.clock()
        body, status = b"", 200
        headers: dict[str, Any]
        try:
            body = await self._predict(message)
            headers = ReplyHeaders().dump({"status": 200})
        except MLServerError as e:
            status = e.status
            headers = ReplyHeaders().dump(
                {"status": e.status, "code": e.code, "message": e.message, "fields": e.fields}
            )
        except Exception as e:
            status = 500
            log.exception("predict failed unexpectedly")
            headers = ReplyHeaders().dump({"status": 500, "code": "internal_error", "message": f"{type(e).__name__}: {e}"})
        metrics.predict_answered(self.family.name, status, started)
        headers = {k: v for k, v in headers.items() if v is not None}
        if message.reply_to:
            try:
                await self.reply_channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        headers=headers,
                        correlation_id=message.correlation_id,
                        content_type=PARQUET,
                        type=MessageType.REPLY,
                    ),
                    routing_key=message.reply_to,
                    mandatory=False,
                )
            except (AMQPError, ConnectionError, RuntimeError) as e:
                log.warning("predict reply (status %s) not delivered: %s", status, e)
        await _settle(message.ack())

    async def _predict(self, message: AbstractIncomingMessage) -> bytes:
        try:
            job = _PREDICT_HEADERS.load(dict(message.headers or {}))
        except ValidationError as e:
            raise InvalidInput(f"invalid predict headers: {e.messages}", fields=e.messages) from e
        logs.bind(model_key=job["model_key"], version=job["version"])
        # The input first: a bad frame is a 422 whatever the model.
        table = check_table(ParquetCodec.decode_table(message.body))
        metrics.PREDICT_ROWS.labels(self.family.name).observe(table.num_rows)
        loaded = await self._loaded(job["model_key"], job["version"])
        kwargs = dict(job["kwargs"])
        method = kwargs.pop("method", "predict")
        if table.num_rows > _INLINE_ROWS:
            return await asyncio.to_thread(predict_table, self.family, loaded, table, method, kwargs)
        return predict_table(self.family, loaded, table, method, kwargs)

    async def _loaded(self, model_key: str, version: int | None) -> Loaded:
        """The model to answer with, from memory when it is there: no SQL per predict."""
        lookup = (model_key, version)
        where = self.resolutions.get(lookup)
        if where is None:
            where = await self.records.servable(self.family.name, model_key, version)
            self.resolutions.put(lookup, where)
        logs.bind(version=where.version)
        cache_key = (model_key, where.session_id)
        loaded = self.cache.get(cache_key)
        if loaded is None:
            art = await self.records.artifact(where.session_id)
            estimator = await asyncio.to_thread(
                backends.load,
                art.data,
                self.key,
                art.backend,
                trusted=self.family.trusted(),
                versions=art.meta.get("versions"),
            )
            loaded = Loaded(estimator, art.meta, where.version, art.backend)
            self.cache.put(cache_key, loaded)
        return loaded


_PREDICT_HEADERS = PredictHeaders()


def predict_table(family: Family, loaded: Loaded, table: pa.Table, method: str, kwargs: dict[str, Any]) -> bytes:
    """Predict on a decoded Parquet frame and answer with a Parquet frame.

    A numeric frame with the model's columns and no index of its own goes
    straight to the estimator as one array (no pandas on the way in or out);
    anything else takes the DataFrame path with its checks and messages.
    Rows without an index of their own are answered without one, so a
    caller that concatenated several requests' rows can split the answer by
    position.
    """
    _check_method(family, loaded, method)
    default_index = has_default_index(table)
    features = loaded.meta.get("features")
    if family.array_input and default_index and features and table.num_rows:
        names = table.column_names
        if names != features and len(names) == len(features) and set(names) == set(features):
            table = table.select(features)
            names = features
        matrix = numeric_matrix(table) if names == features else None
        if matrix is not None:
            with warnings.catch_warnings():
                # Fitted on a frame, asked on its array: the columns were matched above.
                warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
                out = _run(loaded, method, matrix, kwargs)
            labels = _labels(loaded, method, out)
            if all(isinstance(label, str) for label in labels):
                columns = [out] if out.ndim == 1 else list(out.T)
                return ParquetCodec.encode_table(pa.table(dict(zip(labels, columns))))
            frame = pd.DataFrame(out.reshape(len(out), -1), columns=labels)
            return ParquetCodec.encode(frame, index=False)
    x = normalize(table.to_pandas(), "x")
    frame = predict(family, loaded, x, method, kwargs)
    return ParquetCodec.encode(frame, index=None if not default_index else False)


def _check_method(family: Family, loaded: Loaded, method: str) -> None:
    available = [m for m in family.methods if hasattr(loaded.estimator, m)]
    if method not in available:
        form = f" (version {loaded.version} is stored as {loaded.backend})" if loaded.backend != "joblib" else ""
        raise InvalidInput(
            f"kwargs.method={method!r} is not available for {family.name}{form}; use one of {available}",
            fields={"kwargs": [f"method must be one of {available}"]},
        )


def _run(loaded: Loaded, method: str, x: Any, kwargs: dict[str, Any]) -> np.ndarray:
    try:
        return np.asarray(getattr(loaded.estimator, method)(x, **kwargs))
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"{method} failed on this input: {e}", fields={"x": [str(e)]}) from e


def _labels(loaded: Loaded, method: str, out: np.ndarray) -> list[Any]:
    """Column names of an answer: the target, the classes, or positions."""
    if out.ndim == 1:
        return [(loaded.meta.get("targets") or [method])[0]]
    if method.startswith("predict_") and "classes" in loaded.meta and out.shape[1] == len(loaded.meta["classes"]):
        return list(loaded.meta["classes"])
    if method == "predict" and len(loaded.meta.get("targets", [])) == out.shape[1]:
        return list(loaded.meta["targets"])
    return [str(i) for i in range(out.shape[1])]


def predict(family: Family, loaded: Loaded, x: pd.DataFrame, method: str, kwargs: dict[str, Any]) -> pd.DataFrame:
    """Run one predict method on a frame; the answer is a frame indexed like x."""
    _check_method(family, loaded, method)
    features = loaded.meta.get("features", list(x.columns))
    if list(x.columns) != features:
        if sorted(x.columns) != sorted(features):
            raise InvalidInput(
                f"x has columns {list(x.columns)}; the model was trained on {features}",
                fields={"x": [f"expected columns {features}"]},
            )
        x = x[features]
    out = _run(loaded, method, x, kwargs)
    labels = _labels(loaded, method, out)
    if out.ndim == 1:
        return pd.DataFrame({labels[0]: out}, index=x.index)
    return pd.DataFrame(out, index=x.index, columns=labels)


async def _settle(op: Any) -> None:
    """Ack/nack; on a channel that died under us, leave the job to redelivery."""
    try:
        await op
    except (AMQPError, ConnectionError, RuntimeError, asyncio.CancelledError) as e:
        if isinstance(e, asyncio.CancelledError):
            raise
        log.warning("could not settle a delivery (%s); the broker will redeliver it", e)
