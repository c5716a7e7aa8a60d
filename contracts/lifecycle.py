"""A model's lifecycle, written in one place: new versions, their moves from status to status, aliases, the
history of every change, and the lookups of a model and its versions.

The gateway (fits, updates and registry edits over REST) and the consumers
(jobs published straight to the broker, imported files, claims and results)
both call these inside their own transactions; neither creates a version,
moves one or writes a history line itself.

A version is created `queued` (a fit or update) or `done` (an import). Its moves:

    claim       queued, running -> running   a consumer starts it (again, after a redelivery or a lease ran out)
    finish      queued, running -> done      its artifact is stored
    fail        queued, running -> failed    the fit raised, it killed its consumers, or it could not be queued
    cancel      queued, running -> failed    its search was cancelled
    quarantine  done -> failed               its predicts kept overrunning their deadline

Each move is one conditional UPDATE (`move`): it changes a version only from
a status the move leaves from, so of two racing moves exactly one counts.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import Update, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import NotFound
from .status import JobKind, Status
from .store import Alias, HistoryEntry, Model, TrainingSession, utcnow


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


class Move(StrEnum):
    """A version's move from one status to another (the table above)."""

    CLAIM = "claim"
    FINISH = "finish"
    FAIL = "fail"
    CANCEL = "cancel"
    QUARANTINE = "quarantine"


OPEN = (Status.QUEUED, Status.RUNNING)  # a version still to be run, or running
_MOVES: dict[Move, tuple[tuple[Status, ...], Status]] = {
    Move.CLAIM: (OPEN, Status.RUNNING),
    Move.FINISH: (OPEN, Status.DONE),
    Move.FAIL: (OPEN, Status.FAILED),
    Move.CANCEL: (OPEN, Status.FAILED),
    Move.QUARANTINE: ((Status.DONE,), Status.FAILED),
}


def move(kind: Move, *where: Any, **values: Any) -> Update:
    """The conditional UPDATE of a move, for the versions matching `where` still in a status it leaves from;
    `values` set the other columns. A move that ends a run (finish, fail, cancel) stamps `finished_at`."""
    leaves, to = _MOVES[kind]
    if to.finished and kind is not Move.QUARANTINE:
        values.setdefault("finished_at", utcnow())
    return update(TrainingSession).where(TrainingSession.status.in_(leaves), *where).values(status=to, **values)


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


async def alias(db: AsyncSession, model_id: int, name: str) -> Alias | None:
    """The model's alias `name`, if it has one."""
    return (await db.execute(select(Alias).where(Alias.model_id == model_id, Alias.name == name))).scalar_one_or_none()


async def aliased(db: AsyncSession, model_key: str, model_id: int, name: str) -> int:
    """The version alias `name` points at; NotFound naming the alias when the model has none of that name."""
    version = (await db.execute(select(Alias.version).where(Alias.model_id == model_id, Alias.name == name))).scalar_one_or_none()
    if version is None:
        raise NotFound(f"model {model_key!r} has no alias {name!r}", fields={"alias": ["unknown"]})
    return int(version)


async def delete_model(db: AsyncSession, family: str, model_key: str) -> int:
    """Delete a model of `family` with every version, artifact, alias, tag and history line (in the caller's
    transaction); how many versions it had. The gateway's REST deletes and a consumer's AMQP delete both come here."""
    model = await model_of(db, model_key, family)
    n = (await db.execute(select(func.count()).select_from(TrainingSession).where(TrainingSession.model_id == model.id))).scalar_one()
    await db.execute(delete(Model).where(Model.id == model.id))
    return int(n)
