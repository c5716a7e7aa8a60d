"""Long fits: hand-over before the broker's consumer timeout, lease renewal, reclaim.

RabbitMQ closes the channel of a consumer that holds a delivery unacked past
its `consumer_timeout` (30 minutes by default). A fit still running after
ML_SERVER_HANDOVER_AFTER seconds is therefore handed over: the job is made
durable in the store (its data too, when it came inline), its message is
acked, and the fit holds a lease in the store, renewed every third of
ML_SERVER_LEASE_SECONDS while it runs. When a lease runs out (its consumer
died), any consumer of the family wins the right to publish the job again
from the store, with a reclaim token; the claim's fencing token decides
which fit may finish, so there is still exactly one `done`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from sqlalchemy.exc import SQLAlchemyError

from contracts.amqp import settle
from contracts.frames import PARQUET
from contracts.messages import TrainJob
from contracts.settings import Settings
from contracts.status import JobKind
from contracts.topology import Header, Topology

from .records import Claim, Expired, Records

log = logging.getLogger(__name__)


class Leases:
    def __init__(self, settings: Settings, records: Records, families: Sequence[str], jobs: AbstractExchange) -> None:
        self.settings = settings
        self.records = records
        self.families = list(families)
        self.jobs = jobs
        self.topology = Topology(settings.namespace)
        self._handed_over: set[int] = set()  # jobs whose message was acked mid-fit (they hold a lease)
        self._reclaimer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reclaimer = asyncio.create_task(self._reclaim_loop())

    def stop(self) -> None:
        if self._reclaimer is not None:
            self._reclaimer.cancel()

    def release(self, job_id: int | None) -> bool:
        """Forget a job's hand-over; True when it had been handed over (its message is acked already)."""
        if job_id in self._handed_over:
            self._handed_over.discard(job_id)
            return True
        return False

    async def await_fit(
        self,
        running: asyncio.Future[Any],
        job: TrainJob,
        body: bytes,
        message: AbstractIncomingMessage | None,
        claim: Claim,
        ctx: str,
    ) -> Any:
        """The fit's result; a fit still running after ML_SERVER_HANDOVER_AFTER seconds is handed over."""
        done, _ = await asyncio.wait({running}, timeout=self.settings.handover_after)
        if done or message is None:
            return await running
        headers = job.headers()
        inline = body if job.payload_id is None else None
        lease = self.settings.lease_seconds
        if not await self.records.hand_over(claim.session_id, claim.token, headers, inline, lease):
            log.info("%s claim taken over meanwhile; not handed over", ctx)
            return await running
        self._handed_over.add(claim.session_id)
        await settle(message.ack())
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
        """Publish again, from the store, handed-over jobs of these families whose lease ran out."""
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(max(0.5, lease / 3))
            try:
                for expired in await self.records.expired(self.families):
                    token = await self.records.take_over(expired, lease)
                    if token is not None:
                        await self._republish(expired, token)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # store or broker away: try again on the next round
                log.warning("reclaiming expired leases failed: %s", e)

    async def _republish(self, expired: Expired, token: str) -> None:
        headers = {**expired.handover, Header.RECLAIM_TOKEN: token}
        message = aio_pika.Message(
            b"",
            headers=headers,
            content_type=PARQUET,
            type=str(headers.get(Header.KIND, JobKind.FIT.value)),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=f"{expired.session_id}:{token}",
        )
        await asyncio.wait_for(
            self.jobs.publish(message, self.topology.train_key(expired.family), mandatory=True),
            self.settings.publish_timeout,
        )
        log.warning("job=%s lease of %s ran out; published again from the store", expired.session_id, expired.owner)
