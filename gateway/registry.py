"""The registry in the store: aliases, the serving alias, tags, descriptions, and who did what.

An alias names one `done` version of a model (`champion` -> 3); moving it is
pointing it at another version, which is also how a rollback is done. A model
may serve one alias by default (`serving`): predicts that name neither a
version nor an alias then get that alias's version, so a retrain changes
nothing they answer until someone moves the alias. Every change is a row of
the model's history, with the bearer token's name that asked for it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.errors import Conflict, InvalidInput, NotFound, NotTrained
from contracts.status import Status
from contracts import lifecycle
from contracts.lifecycle import Action, model_of, record, version_of
from contracts.store import Alias, HistoryEntry, Model, Tag, TrainingSession, retry_on_conflict, utcnow


# The model's own tags are stored with version 0.
MODEL = 0


class Registry:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    # ---- aliases --------------------------------------------------------------------------------

    async def set_alias(self, model_key: str, alias: str, version: int, actor: str | None) -> tuple[Model, int | None]:
        """Point `alias` at `version` (a done version of the model); (the model, the version it pointed at before)."""

        async def attempt() -> tuple[Model, int | None]:
            async with self.sessions.begin() as db:
                model = await model_of(db, model_key)
                status = (
                    await db.execute(
                        select(TrainingSession.status).where(TrainingSession.model_id == model.id, TrainingSession.version == version)
                    )
                ).scalar_one_or_none()
                if status is None:
                    raise NotFound(f"model {model_key!r} has no version {version}", fields={"version": ["unknown"]})
                if status is not Status.DONE:
                    raise NotTrained(f"version {version} of model {model_key!r} is {status.value}: an alias points at a done version")
                row = await lifecycle.alias(db, model.id, alias)
                before = row.version if row is not None else None
                if row is None:
                    db.add(Alias(model_id=model.id, name=alias, version=version, updated_at=utcnow(), updated_by=actor))
                else:
                    row.version, row.updated_at, row.updated_by = version, utcnow(), actor
                await record(db, model.id, version, Action.ALIAS, actor, alias=alias, before=before)
                return model, before

        return await retry_on_conflict(attempt)

    async def remove_alias(self, model_key: str, alias: str, actor: str | None) -> tuple[Model, int]:
        """Remove `alias`; (the model, the version it pointed at). Conflict when the model serves it."""
        async with self.sessions.begin() as db:
            model = await model_of(db, model_key)
            row = await lifecycle.alias(db, model.id, alias)
            if row is None:
                raise NotFound(f"model {model_key!r} has no alias {alias!r}", fields={"alias": ["unknown"]})
            if model.serving == alias:
                raise Conflict(
                    f"model {model_key!r} serves alias {alias!r}: set `serving` to another alias (or null) before removing it",
                    fields={"alias": ["serving"]},
                )
            version = row.version
            await db.delete(row)
            await record(db, model.id, version, Action.UNALIAS, actor, alias=alias)
            return model, version

    # ---- what a model is: description, tags, serving ----------------------------------------------

    async def patch_model(self, model_key: str, changes: dict[str, Any], actor: str | None) -> Model:
        async with self.sessions.begin() as db:
            model = await model_of(db, model_key)
            if "serving" in changes:
                serving = changes["serving"]
                if serving is not None:
                    if await lifecycle.alias(db, model.id, serving) is None:
                        raise InvalidInput(
                            f"serving: model {model_key!r} has no alias {serving!r} (set it first: PUT /models/{model_key}/aliases/{serving})",
                            fields={"serving": [f"no alias {serving!r}"]},
                        )
                if serving != model.serving:
                    await record(db, model.id, None, Action.SERVING, actor, serving=serving, before=model.serving)
                    model.serving = serving
            await self._describe(db, model, None, changes, actor)
            return model

    async def patch_version(self, model_key: str, version: int, changes: dict[str, Any], actor: str | None) -> TrainingSession:
        async with self.sessions.begin() as db:
            model = await model_of(db, model_key)
            session = await version_of(db, model, version)
            await self._describe(db, model, session, changes, actor)
            return session

    async def _describe(
        self, db: AsyncSession, model: Model, session: TrainingSession | None, changes: dict[str, Any], actor: str | None
    ) -> None:
        version = session.version if session is not None else None
        if "description" in changes:
            target: Any = session if session is not None else model
            if changes["description"] != target.description:
                target.description = changes["description"]
                await record(db, model.id, version, Action.DESCRIBE, actor, description=changes["description"])
        if "tags" in changes:
            number = version if version is not None else MODEL
            tags = sorted(set(changes["tags"]))
            await db.execute(delete(Tag).where(Tag.model_id == model.id, Tag.version == number))
            db.add_all(Tag(model_id=model.id, version=number, name=t) for t in tags)
            await record(db, model.id, version, Action.TAG, actor, tags=tags)

    # ---- reading -------------------------------------------------------------------------------------

    async def of_models(self, model_ids: list[int]) -> dict[int, dict[str, Any]]:
        """For each model: its aliases (name -> version) and tags, and the tags and aliases of its versions."""
        out: dict[int, dict[str, Any]] = {
            i: {"aliases": {}, "tags": [], "version_tags": defaultdict(list), "latest_done": None} for i in model_ids
        }
        if not model_ids:
            return out
        async with self.sessions() as db:
            for model_id, version in (
                await db.execute(
                    select(TrainingSession.model_id, func.max(TrainingSession.version))
                    .where(TrainingSession.model_id.in_(model_ids), TrainingSession.status == Status.DONE)
                    .group_by(TrainingSession.model_id)
                )
            ).all():
                out[model_id]["latest_done"] = version
            for model_id, name, version in (
                await db.execute(select(Alias.model_id, Alias.name, Alias.version).where(Alias.model_id.in_(model_ids)))
            ).all():
                out[model_id]["aliases"][name] = version
            for model_id, version, name in (
                await db.execute(
                    select(Tag.model_id, Tag.version, Tag.name).where(Tag.model_id.in_(model_ids)).order_by(Tag.name)
                )
            ).all():
                if version == MODEL:
                    out[model_id]["tags"].append(name)
                else:
                    out[model_id]["version_tags"][version].append(name)
        return out

    async def history(self, model_key: str, version: int | None = None, limit: int = 1000) -> list[HistoryEntry]:
        async with self.sessions() as db:
            model = await model_of(db, model_key)
            query = select(HistoryEntry).where(HistoryEntry.model_id == model.id)
            if version is not None:
                query = query.where(HistoryEntry.version == version)
            return list((await db.execute(query.order_by(HistoryEntry.id.desc()).limit(limit))).scalars().all())
