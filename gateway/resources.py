"""ml-server's own API: models and families as resources, with everything there is to know.

    GET    /families                                   the families consumers serve
    POST   /families/{family}/models                   fit: 202 {model_key, status, version} (200: exists)
    GET    /models                                     models with their latest version, filtered, paged
    GET    /models/{model_key}                         one model and its latest version
    DELETE /models/{model_key}                         the model and every version
    POST   /models/{model_key}/predict                 predict (JSON `{x, orient, ...}` or Parquet)
    POST   /models/{model_key}/update                  partial_fit: 202 {model_key, status, version}
    GET    /models/{model_key}/versions                every version, newest first, with its metadata
    GET    /models/{model_key}/versions/{version}      one version
    GET    /models/{model_key}/events                  status changes as server-sent events (events.py)

Statuses are the lower-case `Status`; bodies and errors as on the seed's
routes. The project's own clients use these.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import ValidationError

from contracts.errors import InvalidInput, NotFound
from contracts.families import FamilyInfo
from contracts.responses import (
    DeleteResponse,
    FamiliesResponse,
    ModelResponse,
    ModelsResponse,
    TrainResponse,
    VersionResponse,
    VersionsResponse,
)
from contracts.schemas import (
    MODEL_KEY,
    POSITIVE_ID,
    FitParams,
    FitRequest,
    ModelsQuery,
    UpdateParams,
    UpdateRequest,
    VersionsQuery,
)

from . import requests, service
from .routes import family_of
from .state import RECORDS

resources = web.RouteTableDef()

_TRAIN = TrainResponse()
_MODEL = ModelResponse()
_VERSION = VersionResponse()


def version_body(session: Any, artifact: Any = None) -> dict[str, Any]:
    """A version as `VersionResponse` takes it: the session, and its artifact's description when it has one."""
    return {
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
    }


def model_body(model: Any, latest: Any, artifact: Any = None) -> dict[str, Any]:
    return {
        "model_key": model.model_key,
        "family": model.family,
        "name": model.name,
        "created_at": model.created_at,
        "latest": version_body(latest, artifact) if latest is not None else None,
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


@resources.get("/families")
async def families(request: web.Request) -> web.Response:
    """The families consumers have registered, with their parameters and methods."""
    infos = await request.app[RECORDS].families(refresh=True)
    return service.respond(FamiliesResponse().dump({"families": [f.as_dict() for f in infos.values()]}))


@resources.post("/families/{family}/models")
async def fit(request: web.Request) -> web.Response:
    """Train: 202 with the queued version, or 200 with the latest one when the model exists and no retrain."""
    family = await family_of(request)
    req = await requests.training(request, "fit", FitRequest(), FitParams)
    key, session, created = await service.fit(request.app, family, req)
    body = _TRAIN.dump({"model_key": key, "status": session.status, "version": session.version})
    return service.respond(body, status=202 if created else 200)


# ---- models ----------------------------------------------------------------------------------------


@resources.get("/models")
async def list_models(request: web.Request) -> web.Response:
    """Models with their latest version, newest first; filters `family`, `name`, `status`; `limit`/`offset` pages."""
    q = requests.load(ModelsQuery(), dict(request.query))
    total, rows = await request.app[RECORDS].list_models(q["family"], q["name"], q["status"], q["limit"], q["offset"])
    body = {"models": [model_body(m, t) for m, t in rows], "total": total, "limit": q["limit"], "offset": q["offset"]}
    return service.respond(ModelsResponse().dump(body))


@resources.get("/models/{model_key}")
async def get_model(request: web.Request) -> web.Response:
    """One model and its latest version (status, error, timings, metadata)."""
    model, session, artifact = await request.app[RECORDS].version(_key(request), None)
    request["family"] = model.family
    return service.respond(_MODEL.dump(model_body(model, session, artifact)))


@resources.delete("/models/{model_key}")
async def delete_model(request: web.Request) -> web.Response:
    """Delete the model, all its versions and artifacts."""
    key = _key(request)
    family = await _family_of_model(request, key)
    n = await service.delete(request.app, family.name, key)
    return service.respond(DeleteResponse().dump({"model_key": key, "deleted": n}))


@resources.post("/models/{model_key}/predict")
async def predict(request: web.Request) -> web.Response:
    """Predict with the model's latest done version (or `version`): JSON `{x, orient, as_array?, kwargs?,
    version?}` or a Parquet body with those in the query string."""
    key = _key(request)
    family = await _family_of_model(request, key)
    req = await requests.predicting(request, extra={"model_key": key})
    return await service.predict(request.app, family.name, req)


@resources.post("/models/{model_key}/update")
async def update(request: web.Request) -> web.Response:
    """`partial_fit` on the latest done version: 202 with the new version."""
    key = _key(request)
    family = await _family_of_model(request, key)
    req = await requests.training(request, "update", UpdateRequest(), UpdateParams, extra={"model_key": key})
    session = await service.update(request.app, family, key, req)
    return service.respond(_TRAIN.dump({"model_key": key, "status": session.status, "version": session.version}), status=202)


@resources.get("/models/{model_key}/versions")
async def list_versions(request: web.Request) -> web.Response:
    """Every version of one model with its metadata (features, dtypes, score, package versions, params)."""
    q = requests.load(VersionsQuery(), dict(request.query))
    model, total, rows = await request.app[RECORDS].versions(_key(request), q["status"], q["limit"], q["offset"])
    body = {
        "model_key": model.model_key,
        "family": model.family,
        "name": model.name,
        "versions": [version_body(t, a) for t, a in rows],
        "total": total,
        "limit": q["limit"],
        "offset": q["offset"],
    }
    return service.respond(VersionsResponse().dump(body))


@resources.get("/models/{model_key}/versions/{version}")
async def get_version(request: web.Request) -> web.Response:
    """One version of a model, with its metadata."""
    raw = request.match_info["version"]
    try:
        number = int(raw)
        POSITIVE_ID(number)
    except (ValueError, ValidationError):
        raise InvalidInput(f"version: {raw!r} is not a version number", fields={"version": ["not a version number"]}) from None
    _, session, artifact = await request.app[RECORDS].version(_key(request), number)
    return service.respond(_VERSION.dump(version_body(session, artifact)))
