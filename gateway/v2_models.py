"""Which model and version a V2 path names, remembered for the predict path.

`{model}` is a model key, or a model's name when exactly one model has it;
`{version}` a version number, an alias, or nothing: the version predicts get
by default (the serving alias's, else the latest done one), as
`resources.model_body` says it. The answer (key, family, version, its
artifact's metadata) is remembered for `TTL` seconds, and forgotten at once
when an event says the model changed (a version done, an alias moved, a
deletion), so an infer reads no SQL while its model stays as it is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from marshmallow import ValidationError
from sqlalchemy import select

from contracts.errors import Conflict, InvalidInput, NotFound, NotTrained, TrainingFailed
from contracts.schemas import ALIAS_NAME, MODEL_KEY, POSITIVE_ID
from contracts.status import Status
from contracts.store import Model, TrainingSession
from contracts.topology import EventKind

if TYPE_CHECKING:  # the event hub hands the catalog its inbox
    from .events import Inbox

from .records import Records
from .registry import Registry

log = logging.getLogger(__name__)

TTL = 5.0
_REMEMBERED = 10_000


@dataclass(frozen=True)
class Target:
    """A version a V2 path names."""

    name: str  # as the path spells it: answers are named after it
    model_key: str
    family: str
    version: int
    status: Status
    error: str | None
    meta: dict[str, Any]  # the artifact's metadata ({} before the version is done)
    versions: tuple[int, ...]  # the model's done versions

    def check_done(self) -> None:
        """NotTrained / TrainingFailed (409) unless the version can answer."""
        if self.status is Status.FAILED:
            raise TrainingFailed(f"version {self.version} of model {self.name!r} failed: {self.error}")
        if self.status is not Status.DONE:
            raise NotTrained(f"version {self.version} of model {self.name!r} is {self.status.value}")


def version_of(raw: str | None) -> tuple[int | None, str | None]:
    """(number, alias) of a path's `{version}`; InvalidInput when it is neither."""
    if raw is None:
        return None, None
    if raw.isascii() and raw.isdigit():
        try:
            number = int(raw)
            POSITIVE_ID(number)
        except ValidationError:
            raise InvalidInput(f"version: {raw[:20]!r} is not a version number", fields={"version": ["not a version"]}) from None
        return number, None
    try:
        ALIAS_NAME(raw)
    except ValidationError:
        raise InvalidInput(f"version: {raw[:80]!r} is neither a version number nor an alias", fields={"version": ["not a version"]}) from None
    return None, raw


class Catalog:
    def __init__(self, records: Records, registry: Registry, ttl: float = TTL) -> None:
        self.records = records
        self.registry = registry
        self.ttl = ttl
        self._found: dict[tuple[str, str | None], tuple[float, Target]] = {}

    async def target(self, model: str, version: str | None = None) -> Target:
        """The version `model` and `version` name (remembered); NotFound / Conflict / InvalidInput saying why not."""
        key = (model, version)
        found = self._found.get(key)
        if found is not None and found[0] > time.monotonic():
            return found[1]
        target = await self._resolve(model, version)
        if len(self._found) >= _REMEMBERED:
            self._found.clear()
        self._found[key] = (time.monotonic() + self.ttl, target)
        return target

    def forget(self, model_key: str) -> None:
        for key in [k for k, (_, t) in self._found.items() if t.model_key == model_key]:
            self._found.pop(key, None)

    async def model_key(self, model: str) -> str:
        """The key of the model `model` names: a key, or a name only one model has."""
        try:
            MODEL_KEY(model)
            await self.records.family_of(model)
            return model
        except (ValidationError, NotFound):
            pass
        total, rows = (0, []) if "\x00" in model else await self.records.list_models(None, model[:256], None, 2, 0)
        if total == 0:
            raise NotFound(f"no model named {model[:80]!r} (nor with that model_key)", fields={"model": ["unknown"]})
        if total > 1:
            keys = [m.model_key for m, _ in rows]
            raise Conflict(f"{total} models are named {model[:80]!r} (such as {keys}): name one by its model_key", fields={"model": ["ambiguous"]})
        return rows[0][0].model_key

    async def _resolve(self, model: str, version: str | None) -> Target:
        number, alias = version_of(version)
        key = await self.model_key(model)
        row, latest = await self.records.version_status(key, None)
        registry = (await self.registry.of_models([row.id]))[row.id]
        aliases = registry["aliases"]
        if alias is not None:
            number = aliases.get(alias)
            if number is None:
                raise NotFound(f"model {model[:80]!r} has no alias {alias!r}", fields={"version": ["unknown alias"]})
        elif number is None:
            number = aliases.get(row.serving) if row.serving else registry["latest_done"]
            if number is None:
                if latest.status is Status.FAILED:
                    raise TrainingFailed(f"model {model[:80]!r} failed to train: {latest.error}")
                raise NotTrained(f"model {model[:80]!r} has no trained version yet (its latest is {latest.status.value})")
        _, session, artifact = await self.records.version(key, number)
        _, _, rows = await self.records.versions(key, Status.DONE, 1000, 0)
        return Target(
            name=model,
            model_key=key,
            family=row.family,
            version=session.version,
            status=session.status,
            error=session.error,
            meta=dict(artifact.meta or {}) if artifact is not None else {},
            versions=tuple(sorted(t.version for t, _ in rows)),
        )

    async def every_version(self) -> list[Any]:
        """(model_key, name, family, version, status, error) of every version of every model, oldest model first."""
        async with self.records.sessions() as db:
            query = (
                select(Model.model_key, Model.name, Model.family, TrainingSession.version, TrainingSession.status, TrainingSession.error)
                .join(TrainingSession, TrainingSession.model_id == Model.id)
                .order_by(Model.id, TrainingSession.version)
            )
            return list((await db.execute(query)).all())

    async def follow(self, events: Inbox) -> None:
        """Forget a model's versions when an event says it changed (until the queue says stop: None)."""
        while True:
            event = await events.get()
            if event is None:
                return
            if event["event"] in (EventKind.DELETED, EventKind.ALIAS) or event.get("status") == Status.DONE.value:
                self.forget(event["model_key"])
