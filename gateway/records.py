"""What the gateway reads and writes in the store.

A fit or update is written (`queued`, new version) before it is published;
the version number comes from the store under a unique constraint, so two
requests racing for the same model get distinct versions.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from contracts.errors import NotFound, NotTrained, TrainingFailed, Unavailable
from contracts import lifecycle
from contracts.families import BUILTIN, FamilyInfo
from contracts.lifecycle import Move, model_of, version_of
from contracts.status import JobKind, Status
from contracts.store import Artifact, Family as FamilyRow, Model, Payload, Tag, TrainingSession, model_row, retry_on_conflict

from .registry import MODEL


# Model keys whose family is remembered, at most.
_REMEMBERED = 100_000


class Records:
    def __init__(self, engine: AsyncEngine, expected: tuple[str, ...] = (), family_ttl: float = 2.0) -> None:
        """`expected`: the families the deployment serves (ML_SERVER_FAMILIES), known before their consumers register."""
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.expected = expected
        self._families: dict[str, FamilyInfo] = {}
        self._families_at = 0.0
        self._family_ttl = family_ttl
        self._family_of: dict[str, str] = {}
        self._reading = asyncio.Lock()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def families(self, refresh: bool = False) -> dict[str, FamilyInfo]:
        """The registered families, read again when asked to, or after `family_ttl` seconds: then by
        one query at a time, whose answer every request that was waiting for it takes."""
        asked = time.monotonic()
        if not refresh and asked - self._families_at <= self._family_ttl:
            return self._families
        async with self._reading:
            if refresh or self._families_at < asked:  # nobody read them while this request waited
                self._families = await self._read_families()
                self._families_at = time.monotonic()
        return self._families

    async def _read_families(self) -> dict[str, FamilyInfo]:
        async with self.sessions() as db:
            rows = (await db.execute(select(FamilyRow).order_by(FamilyRow.name))).scalars().all()
        return {r.name: FamilyInfo(r.name, r.supervised, r.supports_update, tuple(r.methods), tuple(r.params), r.fits) for r in rows}

    async def family(self, name: str) -> FamilyInfo:
        """A registered family; an expected built-in one whose consumer is still starting (its
        `params` unknown: the consumer checks `modkwargs`); NotFound, or Unavailable for an
        expected family that is not built in and not registered yet."""
        info = (await self.families()).get(name) or (await self.families(refresh=True)).get(name)
        if info is not None:
            return info
        if name in self.expected:
            if name in BUILTIN:
                return BUILTIN[name]
            raise Unavailable(f"no consumer of family {name!r} has registered yet; try again shortly")
        known = ", ".join(self._families) or "none yet: start a consumer"
        raise NotFound(f"unknown model family {name!r}; served families: {known}")

    async def submit_fit(
        self, family: str, model_key: str, name: str | None, params: dict[str, Any], retrain: bool, actor: str | None = None
    ) -> tuple[TrainingSession, bool]:
        """(session, True) for a new queued version; (latest session, False) when it exists and no retrain."""
        async def attempt() -> tuple[TrainingSession, bool]:
            async with self.sessions.begin() as db:
                model = await model_row(db, model_key, family, name)
                newest = await lifecycle.latest(db, model.id)
                if newest is not None and not retrain and newest.status is not Status.FAILED:
                    return newest, False
                session = await lifecycle.new_version(db, model, JobKind.FIT, params, actor, history={"retrain": bool(newest)})
                return session, True

        return await retry_on_conflict(attempt)

    async def submit_update(self, family: str, model_key: str, params: dict[str, Any], actor: str | None = None) -> TrainingSession:
        async def attempt() -> TrainingSession:
            async with self.sessions.begin() as db:
                model = await model_of(db, model_key, family)
                done = (
                    await db.execute(
                        select(func.count())
                        .select_from(TrainingSession)
                        .where(TrainingSession.model_id == model.id, TrainingSession.status == Status.DONE)
                    )
                ).scalar_one()
                if not done:
                    newest = await lifecycle.latest(db, model.id)
                    if newest is not None and newest.status is Status.FAILED:
                        raise TrainingFailed(f"model {model_key!r} failed to train: {newest.error}")
                    raise NotTrained(f"model {model_key!r} has no trained version to update yet")
                return await lifecycle.new_version(db, model, JobKind.UPDATE, params, actor)

        return await retry_on_conflict(attempt)

    async def schema(self, family: str, model_key: str) -> list[dict[str, Any]] | None:
        """The recorded input schema of the model's latest done version (None before schemas were recorded);
        NotFound for an unknown model, NotTrained / TrainingFailed when no version is done."""
        async with self.sessions() as db:
            model = await model_of(db, model_key, family)
            meta = (
                await db.execute(
                    select(Artifact.meta)
                    .join(TrainingSession, TrainingSession.id == Artifact.session_id)
                    .where(TrainingSession.model_id == model.id, TrainingSession.status == Status.DONE)
                    .order_by(TrainingSession.version.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
        if meta is None:
            return None  # no done version: submit_update says why
        schema = meta.get("schema")
        return list(schema) if isinstance(schema, list) else None

    async def store_payload(self, session_id: int | None, data: bytes) -> int:
        """Data too big for one broker message, by reference (an import's has no session yet)."""
        async with self.sessions.begin() as db:
            payload = Payload(session_id=session_id, data=data, size=len(data))
            db.add(payload)
            await db.flush()
            return payload.id

    async def drop_payload(self, payload_id: int) -> None:
        async with self.sessions.begin() as db:
            await db.execute(delete(Payload).where(Payload.id == payload_id))

    async def fail(self, session_id: int, error: str) -> None:
        async with self.sessions.begin() as db:
            await db.execute(
                # Only while still queued: a message that went out after all may be running already.
                lifecycle.move(Move.FAIL, TrainingSession.id == session_id, TrainingSession.status == Status.QUEUED, error=error)
            )
            await db.execute(delete(Payload).where(Payload.session_id == session_id))

    async def cancel(self, session_ids: list[int], error: str) -> None:
        """Fail sessions queued or running (a search cancelled): a queued one is never claimed, and a running
        one's result is dropped when its consumer tries to finish it."""
        if not session_ids:
            return
        async with self.sessions.begin() as db:
            await db.execute(
                lifecycle.move(Move.CANCEL, TrainingSession.id.in_(session_ids), error=error, lease_owner=None, lease_expires=None)
            )
            await db.execute(delete(Payload).where(Payload.session_id.in_(session_ids)))

    async def status(self, family: str, model_key: str) -> tuple[Model, TrainingSession]:
        async with self.sessions() as db:
            model = await model_of(db, model_key, family)
            latest = await lifecycle.latest(db, model.id)
            if latest is None:  # a model row is only ever created with its first session
                raise NotFound(f"model {model_key!r} has no training sessions")
            return model, latest

    async def version_status(self, model_key: str, version: int | None) -> tuple[Model, TrainingSession]:
        """One version of a model (None: the latest), found by key alone; NotFound when either is missing."""
        async with self.sessions() as db:
            model = await model_of(db, model_key)
            if version is not None:
                return model, await version_of(db, model, version)
            session = await lifecycle.latest(db, model.id)
            if session is None:  # a model row is only ever created with its first session
                raise NotFound(f"model {model_key!r} has no training sessions")
            return model, session

    async def version(self, model_key: str, version: int | None) -> tuple[Model, TrainingSession, Any]:
        """One version of a model (None: the latest) with its artifact's description (None before it is done)."""
        model, session = await self.version_status(model_key, version)
        async with self.sessions() as db:
            artifact = (
                await db.execute(
                    select(Artifact.backend, Artifact.size, Artifact.digest, Artifact.meta).where(Artifact.session_id == session.id)
                )
            ).first()
        return model, session, artifact

    async def family_of(self, model_key: str) -> str:
        """The family of a model, remembered: a model key belongs to one family for good (predicts
        by model key read no SQL after the first)."""
        family = self._family_of.get(model_key)
        if family is None:
            async with self.sessions() as db:
                family = (await db.execute(select(Model.family).where(Model.model_key == model_key))).scalar_one_or_none()
            if family is None:
                raise NotFound(f"no model with model_key {model_key!r}", fields={"model_key": ["unknown"]})
            if len(self._family_of) >= _REMEMBERED:
                self._family_of.clear()
            self._family_of[model_key] = family
        return family

    def forget(self, model_key: str) -> None:
        """The model was deleted (its key may come back, in another family if published directly)."""
        self._family_of.pop(model_key, None)

    async def delete(self, family: str, model_key: str) -> int:
        async with self.sessions.begin() as db:
            n = await lifecycle.delete_model(db, family, model_key)
        self.forget(model_key)
        return n

    async def list_models(
        self, family: str | None, name: str | None, status: Status | None, limit: int, offset: int, tag: str | None = None
    ) -> tuple[int, list[tuple[Model, TrainingSession]]]:
        """Models with their latest version, newest first; filters on family, name, latest status and tag."""
        latest = (
            select(TrainingSession.model_id, func.max(TrainingSession.version).label("version"))
            .group_by(TrainingSession.model_id)
            .subquery()
        )
        query = (
            select(Model, TrainingSession)
            .join(latest, latest.c.model_id == Model.id)
            .join(
                TrainingSession,
                (TrainingSession.model_id == Model.id) & (TrainingSession.version == latest.c.version),
            )
        )
        if family:
            query = query.where(Model.family == family)
        if name:
            query = query.where(Model.name == name)
        if status:
            query = query.where(TrainingSession.status == status)
        if tag:
            query = query.where(Model.id.in_(select(Tag.model_id).where(Tag.name == tag, Tag.version == MODEL)))
        async with self.sessions() as db:
            total = (await db.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = (await db.execute(query.order_by(Model.id.desc()).limit(limit).offset(offset))).all()
        return int(total), [(m, t) for m, t in rows]

    async def versions(
        self, model_key: str, status: Status | None, limit: int, offset: int
    ) -> tuple[Model, int, list[tuple[TrainingSession, Any]]]:
        """A model's versions, newest first, with their artifacts' metadata (not their bytes)."""
        async with self.sessions() as db:
            model = await model_of(db, model_key)
            query = select(TrainingSession).where(TrainingSession.model_id == model.id)
            if status:
                query = query.where(TrainingSession.status == status)
            total = (await db.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            sessions = (
                await db.execute(query.order_by(TrainingSession.version.desc()).limit(limit).offset(offset))
            ).scalars().all()
            ids = [t.id for t in sessions]
            arts: dict[int, Any] = {}
            if ids:
                rows = await db.execute(
                    select(Artifact.session_id, Artifact.backend, Artifact.size, Artifact.digest, Artifact.meta).where(
                        Artifact.session_id.in_(ids)
                    )
                )
                arts = {r.session_id: r for r in rows}
        return model, int(total), [(t, arts.get(t.id)) for t in sessions]
