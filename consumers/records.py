"""What a consumer reads and writes in the store.

Every transition is a conditional UPDATE, so the store, not the broker,
decides which delivery of a job counts.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.expression import Executable

from contracts import lifecycle
from contracts.lifecycle import OPEN, Move
from contracts.errors import NotFound, NotTrained, TrainingFailed
from contracts.families import FamilyInfo
from contracts.messages import TrainJob
from contracts.status import JobKind, Status
from contracts.topology import Header
from contracts.store import (
    Artifact,
    Family as FamilyRow,
    Model,
    Payload,
    TrainingSession,
    model_row,
    retry_on_conflict,
    utcnow,
)

from .backends import digest


def worker_id() -> str:
    """This process as the store names who ran a job: `host:pid`, read when the consumer starts (not at import,
    which may have happened in the process it was forked from)."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def _rowcount(db: AsyncSession, statement: Executable) -> int:
    """Rows a conditional UPDATE changed: the store's answer to "did this transition happen"."""
    result = cast(CursorResult[Any], await db.execute(statement))
    return int(result.rowcount)


@dataclass
class Claim:
    """A job this consumer may run now."""

    session_id: int
    version: int
    kind: JobKind
    base: bytes | None = None
    base_backend: str | None = None
    base_version: int | None = None
    base_meta: dict[str, Any] | None = None
    token: str = ""  # this claim's fencing token: only its holder may finish the session


@dataclass
class Expired:
    """A handed-over fit whose lease ran out: its consumer died (or lost the store) mid-fit."""

    session_id: int
    owner: str | None
    expires: dt.datetime
    handover: dict[str, Any]
    family: str


@dataclass
class Servable:
    """Where the model to predict with is stored."""

    session_id: int
    version: int


class Records:
    def __init__(self, engine: AsyncEngine, worker: str) -> None:
        self.engine = engine
        self.worker = worker
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def register(self, family: FamilyInfo) -> None:
        """Publish what the family is (the gateway reads it to validate requests)."""
        row = family.as_dict()
        for _ in range(3):
            try:
                async with self.sessions.begin() as db:
                    await db.merge(FamilyRow(**row, updated_at=utcnow()))
                return
            except IntegrityError:
                continue  # another consumer of the family registered at the same moment

    async def adopt(self, family: str, job: TrainJob, ref: str) -> int | None:
        """The session of a job published without one (straight to the broker), created once per `ref`.

        None when the model_key belongs to another family (the job can't be recorded).
        """
        async def attempt() -> int | None:
            async with self.sessions.begin() as db:
                existing = (
                    await db.execute(select(TrainingSession.id).where(TrainingSession.job_ref == ref))
                ).scalar_one_or_none()
                if existing is not None:
                    return existing
                model = await model_row(db, job.model_key, family, job.name)
                if model.family != family:
                    return None
                params = {
                    "modkwargs": job.modkwargs,
                    "algkwargs": job.algkwargs,
                    "name": job.name,
                    "backend": job.backend.value if job.backend else None,
                }
                session = await lifecycle.new_version(db, model, job.kind, params, None, job_ref=ref, history={"message_id": ref})
                return session.id

        return await retry_on_conflict(attempt)

    async def import_version(
        self, family: str, model_key: str, name: str | None, artifact: bytes, backend: str, meta: dict[str, Any], actor: str | None
    ) -> int:
        """An imported model as a `done` version (of a new model, or the next of an existing one), its
        artifact and its history line in one transaction; the version number."""

        async def attempt() -> int:
            async with self.sessions.begin() as db:
                model = await model_row(db, model_key, family, name)
                if model.family != family:
                    raise NotFound(f"no {family} model with model_key {model_key!r}")
                now, digest_, format_ = utcnow(), digest(artifact), meta["imported"]["format"]
                session = await lifecycle.new_version(
                    db, model, JobKind.IMPORT, {"format": format_, "name": name}, actor, status=Status.DONE,
                    history={"format": format_, "digest": digest_},
                    rows=None, worker=self.worker, attempts=1, created_at=now, started_at=now, finished_at=now,
                )
                db.add(Artifact(session_id=session.id, backend=backend, data=artifact, digest=digest_, size=len(artifact), meta=meta))
                return session.version

        return await retry_on_conflict(attempt)

    async def payload(self, payload_id: int) -> bytes | None:
        async with self.sessions() as db:
            return (await db.execute(select(Payload.data).where(Payload.id == payload_id))).scalar_one_or_none()

    async def drop_payload(self, payload_id: int) -> None:
        async with self.sessions.begin() as db:
            await db.execute(delete(Payload).where(Payload.id == payload_id))

    async def abandoned_attempts(self, job_id: int) -> int:
        """How often an unfinished job was already started (each start that ended without a result)."""
        async with self.sessions() as db:
            row = (
                await db.execute(
                    select(TrainingSession.attempts).where(TrainingSession.id == job_id, TrainingSession.status.in_(OPEN))
                )
            ).scalar_one_or_none()
            return row or 0

    async def fail_poison(self, job_id: int, reason: str) -> int | None:
        """Mark a poison job failed; its version, or None when it finished meanwhile."""
        async with self.sessions.begin() as db:
            res = await db.execute(
                lifecycle.move(Move.FAIL, TrainingSession.id == job_id, error=reason).returning(TrainingSession.version)
            )
            version = res.scalar_one_or_none()
            await db.execute(delete(Payload).where(Payload.session_id == job_id))
            return version

    async def earlier_open(self, job_id: int) -> bool:
        """Whether a lower version of the same model is still queued or running (an update must wait)."""
        async with self.sessions() as db:
            me = (
                await db.execute(
                    select(TrainingSession.model_id, TrainingSession.version).where(TrainingSession.id == job_id)
                )
            ).first()
            if me is None:
                return False
            n = (
                await db.execute(
                    select(func.count())
                    .select_from(TrainingSession)
                    .where(
                        TrainingSession.model_id == me.model_id,
                        TrainingSession.version < me.version,
                        TrainingSession.status.in_(OPEN),
                    )
                )
            ).scalar_one()
            return n > 0

    async def claim(self, job_id: int, reclaim_token: str | None = None) -> Claim | None:
        """Mark the session running under a new fencing token; None when it is finished or gone
        (ack and forget), or handed over to a consumer whose lease still runs (it will finish it)."""
        token = f"{self.worker}:{uuid.uuid4().hex[:12]}"
        now = utcnow()
        free = or_(TrainingSession.lease_expires.is_(None), TrainingSession.lease_expires < now)
        if reclaim_token:
            free = or_(free, TrainingSession.lease_owner == reclaim_token)
        async with self.sessions.begin() as db:
            res = await db.execute(
                lifecycle.move(
                    Move.CLAIM,
                    TrainingSession.id == job_id,
                    free,
                    worker=self.worker,
                    attempts=TrainingSession.attempts + 1,
                    started_at=now,
                    lease_owner=token,
                    lease_expires=None,
                )
                .returning(TrainingSession.version, TrainingSession.kind, TrainingSession.model_id)
            )
            row = res.first()
            if row is None:
                return None
            version, kind, model_id = row
            claim = Claim(job_id, version, kind, token=token)
            if kind is JobKind.UPDATE:
                base = (
                    await db.execute(
                        select(TrainingSession.version, Artifact.data, Artifact.backend, Artifact.meta)
                        .join(Artifact, Artifact.session_id == TrainingSession.id)
                        .where(
                            TrainingSession.model_id == model_id,
                            TrainingSession.status == Status.DONE,
                            TrainingSession.version < version,
                        )
                        .order_by(TrainingSession.version.desc())
                        .limit(1)
                    )
                ).first()
                if base is not None:
                    claim.base_version, claim.base, claim.base_backend, claim.base_meta = base
                    await db.execute(
                        update(TrainingSession)
                        .where(TrainingSession.id == job_id)
                        .values(base_version=claim.base_version)
                    )
            return claim

    async def finish(
        self, job_id: int, artifact: bytes, backend: str, meta: dict[str, Any], rows: int, token: str | None = None
    ) -> bool:
        """Artifact and `done` in one transaction; False if another delivery got there first
        (or, with `token`, if a later claim took the session over: a reclaimed long fit)."""
        fence = [TrainingSession.lease_owner == token] if token else []
        try:
            async with self.sessions.begin() as db:
                updated = await _rowcount(
                    db,
                    lifecycle.move(
                        Move.FINISH, TrainingSession.id == job_id, *fence,
                        rows=rows, error=None, worker=self.worker, lease_owner=None, lease_expires=None, handover=None,
                    ),
                )
                if updated != 1:
                    await db.rollback()
                    return False
                await db.execute(delete(Payload).where(Payload.session_id == job_id))
                db.add(
                    Artifact(
                        session_id=job_id,
                        backend=backend,
                        data=artifact,
                        digest=digest(artifact),
                        size=len(artifact),
                        meta=meta,
                    )
                )
            return True
        except IntegrityError:
            return False

    # ---- long fits: hand-over and leases ----------------------------------------------

    async def hand_over(self, job_id: int, token: str, headers: dict[str, Any], body: bytes | None, lease: float) -> bool:
        """Make a running job durable in the store (its data too, when it came inline) and take a lease,
        so that its message can be acked. False when the claim was taken over meanwhile."""
        async with self.sessions.begin() as db:
            stored = dict(headers)
            if body is not None:
                payload = Payload(session_id=job_id, data=body, size=len(body))
                db.add(payload)
                await db.flush()
                stored[Header.PAYLOAD_ID] = payload.id
            updated = await _rowcount(
                db,
                update(TrainingSession)
                .where(TrainingSession.id == job_id, TrainingSession.status == Status.RUNNING, TrainingSession.lease_owner == token)
                .values(lease_expires=utcnow() + dt.timedelta(seconds=lease), handover=stored)
            )
            if updated != 1:
                await db.rollback()
                return False
            return True

    async def renew(self, job_id: int, token: str, lease: float) -> bool:
        """Extend the lease; False when it was lost (expired and reclaimed)."""
        async with self.sessions.begin() as db:
            updated = await _rowcount(
                db,
                update(TrainingSession)
                .where(TrainingSession.id == job_id, TrainingSession.status == Status.RUNNING, TrainingSession.lease_owner == token)
                .values(lease_expires=utcnow() + dt.timedelta(seconds=lease))
            )
            return updated == 1

    async def expired(self, families: list[str]) -> list[Expired]:
        """Handed-over fits of these families whose lease ran out."""
        async with self.sessions() as db:
            rows = await db.execute(
                select(
                    TrainingSession.id,
                    TrainingSession.lease_owner,
                    TrainingSession.lease_expires,
                    TrainingSession.handover,
                    Model.family,
                )
                .join(Model, Model.id == TrainingSession.model_id)
                .where(
                    Model.family.in_(families),
                    TrainingSession.status == Status.RUNNING,
                    TrainingSession.lease_expires < utcnow(),
                    TrainingSession.handover.is_not(None),
                )
            )
            return [Expired(*row) for row in rows]

    async def take_over(self, job: Expired, lease: float) -> str | None:
        """Win the right to publish an expired job again (one consumer does); its reclaim token, or None.

        The lease is extended meanwhile: if the publish fails, the job is reclaimed again when it runs out.
        """
        token = f"reclaim:{self.worker}:{uuid.uuid4().hex[:12]}"
        async with self.sessions.begin() as db:
            owner = TrainingSession.lease_owner.is_(None) if job.owner is None else TrainingSession.lease_owner == job.owner
            updated = await _rowcount(
                db,
                update(TrainingSession)
                .where(
                    TrainingSession.id == job.session_id,
                    TrainingSession.status == Status.RUNNING,
                    TrainingSession.lease_expires == job.expires,
                    owner,
                )
                .values(lease_owner=token, lease_expires=utcnow() + dt.timedelta(seconds=lease))
            )
            return token if updated == 1 else None

    async def fail(self, job_id: int, error: str) -> bool:
        async with self.sessions.begin() as db:
            updated = await _rowcount(
                db,
                lifecycle.move(Move.FAIL, TrainingSession.id == job_id, error=error[:4000], lease_expires=None, handover=None),
            )
            await db.execute(delete(Payload).where(Payload.session_id == job_id))
            return updated == 1

    async def quarantine(self, session_id: int, reason: str) -> bool:
        """A done version whose predicts keep overrunning their deadline: `failed` with `reason` (no longer served)
        and a `quarantine` line in its model's history. False when it was no longer done."""
        async with self.sessions.begin() as db:
            found = (
                await db.execute(
                    lifecycle.move(Move.QUARANTINE, TrainingSession.id == session_id, error=reason[:4000])
                    .returning(TrainingSession.model_id, TrainingSession.version)
                )
            ).first()
            if found is None:
                return False
            model_id, version = found
            await lifecycle.record(db, model_id, version, lifecycle.Action.QUARANTINE, None, reason=reason, worker=self.worker)
            return True

    async def servable(self, family: str, model_key: str, version: int | None, alias: str | None = None) -> Servable:
        """The session to predict with: `version`, the version `alias` points at, or neither: the one the
        model's serving alias points at, else its latest done version. Or the 404/409 that says why there is none."""
        async with self.sessions() as db:
            found = (
                await db.execute(select(Model.id, Model.serving).where(Model.model_key == model_key, Model.family == family))
            ).first()
            if found is None:
                raise NotFound(f"no {family} model with model_key {model_key!r}", fields={"model_key": ["unknown"]})
            model, serving = found
            name = alias or serving
            if version is None and name:
                version = await lifecycle.aliased(db, model_key, model, name)
            query = select(TrainingSession).where(TrainingSession.model_id == model)
            if version is not None:
                row = (await db.execute(query.where(TrainingSession.version == version))).scalar_one_or_none()
                if row is None:
                    raise NotFound(f"model {model_key!r} has no version {version}", fields={"version": ["unknown"]})
            else:
                row = (
                    await db.execute(
                        query.where(TrainingSession.status == Status.DONE)
                        .order_by(TrainingSession.version.desc())
                        .limit(1)
                    )
                ).scalar_one_or_none()
                if row is None:
                    latest = (
                        await db.execute(query.order_by(TrainingSession.version.desc()).limit(1))
                    ).scalar_one_or_none()
                    if latest is not None and latest.status is Status.FAILED:
                        raise TrainingFailed(f"training of model {model_key!r} failed: {latest.error}")
                    raise NotTrained(f"model {model_key!r} is not trained yet (status {latest.status.value if latest else 'unknown'})")
            if row.status is Status.FAILED:
                raise TrainingFailed(f"version {row.version} of model {model_key!r} failed: {row.error}")
            if row.status is not Status.DONE:
                raise NotTrained(f"version {row.version} of model {model_key!r} is {row.status.value}")
            return Servable(row.id, row.version)

    async def delete(self, family: str, model_key: str) -> int:
        """Delete the model and every version (the store's one delete, as the gateway's); how many versions."""
        async with self.sessions.begin() as db:
            return await lifecycle.delete_model(db, family, model_key)

    async def artifact(self, session_id: int) -> Artifact:
        async with self.sessions() as db:
            art = (await db.execute(select(Artifact).where(Artifact.session_id == session_id))).scalar_one_or_none()
            if art is None:
                raise NotFound("the model was deleted")
            return art
