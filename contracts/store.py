"""The SQL store's tables, and the engine factory both sides use.

    models     one row per model_key (family, optional name, description, the alias it serves)
    sessions   one row per training session = one version of a model (and who asked for it)
    artifacts  the serialized estimator of a `done` session (at most one each)
    payloads   training data sent by reference (too big for one message)
    families   what each served family is, as published by its consumers
    aliases    names pointing at a version of a model (`champion` -> 3)
    tags       labels of a model (version 0) or of one of its versions
    history    who did what to a model and its versions, and when
    searches   hyperparameter searches: their candidates are the versions of one model, each a fit job

The store decides which result counts: a session becomes `done` only through
a conditional update in the same transaction that inserts its artifact, and
`artifacts.session_id` is unique, so a job delivered twice still yields one
`done` version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import (
    select,
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    true,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from .status import JobKind, Status

T = TypeVar("T")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on every database (SQLite stores naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


def _enum(cls: type) -> Enum:
    return Enum(cls, values_callable=lambda e: [m.value for m in e], native_enum=False, length=16)


# Ids are never reused (SQLite would reuse a deleted row's id without
# AUTOINCREMENT): consumers cache loaded models by session id.
_NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Model(Base):
    __tablename__ = "models"
    __table_args__ = _NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_key: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    description: Mapped[str | None] = mapped_column(Text)
    # The alias predicts without a version or an alias use; None: the latest done version.
    serving: Mapped[str | None] = mapped_column(String(64))


class TrainingSession(Base):
    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_sessions_model_version"), _NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind))
    status: Mapped[Status] = mapped_column(_enum(Status), index=True)
    base_version: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rows: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))
    # For jobs published straight to the broker: the message id, so a redelivery finds its session.
    job_ref: Mapped[str | None] = mapped_column(String(128), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Who may finish the session: the token of its latest claim (a fencing token). A long fit handed
    # over (its message acked) holds a lease until `lease_expires`, renewed while it runs; a lease
    # that ran out is reclaimed by another consumer of the family, from the job stored in `handover`.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    handover: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)
    # Who asked for this version (the bearer token's name; None without auth or for direct AMQP jobs).
    actor: Mapped[str | None] = mapped_column(String(128))


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = _NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), unique=True)
    backend: Mapped[str] = mapped_column(String(16))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Payload(Base):
    """Training data too big for one broker message: stored first, the job carries its id.

    Deleted by the consumer when the job ends (done or failed).
    """

    __tablename__ = "payloads"
    __table_args__ = _NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Family(Base):
    __tablename__ = "families"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    supervised: Mapped[bool] = mapped_column(Boolean, default=True)
    supports_update: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[list[str]] = mapped_column(JSON, default=list)
    methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    fits: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Alias(Base):
    """A name pointing at one `done` version of a model; moved by pointing it elsewhere."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_aliases_model_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(128))


class Tag(Base):
    """A label on a model (`version` 0) or on one of its versions."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("model_id", "version", "name", name="uq_tags_model_version_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(64), index=True)


class HistoryEntry(Base):
    """One thing done to a model: fit, update, import, alias set or removed, serving, tags, description."""

    __tablename__ = "history"
    __table_args__ = _NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Search(Base):
    """A hyperparameter search: each candidate a version (a fit job with `cv` folds) of the model
    `candidates`; the winner fitted again as a new version of the model named `name`."""

    __tablename__ = "searches"
    __table_args__ = _NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str | None] = mapped_column(String(64))
    # running (candidates) -> refitting (the winner's fit) -> done | failed | cancelled
    state: Mapped[str] = mapped_column(String(16), index=True)
    # what was asked: candidates' parameters (in order), cv, scoring, the base modkwargs and algkwargs
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    candidates: Mapped[str] = mapped_column(String(64))  # the model_key whose versions are the candidates
    result_key: Mapped[str | None] = mapped_column(String(64))  # the model `name`, refitted
    result_version: Mapped[int | None] = mapped_column(Integer)
    best_version: Mapped[int | None] = mapped_column(Integer)  # the winning candidate's version
    error: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


def async_url(url: str) -> str:
    """Map a plain database URL to the asyncio driver SQLAlchemy should use."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
    name = parsed.drivername
    if name in driver:
        parsed = parsed.set(drivername=driver[name])
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> AsyncEngine:
    """An asyncio engine; SQLite gets WAL and a busy timeout (many processes share the file)."""
    aurl = async_url(url)
    if aurl.startswith("sqlite"):
        engine = create_async_engine(aurl, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(aurl, pool_pre_ping=True, pool_size=10, max_overflow=10)


async def retry_on_conflict(attempt: Callable[[], Awaitable[T]], tries: int = 5) -> T:
    """Run a transaction again when a concurrent writer won a unique constraint (a new version, a new model)."""
    for n in range(tries):
        try:
            return await attempt()
        except IntegrityError:
            if n == tries - 1:
                raise
    raise AssertionError("unreachable")


async def model_row(db: AsyncSession, model_key: str, family: str, name: str | None) -> Model:
    """The model with this key, created (in the caller's transaction) when there is none. Its family
    may differ from `family`: the caller decides what that means."""
    model = (await db.execute(select(Model).where(Model.model_key == model_key))).scalar_one_or_none()
    if model is None:
        model = Model(model_key=model_key, family=family, name=name)
        db.add(model)
        await db.flush()
    return model
