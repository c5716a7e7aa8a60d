"""A model's lifecycle, written in one place: new versions, the history of every change, and the lookups of a
model and its versions.

The gateway (fits, updates and registry edits over REST) and the consumers
(jobs published straight to the broker, imported files) both call these
inside their own transactions; neither creates a version or writes a history
line itself. A version's later moves (claimed, done, failed) are the
consumers' conditional updates (`consumers.records`), fenced so that one
result counts.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import NotFound
from .status import JobKind, Status
from .store import HistoryEntry, Model, TrainingSession, utcnow


class Action(StrEnum):
    """What a line of a model's history records."""

    FIT = "fit"
    UPDATE = "update"
    IMPORT = "import"
    ALIAS = "alias"  # an alias set or moved
    UNALIAS = "unalias"
    SERVING = "serving"  # the alias predicts use by default changed
    TAG = "tag"
    DESCRIBE = "describe"
    QUARANTINE = "quarantine"  # a version whose predicts kept overrunning their deadline was taken out of service


async def record(db: AsyncSession, model_id: int, version: int | None, action: Action, actor: str | None, **detail: Any) -> None:
    """One line of the model's history, in the caller's transaction."""
    db.add(HistoryEntry(model_id=model_id, version=version, action=action.value, actor=actor, at=utcnow(), detail=detail))


async def model_of(db: AsyncSession, model_key: str, family: str | None = None) -> Model:
    """The model `model_key` (of `family`, when given); NotFound naming the key when there is none."""
    query = select(Model).where(Model.model_key == model_key)
    if family is not None:
        query = query.where(Model.family == family)
    model = (await db.execute(query)).scalar_one_or_none()
    if model is None:
        of = f"{family} " if family is not None else ""
        raise NotFound(f"no {of}model with model_key {model_key!r}", fields={"model_key": ["unknown"]})
    return model


async def version_of(db: AsyncSession, model: Model, version: int) -> TrainingSession:
    """Version `version` of `model`; NotFound naming the version when it has none."""
    session = (
        await db.execute(select(TrainingSession).where(TrainingSession.model_id == model.id, TrainingSession.version == version))
    ).scalar_one_or_none()
    if session is None:
        raise NotFound(f"model {model.model_key!r} has no version {version}", fields={"version": ["unknown"]})
    return session


async def latest(db: AsyncSession, model_id: int) -> TrainingSession | None:
    """The model's newest version, whatever its status."""
    query = select(TrainingSession).where(TrainingSession.model_id == model_id).order_by(TrainingSession.version.desc()).limit(1)
    return (await db.execute(query)).scalar_one_or_none()


async def new_version(
    db: AsyncSession,
    model: Model,
    kind: JobKind,
    params: dict[str, Any],
    actor: str | None,
    *,
    status: Status = Status.QUEUED,
    history: dict[str, Any] | None = None,
    **columns: Any,
) -> TrainingSession:
    """The model's next version, and its history line, in the caller's transaction. Two callers racing for
    the same number collide on the store's unique (model, version): the loser retries (`retry_on_conflict`)."""
    newest = (await db.execute(select(func.max(TrainingSession.version)).where(TrainingSession.model_id == model.id))).scalar_one_or_none()
    session = TrainingSession(
        model_id=model.id,
        version=(newest or 0) + 1,
        kind=kind,
        status=status,
        params=params,
        attempts=columns.pop("attempts", 0),
        actor=actor,
        **columns,
    )
    db.add(session)
    await db.flush()
    await record(db, model.id, session.version, Action(kind.value), actor, **(history or {}))
    return session


async def delete_model(db: AsyncSession, family: str, model_key: str) -> int:
    """Delete a model of `family` with every version, artifact, alias, tag and history line (in the caller's
    transaction); how many versions it had. The gateway's REST deletes and a consumer's AMQP delete both come here."""
    model = await model_of(db, model_key, family)
    n = (await db.execute(select(func.count()).select_from(TrainingSession).where(TrainingSession.model_id == model.id))).scalar_one()
    await db.execute(delete(Model).where(Model.id == model.id))
    return int(n)
