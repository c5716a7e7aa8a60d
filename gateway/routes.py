"""The seed's API on `/{family}`: five verbs, answered exactly as the seed answered them.

Existing users have the seed's client, which raises on any status but 200 and
loads answers with schemas that raise on unknown fields, so these answer the
seed's shapes and nothing more (`contracts.responses.Seed*`): a fit or update
is `200 {status, model_key}` with the seed's status names, a status is
`200 {status}`, a delete `200 {}`. Everything richer is on ml-server's own
routes (`resources.py`). Bodies are the seed's JSON (`x`, `y` as pandas JSON
with an `orient`), or Parquet with the other fields in the query string.
"""

from __future__ import annotations

from aiohttp import web
from marshmallow import ValidationError

from contracts.families import FamilyInfo
from contracts.frames import JSON
from contracts.responses import SeedDeleteResponse, SeedStatusResponse, SeedTrainResponse
from contracts.schemas import FAMILY_NAME, FitParams, FitRequest, KeyParams, UpdateParams, UpdateRequest

from . import requests, service
from .state import RECORDS

_TRAIN = SeedTrainResponse()
_STATUS = SeedStatusResponse()
_DELETE = SeedDeleteResponse()


async def family_of(request: web.Request) -> FamilyInfo:
    """The family the path names (404 when no consumer serves it)."""
    name = request.match_info["family"]
    try:
        FAMILY_NAME(name)
    except ValidationError:
        name = name[:64]
    info = await request.app[RECORDS].family(name)
    request["family"] = info.name  # the metrics label: only families that exist
    return info


async def key_params(request: web.Request, what: str) -> dict[str, str]:
    """model_key from the query string, or from a JSON body (the seed's client sends one with GET)."""
    if request.can_read_body and requests.kind(request) == JSON:
        return await requests.json_fields(request, KeyParams(), what, extra=dict(request.query))
    return requests.query(KeyParams, request)


async def fit(request: web.Request) -> web.Response:
    """sklearn `fit`: `200 {status, model_key}`: the new version queued, or the model as it is when it
    exists and no `retrain` was asked for."""
    family = await family_of(request)
    req = await requests.training(request, "fit", FitRequest(), FitParams)
    key, session, _ = await service.fit(request.app, family, req, request.get("actor"))
    return service.respond(_TRAIN.dump({"status": session.status.seed, "model_key": key}))


async def predict(request: web.Request) -> web.Response:
    """sklearn `predict` (or another method through `kwargs.method`): `{data, orient}`, or Parquet."""
    family = await family_of(request)
    return await service.predict(request.app, family.name, await requests.predicting(request))


async def update(request: web.Request) -> web.Response:
    """`partial_fit` on the latest version, queued as a new version: `200 {status, model_key}`."""
    family = await family_of(request)
    req = await requests.training(request, "update", UpdateRequest(), UpdateParams)
    key = req.params["model_key"]
    session = await service.update(request.app, family, key, req, request.get("actor"))
    return service.respond(_TRAIN.dump({"status": session.status.seed, "model_key": key}))


async def status(request: web.Request) -> web.Response:
    """`200 {status}` of the model's latest training session."""
    family = await family_of(request)
    params = await key_params(request, "status")
    _, session = await request.app[RECORDS].status(family.name, params["model_key"])
    return service.respond(_STATUS.dump({"status": session.status.seed}))


async def remove(request: web.Request) -> web.Response:
    """Delete the model, all its versions and artifacts: `200 {}`."""
    family = await family_of(request)
    params = await key_params(request, "delete")
    await service.delete(request.app, family.name, params["model_key"])
    return service.respond(_DELETE.dump({}))


__all__ = ["fit", "predict", "remove", "status", "update"]
