"""ml-server's own API: models and families as resources, with everything there is to know.

Which handler serves which path, with which scope, is the route table's to say (`table.py`).
Statuses are the lower-case `Status`; bodies and errors as on the seed's
routes. The project's own clients use these.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import ValidationError

from contracts.errors import InvalidInput, NotFound
from contracts.status import Status
from contracts.families import FamilyInfo
from contracts.responses import (
    AliasResponse,
    DeleteResponse,
    HistoryResponse,
    FamiliesResponse,
    ModelResponse,
    ModelsResponse,
    TrainResponse,
    VersionResponse,
    VersionsResponse,
)
from contracts.schemas import (
    ALIAS_NAME,
    MODEL_KEY,
    POSITIVE_ID,
    AliasRequest,
    FitParams,
    FitRequest,
    HistoryQuery,
    ImportParams,
    ModelPatch,
    ModelsQuery,
    UpdateParams,
    UpdateRequest,
    VersionPatch,
    VersionsQuery,
)

from . import requests, service
from .routes import family_of
from .state import RECORDS, REGISTRY

_TRAIN = TrainResponse()
_MODEL = ModelResponse()
_VERSION = VersionResponse()


def version_body(session: Any, artifact: Any = None, registry: dict[str, Any] | None = None) -> dict[str, Any]:
    """A version as `VersionResponse` takes it: the session, its artifact's description when it has one,
    and (`registry`: the model's, from `Registry.of_models`) its tags and the aliases pointing at it."""
    registry = registry or {"aliases": {}, "version_tags": {}}
    return {
        "description": session.description,
        "actor": session.actor,
        "tags": list(registry["version_tags"].get(session.version, [])),
        "aliases": sorted(a for a, v in registry["aliases"].items() if v == session.version),
        "version": session.version,
        "kind": session.kind,
        "status": session.status,
        "base_version": session.base_version,
        "params": session.params,
        "rows": session.rows,
        "error": session.error,
        "worker": session.worker,
        "attempts": session.attempts,
        "created_at": session.created_at,
        "started_at": session.started_at,
        "finished_at": session.finished_at,
        "backend": artifact.backend if artifact is not None else None,
        "size": artifact.size if artifact is not None else None,
        "digest": artifact.digest if artifact is not None else None,
        "metadata": artifact.meta if artifact is not None else None,
        "scores": (artifact.meta or {}).get("scores") if artifact is not None else None,
    }


def model_body(model: Any, latest: Any, registry: dict[str, Any], artifact: Any = None) -> dict[str, Any]:
    aliases = registry["aliases"]
    return {
        "model_key": model.model_key,
        "family": model.family,
        "name": model.name,
        "created_at": model.created_at,
        "description": model.description,
        "tags": registry["tags"],
        "aliases": aliases,
        "serving": model.serving,
        "serving_version": aliases.get(model.serving) if model.serving else registry["latest_done"],
        "latest": version_body(latest, artifact, registry) if latest is not None else None,
    }


def _key(request: web.Request) -> str:
    """The path's model key; one that can't be a key names no model (404)."""
    key = request.match_info["model_key"]
    try:
        MODEL_KEY(key)
    except ValidationError:
        raise NotFound(f"no model with model_key {key[:80]!r}", fields={"model_key": ["not a model key"]}) from None
    return key


async def _family_of_model(request: web.Request, key: str) -> FamilyInfo:
    name = await request.app[RECORDS].family_of(key)
    info = await request.app[RECORDS].family(name)
    request["family"] = info.name
    return info


# ---- families and fits -----------------------------------------------------------------------------


async def families(request: web.Request) -> web.Response:
    """The families consumers have registered, with their parameters and methods."""
    infos = await request.app[RECORDS].families(refresh=True)
    return service.respond(FamiliesResponse().dump({"families": [f.as_dict() for f in infos.values()]}))


async def fit(request: web.Request) -> web.Response:
    """Train: 202 with the queued version, or 200 with the latest one when the model exists and no retrain."""
    family = await family_of(request)
    req = await requests.training(request, "fit", FitRequest(), FitParams)
    key, session, created = await service.fit(request.app, family, req, request.get("actor"))
    body = _TRAIN.dump({"model_key": key, "status": session.status, "version": session.version})
    return service.respond(body, status=202 if created else 200)


async def import_new(request: web.Request) -> web.Response:
    """A model trained elsewhere (the body: a skops file, or an ONNX graph for the `onnx` family) as a new
    model: 201 with its done version 1; 200 when the same file was imported before."""
    family = await family_of(request)
    return await _import(request, family, None)


async def _import(request: web.Request, family: FamilyInfo, key: str | None) -> web.Response:
    params = requests.query(ImportParams, request)
    blob = await requests.body(request, "import")
    key, version, created = await service.import_model(request.app, family, key, params, blob, request.get("actor"))
    body = _TRAIN.dump({"model_key": key, "status": Status.DONE, "version": version})
    return service.respond(body, status=201 if created else 200)


# ---- models ----------------------------------------------------------------------------------------


async def list_models(request: web.Request) -> web.Response:
    """Models with their latest version, newest first; filters `family`, `name`, `status`; `limit`/`offset` pages."""
    q = requests.load(ModelsQuery(), dict(request.query))
    total, rows = await request.app[RECORDS].list_models(q["family"], q["name"], q["status"], q["limit"], q["offset"], q["tag"])
    registry = await request.app[REGISTRY].of_models([m.id for m, _ in rows])
    models = [model_body(m, t, registry[m.id]) for m, t in rows]
    body = {"models": models, "total": total, "limit": q["limit"], "offset": q["offset"]}
    return service.respond(ModelsResponse().dump(body))


async def get_model(request: web.Request) -> web.Response:
    """One model and its latest version (status, error, timings, metadata)."""
    model, session, artifact = await request.app[RECORDS].version(_key(request), None)
    request["family"] = model.family
    registry = (await request.app[REGISTRY].of_models([model.id]))[model.id]
    return service.respond(_MODEL.dump(model_body(model, session, registry, artifact)))


async def delete_model(request: web.Request) -> web.Response:
    """Delete the model, all its versions and artifacts."""
    key = _key(request)
    family = await _family_of_model(request, key)
    n = await service.delete(request.app, family.name, key)
    return service.respond(DeleteResponse().dump({"model_key": key, "deleted": n}))


async def predict(request: web.Request) -> web.Response:
    """Predict with the model's latest done version (or `version`): JSON `{x, orient, as_array?, kwargs?,
    version?}` or a Parquet body with those in the query string."""
    key = _key(request)
    family = await _family_of_model(request, key)
    req = await requests.predicting(request, extra={"model_key": key})
    return await service.predict(request.app, family.name, req)


async def update(request: web.Request) -> web.Response:
    """`partial_fit` on the latest done version: 202 with the new version."""
    key = _key(request)
    family = await _family_of_model(request, key)
    req = await requests.training(request, "update", UpdateRequest(), UpdateParams, extra={"model_key": key})
    session = await service.update(request.app, family, key, req, request.get("actor"))
    return service.respond(_TRAIN.dump({"model_key": key, "status": session.status, "version": session.version}), status=202)


async def import_version(request: web.Request) -> web.Response:
    """A model file as the next version of this model (same family): 201 with the version."""
    key = _key(request)
    family = await _family_of_model(request, key)
    return await _import(request, family, key)


async def list_versions(request: web.Request) -> web.Response:
    """Every version of one model with its metadata (features, dtypes, score, package versions, params)."""
    q = requests.load(VersionsQuery(), dict(request.query))
    model, total, rows = await request.app[RECORDS].versions(_key(request), q["status"], q["limit"], q["offset"])
    registry = (await request.app[REGISTRY].of_models([model.id]))[model.id]
    body = {
        "model_key": model.model_key,
        "family": model.family,
        "name": model.name,
        "versions": [version_body(t, a, registry) for t, a in rows],
        "total": total,
        "limit": q["limit"],
        "offset": q["offset"],
    }
    return service.respond(VersionsResponse().dump(body))


async def get_version(request: web.Request) -> web.Response:
    """One version of a model, with its metadata."""
    model, session, artifact = await request.app[RECORDS].version(_key(request), _version(request))
    registry = (await request.app[REGISTRY].of_models([model.id]))[model.id]
    return service.respond(_VERSION.dump(version_body(session, artifact, registry)))


def _version(request: web.Request) -> int:
    raw = request.match_info["version"]
    try:
        number = int(raw)
        POSITIVE_ID(number)
    except (ValueError, ValidationError):
        raise InvalidInput(f"version: {raw!r} is not a version number", fields={"version": ["not a version number"]}) from None
    return number


# ---- the registry: aliases, serving, tags, descriptions, history ------------------------------------


async def set_alias(request: web.Request) -> web.Response:
    """Point an alias at a done version (`{"version": N}`); moving it back is a rollback."""
    key, alias = _key(request), _alias(request)
    version = (await requests.json_fields(request, AliasRequest(), "status"))["version"]
    model, _ = await request.app[REGISTRY].set_alias(key, alias, version, request.get("actor"))
    request["family"] = model.family
    await service.alias_event(request.app, model, alias, version)
    return service.respond(AliasResponse().dump({"model_key": key, "alias": alias, "version": version}))


async def remove_alias(request: web.Request) -> web.Response:
    """Remove an alias (not the one the model serves: change `serving` first)."""
    key, alias = _key(request), _alias(request)
    model, _ = await request.app[REGISTRY].remove_alias(key, alias, request.get("actor"))
    request["family"] = model.family
    await service.alias_event(request.app, model, alias, None)
    return service.respond(AliasResponse().dump({"model_key": key, "alias": alias, "version": None}))


async def patch_model(request: web.Request) -> web.StreamResponse:
    """Change a model's `description`, `tags` or `serving` alias (null: predicts get the latest done version)."""
    key = _key(request)
    changes = await requests.json_fields(request, ModelPatch(), "status")
    before = await request.app[RECORDS].family_of(key)
    model = await request.app[REGISTRY].patch_model(key, changes, request.get("actor"))
    request["family"] = before
    if "serving" in changes:
        await service.alias_event(request.app, model, model.serving, None)
    return await get_model(request)


async def patch_version(request: web.Request) -> web.StreamResponse:
    """Change a version's `description` or `tags`."""
    key, number = _key(request), _version(request)
    changes = await requests.json_fields(request, VersionPatch(), "status")
    await request.app[REGISTRY].patch_version(key, number, changes, request.get("actor"))
    return await get_version(request)


async def history(request: web.Request) -> web.Response:
    """Who did what to the model and its versions, and when, newest first (`version` narrows it to one version)."""
    key = _key(request)
    version = requests.load(HistoryQuery(), dict(request.query))["version"]
    entries = await request.app[REGISTRY].history(key, version)
    body = {"model_key": key, "history": [{"version": e.version, "action": e.action, "actor": e.actor, "at": e.at, "detail": e.detail} for e in entries]}
    return service.respond(HistoryResponse().dump(body))


def _alias(request: web.Request) -> str:
    alias = request.match_info["alias"]
    try:
        ALIAS_NAME(alias)
    except ValidationError as e:
        raise InvalidInput(f"alias: {alias[:80]!r}: {e.messages[0]}", fields={"alias": e.messages}) from None
    return alias
