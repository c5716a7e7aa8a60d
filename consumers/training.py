"""The train side of a consumer process: what happens to each train job of its families.

Claim the version in the store, fit it in a fit process, commit the artifact
and `done` together, publish the status event, and only then ack. A fit that
raises is a user error: `failed`, acked, not requeued. A job whose version is
already finished is acked untouched. Long fits are handed over to a lease
(`leases`). A job that can't be run as sent is dead-lettered with its reason
(`contract`). However a job ends, it ends through `Training._end`: the fit
metric, the status event, then the message, in that order.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy.exc import SQLAlchemyError

from contracts.amqp import settle
from contracts.errors import MLServerError
from contracts.frames import ParquetCodec
from contracts.messages import TrainJob
from contracts.status import JobKind, Status
from contracts.topology import Header
from service import logs

from . import contract, jobs, metrics

if TYPE_CHECKING:
    from .worker import Consumer, Served

log = logging.getLogger(__name__)

# A fit started this many times without finishing (its process died each time) is a poison job.
MAX_ATTEMPTS = 3

# How long an update waits for the model's earlier versions before it gives its message back.
UPDATE_ORDER_WAIT = 60.0


class EarlierVersionPending(Exception):
    """An update whose model still has a lower version queued or running."""


class Settle(Enum):
    """What happens to a train job's message at its end."""

    ACK = "ack"
    REQUEUE = "requeue"  # given back, to run again (here or on another consumer)
    DEAD_LETTER = "dead-letter"  # can't be run as sent: to the dead-letter queue with its reason


@dataclass(frozen=True)
class Ending:
    """How a train job ended; `Consumer._end` does what each ending needs, in one place."""

    settle: Settle = Settle.ACK
    outcome: str | None = None  # the fit metric's outcome (done, failed, crashed); None: no fit ran
    version: int | None = None
    status: Status | None = None  # the status event to publish; None: no event
    error: str | None = None  # why it failed, or was dead-lettered
    seconds: float | None = None  # the fit's own time, when done
    fields: dict[str, Any] | None = None  # a dead letter's bad parts, by header name
    model_key: str | None = None  # a dead letter's model, when readable: its `rejected` event is routed by it

    @classmethod
    def dead(cls, reason: str, fields: dict[str, Any], model_key: str | None = None) -> Ending:
        return cls(Settle.DEAD_LETTER, error=reason, fields=fields, model_key=model_key)


class Training:
    """A consumer's train jobs (`Consumer` holds the connection, the store and the fit processes)."""

    def __init__(self, consumer: Consumer) -> None:
        self.c = consumer

    def handler(self, served: Served) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_train(message: AbstractIncomingMessage) -> None:
            family = served.family.name
            job: TrainJob | None = None
            try:
                job = contract.read_train(family, message.headers or {}, message.type)
            except contract.Refused as e:
                log.error("%s train message sent to the dead-letter queue: %s %s", family, e.reason, e.fields)
                ending = Ending.dead(e.reason, e.fields, contract.readable_key(message.headers or {}))
            else:
                job.message_id = message.message_id  # carried by the job's status events
                ending = await self._on_train(served, message, job)
            await self._end(family, message, job, ending)

        return on_train

    async def _end(self, family: str, message: AbstractIncomingMessage, job: TrainJob | None, ending: Ending) -> None:
        """What every train job's end does, whichever way it ended: the fit metric, the status event,
        then the message acked, given back or dead-lettered (acked already when it was handed over)."""
        assert self.c.leases is not None
        if ending.outcome is not None and job is not None:
            metrics.fit_finished(family, job.kind, ending.outcome, ending.seconds)
        if ending.status is not None and job is not None:
            await self.c._publish_event(family, job.model_key, ending.version, ending.status, ending.error, job.message_id)
        if ending.settle is Settle.DEAD_LETTER:
            await self.c._dead_letter(family, message, ending.error or "", ending.fields or {}, ending.model_key)
        elif ending.settle is Settle.REQUEUE:
            if self.c.leases.release(job.job_id if job is not None else None):
                log.warning("job=%s was handed over; another consumer reclaims it when its lease runs out", job.job_id if job else None)
            else:
                await settle(message.nack(requeue=True))
        elif not self.c.leases.release(job.job_id if job is not None else None):  # else acked at the hand-over
            await settle(message.ack())

    async def _on_train(self, served: Served, message: AbstractIncomingMessage, job: TrainJob) -> Ending:
        family = served.family.name
        ctx = f"model={job.model_key}"
        logs.bind(model_key=job.model_key, version=job.version)
        try:
            if job.job_id is None:
                # Published straight to the broker: record the job first (once per message id).
                ref = message.message_id or hashlib.sha256(message.body).hexdigest()
                job.job_id = await self.c.records.adopt(family, job, ref)
                if job.job_id is None:
                    reason = f"model {job.model_key!r} belongs to another family than {family!r}"
                    log.error("%s; job sent to the dead-letter queue", reason)
                    return Ending.dead(reason, {Header.MODEL_KEY: [reason]}, job.model_key)
            ctx = f"{ctx} job={job.job_id}"
            attempts = await self.c.records.abandoned_attempts(job.job_id)
            if attempts >= MAX_ATTEMPTS:
                # Every start of this fit ended with its process dying: a poison job. Stop here.
                reason = (
                    f"gave up after {attempts} attempts: each one ended with the consumer or its fit process dying "
                    f"(killed, out of memory or crashed); the job is in the dead-letter queue "
                    f"{self.c.topology.dead_queue(family)}"
                )
                log.error("%s %s", ctx, reason)
                version = await self.c.records.fail_poison(job.job_id, reason)
                return Ending(
                    Settle.DEAD_LETTER, "failed", version, Status.FAILED if version is not None else None, reason,
                    fields={contract.BODY: [reason]},
                )
            body = message.body
            if job.payload_id is not None:
                stored = await self.c.records.payload(job.payload_id)
                body = stored if stored is not None else b""  # gone: the job already finished
            reclaim = str((message.headers or {}).get(Header.RECLAIM_TOKEN) or "") or None
            ending = await self._train(served, job, body, ctx, message, reclaim)
            if job.payload_id is not None and ending.status is not None:  # the session is finished
                await self.c.records.drop_payload(job.payload_id)
            return ending
        except (SQLAlchemyError, OSError) as e:
            # Could not record the outcome: never ack. Hold the delivery until the store
            # answers again, then give it back once (every redelivery counts toward the
            # queue's delivery limit, so no fast nack loop during an outage).
            log.error("%s store unavailable; holding the job until it is back: %s", ctx, e)
            await self._wait_for_store()
            return Ending(Settle.REQUEUE)
        except EarlierVersionPending as e:
            log.info("%s; job returned to the queue", e)
            return Ending(Settle.REQUEUE)
        except BrokenProcessPool:
            log.error("%s the fit process died; job returned to the queue", ctx)
            self.c.pool.broken()
            return Ending(Settle.REQUEUE, "crashed")

    async def _train(
        self,
        served: Served,
        job: TrainJob,
        body: bytes,
        ctx: str,
        message: AbstractIncomingMessage | None = None,
        reclaim: str | None = None,
    ) -> Ending:
        """Claim, fit, record: `done` or `failed` with its event; a plain ack when there was nothing to run."""
        family = served.family
        assert self.c.leases is not None and job.job_id is not None
        if job.kind is JobKind.UPDATE:
            await self._wait_for_earlier_versions(job.job_id, ctx)
        claim = await self.c.records.claim(job.job_id, reclaim)
        if claim is None:
            log.info("%s already finished, deleted or held by a live lease; acked without running", ctx)
            return Ending()
        ctx = f"{ctx} version={claim.version}"
        logs.bind(version=claim.version)
        log.info("%s %s started (attempt by %s)", ctx, claim.kind.value, self.c.worker)
        await self.c._publish_event(family.name, job.model_key, claim.version, Status.RUNNING, message_id=job.message_id)
        try:
            # The training data's footer against the caps, before a fit process inflates it.
            ParquetCodec.footer(body)
            if claim.kind is JobKind.UPDATE:
                if not family.supports_update:
                    raise jobs.JobError(f"family {family.name!r} does not support update")
                if claim.base is None or claim.base_backend is None:
                    raise jobs.JobError("the model has no trained version to update")
                running = self.c.pool.run(jobs.update, served.spec, body, claim.base, claim.base_backend, self.c.key, claim.base_meta)
            else:
                backend = (job.backend or family.backend).value
                running = self.c.pool.run(jobs.fit, served.spec, body, job.modkwargs, job.algkwargs, self.c.key, backend)
            result = await self.c.leases.await_fit(asyncio.ensure_future(running), job, body, message, claim, ctx)
        except (jobs.JobError, MLServerError) as e:
            log.warning("%s failed: %s", ctx, e)
            await self.c.records.fail(claim.session_id, e.message if isinstance(e, MLServerError) else str(e))
            return Ending(Settle.ACK, "failed", claim.version, Status.FAILED, str(e))
        if await self.c.records.finish(
            claim.session_id, result.artifact, result.backend, result.meta, result.rows, token=claim.token
        ):
            log.info("%s done in %.3fs", ctx, result.meta["fit_seconds"])
            return Ending(Settle.ACK, "done", claim.version, Status.DONE, seconds=result.meta["fit_seconds"])
        log.info("%s finished elsewhere first; result dropped", ctx)
        return Ending()

    async def _wait_for_store(self) -> None:
        delay = 0.5
        while not self.c.stopping.is_set():
            try:
                await self.c.records.ping()
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
        while await self.c.records.earlier_open(job_id):
            if asyncio.get_running_loop().time() > deadline:
                raise EarlierVersionPending(f"{ctx}: an earlier version is still open")
            await asyncio.sleep(0.2)
