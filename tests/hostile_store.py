"""Models written straight into the store, as a file that got past an import's checks would be stored."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from consumers import backends
from contracts.columns import Column, InputSchema, Kind
from contracts.status import Backend, JobKind, Status
from contracts.store import Artifact, HistoryEntry, Model, TrainingSession, make_engine, utcnow


def store_imported(database_url: str, family: str, model_key: str, estimator: Any, features: list[str], key: bytes) -> int:
    """`estimator` stored as version 1 of a new model, marked imported (a joblib artifact signed with `key`:
    the store's bytes are trusted, so this is how a hostile model that validation missed looks); its session id."""
    blob = backends.dump(estimator, key, Backend.JOBLIB)
    meta = {
        "features": features,
        "schema": InputSchema(tuple(Column(f, Kind.NUMBER) for f in features)).as_list(),
        "targets": [],
        "array_ready": False,
        "versions": backends.versions(Backend.JOBLIB),
        "imported": {"format": "skops", "family": family},
    }

    async def write() -> int:
        engine = make_engine(database_url)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False).begin() as db:
                model = Model(model_key=model_key, family=family, name=model_key)
                db.add(model)
                await db.flush()
                now = utcnow()
                session = TrainingSession(
                    model_id=model.id, version=1, kind=JobKind.IMPORT, status=Status.DONE, params={}, attempts=1,
                    created_at=now, started_at=now, finished_at=now,
                )
                db.add(session)
                await db.flush()
                db.add(Artifact(session_id=session.id, backend="joblib", data=blob, digest=backends.digest(blob), size=len(blob), meta=meta))
                db.add(HistoryEntry(model_id=model.id, version=1, action="import", actor=None, at=now, detail={}))
                return session.id
        finally:
            await engine.dispose()

    return asyncio.run(write())
