"""HTTP handlers: parse and validate, then hand over to the store and the broker.

No ML here: a handler turns a request into a queued job or an RPC and a
response. Bodies are JSON in the seed's format (`x`, `y` as pandas JSON with
an `orient`) or Parquet (`application/vnd.apache.parquet`) with the other
fields in the query string.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import orjson
import pandas as pd
from aiohttp import web
from marshmallow import Schema, ValidationError

from contracts.errors import DecodeError, InvalidInput, PayloadTooLarge, UnsupportedMediaType, from_wire
from contracts.frames import JSON, PARQUET, JsonCodec, ParquetCodec, decode_training, digest_frames, encode_training
from contracts.schemas import (
    FitParams,
    FitRequest,
    KeyParams,
    PredictParams,
    PredictRequest,
    ReplyHeaders,
    StatusResponse,
    TrainHeaders,
    TrainResponse,
    UpdateParams,
    UpdateRequest,
    PredictHeaders,
    StatusEvent,
    FAMILY_NAME,
)
from contracts.status import Backend, JobKind

from .state import BROKER, RECORDS, SETTINGS

# Bodies bigger than this are parsed in a worker thread, off the event loop.
_THREAD_PARSE_BYTES = 256 * 1024

routes = web.RouteTableDef()


def dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


# ---- request parsing ----------------------------------------------------------


async def _body(request: web.Request) -> bytes:
    limit = request.app[SETTINGS].max_body
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes is over the {limit}-byte limit")
    return await request.read()


def _load(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as e:
        messages = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
        names = ", ".join(sorted(map(str, messages)))
        raise InvalidInput(f"invalid fields: {names}: {messages}", fields=messages) from e


async def _load_json(request: web.Request, schema: Schema, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = await _body(request)
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object")
    if extra:
        data = {**extra, **data}
    if len(raw) > _THREAD_PARSE_BYTES:
        return await asyncio.to_thread(_load, schema, data)
    return _load(schema, data)


def _kind(request: web.Request) -> str:
    ctype = request.content_type
    if ctype in (PARQUET, JSON):
        return ctype
    if ctype == "application/octet-stream" and not request.can_read_body:
        return JSON
    if not request.can_read_body:
        return JSON
    raise UnsupportedMediaType(f"Content-Type must be {JSON} or {PARQUET}, not {ctype!r}")


async def _training_request(
    request: web.Request, json_schema: Schema, params_schema: Schema
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame | None]:
    if _kind(request) == PARQUET:
        params = _load(params_schema, dict(request.query))
        raw = await _body(request)
        x, y = await asyncio.to_thread(decode_training, raw)
        return params, x, y
    data = await _load_json(request, json_schema)
    return data, data.pop("x"), data.pop("y", None)


async def _family(request: web.Request):  # type: ignore[no-untyped-def]
    name = request.match_info["family"]
    try:
        FAMILY_NAME(name)
    except ValidationError:
        name = name[:64]
    return await request.app[RECORDS].family(name)


def _model_key(
    family: str,
    name: str | None,
    x: pd.DataFrame,
    y: pd.DataFrame | None,
    modkwargs: dict[str, Any],
    backend: Backend | None = None,
) -> str:
    """From the name when given (the seed's behaviour), else from the data and the parameters
    (and the backend, when one is asked for: the same data stored as ONNX is another model)."""
    h = hashlib.sha256(family.encode() + b"\0")
    if name is not None:
        h.update(b"name\0" + name.encode())
    else:
        h.update(b"data\0" + digest_frames(x, y).encode() + json.dumps(modkwargs, sort_keys=True, default=str).encode())
        if backend is not None:
            h.update(b"\0backend\0" + backend.value.encode())
    return f"{family}-{h.hexdigest()[:24]}"


def _train_response(model_key: str, session: Any) -> dict[str, Any]:
    return TrainResponse().dump({"model_key": model_key, "status": session.status, "version": session.version})


# ---- the five verbs ---------------------------------------------------------


@routes.put("/{family}")
async def fit(request: web.Request) -> web.Response:
    """sklearn `fit`: 202 with the queued version, or 200 when the model exists and no retrain."""
    family = await _family(request)
    params, x, y = await _training_request(request, FitRequest(), FitParams())
    if family.supervised and y is None:
        raise InvalidInput(f"family {family.name!r} learns from a target: y is required", fields={"y": ["required"]})
    if not family.supervised and y is not None:
        raise InvalidInput(f"family {family.name!r} is unsupervised: send x only", fields={"y": ["not allowed"]})
    backend = params["backend"]
    unknown = sorted(set(params["modkwargs"]) - set(family.params))
    if unknown and family.params:
        raise InvalidInput(
            f"modkwargs: {family.name} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters are {', '.join(family.params)}",
            fields={"modkwargs": [f"unknown parameter {name!r}" for name in unknown]},
        )
    key = _model_key(family.name, params["name"], x, y, params["modkwargs"], backend)
    body = await asyncio.to_thread(encode_training, x, y)
    records = request.app[RECORDS]
    stored = {k: params[k] for k in ("modkwargs", "algkwargs", "name", "retrain")}
    stored["backend"] = backend.value if backend is not None else None  # None: the family's default
    session, created = await records.submit_fit(family.name, key, params["name"], stored, params["retrain"])
    if not created:
        return json_response(_train_response(key, session), status=200)
    await _publish(
        request, family.name, key, session, JobKind.FIT, body, params["modkwargs"], params["algkwargs"], backend
    )
    return json_response(_train_response(key, session), status=202)


@routes.patch("/{family}")
async def update(request: web.Request) -> web.Response:
    """`partial_fit` on the latest version: 202 with the new version."""
    family = await _family(request)
    params, x, y = await _training_request(request, UpdateRequest(), UpdateParams())
    if not family.supports_update:
        raise InvalidInput(f"family {family.name!r} does not support update (partial_fit)")
    if family.supervised and y is None:
        raise InvalidInput(f"family {family.name!r} learns from a target: y is required", fields={"y": ["required"]})
    body = await asyncio.to_thread(encode_training, x, y)
    session = await request.app[RECORDS].submit_update(family.name, params["model_key"], {})
    await _publish(request, family.name, params["model_key"], session, JobKind.UPDATE, body, {}, {})
    return json_response(_train_response(params["model_key"], session), status=202)


async def _publish(
    request: web.Request,
    family: str,
    key: str,
    session: Any,
    kind: JobKind,
    body: bytes,
    modkwargs: dict[str, Any],
    algkwargs: dict[str, Any],
    backend: Backend | None = None,
) -> None:
    job = {
        "job_id": session.id,
        "model_key": key,
        "family": family,
        "version": session.version,
        "kind": kind,
        "modkwargs": modkwargs,
        "algkwargs": algkwargs,
        "backend": backend,
    }
    try:
        if len(body) > request.app[SETTINGS].inline_limit:
            # Too big for one broker message (RabbitMQ 4 caps them at 16 MiB): by reference.
            job["payload_id"] = await request.app[RECORDS].store_payload(session.id, body)
            body = b""
        headers = {k: v for k, v in TrainHeaders().dump(job).items() if v is not None}
        await request.app[BROKER].publish_job(family, body, headers, kind.value)
    except Exception as e:
        # Never a queued session without a message: the caller is told, and so is the store.
        await request.app[RECORDS].fail(session.id, f"could not be queued: {getattr(e, 'message', e)}")
        raise


@routes.post("/{family}")
async def predict(request: web.Request) -> web.Response:
    """sklearn `predict` (or another method through `kwargs.method`), as an RPC with a deadline."""
    family = await _family(request)
    if _kind(request) == PARQUET:
        params = _load(PredictParams(), dict(request.query))
        # Forwarded as sent: the consumer reads (and validates) the frame once, and
        # a body that is not a readable frame comes back as the same 422.
        payload = await _body(request)
    else:
        params = await _load_json(request, PredictRequest())
        x = params.pop("x")
        payload = ParquetCodec.encode(x) if len(x) < 10_000 else await asyncio.to_thread(ParquetCodec.encode, x)
    settings = request.app[SETTINGS]
    headers = PredictHeaders().dump({"model_key": params["model_key"], "version": params["version"], "kwargs": params["kwargs"]})
    headers = {k: v for k, v in headers.items() if v is not None}
    reply_headers, reply_body = await request.app[BROKER].call(family.name, payload, headers, settings.predict_timeout)
    reply = ReplyHeaders().load(reply_headers)
    if reply["status"] != 200:
        raise from_wire(reply["code"] or "internal_error", reply["message"] or "consumer error", reply["fields"])
    if PARQUET in request.headers.get("Accept", ""):
        return web.Response(body=reply_body, content_type=PARQUET)
    frame = ParquetCodec.decode(reply_body, what="prediction")
    orient = params["orient"]
    if params["as_array"]:
        values = frame.to_numpy()
        data = dumps((values[:, 0] if values.shape[1] == 1 else values).tolist())
    else:
        data = JsonCodec.encode(frame, orient)
    return json_response({"data": data, "orient": orient})


async def _key_params(request: web.Request) -> dict[str, Any]:
    """model_key from the query string, or from a JSON body (the seed's client sends one with GET)."""
    if request.can_read_body and _kind(request) == JSON:
        return await _load_json(request, KeyParams(), extra=dict(request.query))
    return _load(KeyParams(), dict(request.query))


@routes.get("/{family}")
async def status(request: web.Request) -> web.Response:
    """Status of the model's latest training session."""
    family = await _family(request)
    params = await _key_params(request)
    model, session = await request.app[RECORDS].status(family.name, params["model_key"])
    return json_response(
        StatusResponse().dump(
            {
                "model_key": model.model_key,
                "family": model.family,
                "name": model.name,
                "status": session.status,
                "version": session.version,
                "kind": session.kind,
                "base_version": session.base_version,
                "error": session.error,
                "rows": session.rows,
                "attempts": session.attempts,
                "worker": session.worker,
                "created_at": session.created_at,
                "started_at": session.started_at,
                "finished_at": session.finished_at,
            }
        )
    )


@routes.delete("/{family}")
async def remove(request: web.Request) -> web.Response:
    """Delete the model, all its versions and artifacts."""
    family = await _family(request)
    params = await _key_params(request)
    n = await request.app[RECORDS].delete(family.name, params["model_key"])
    await request.app[BROKER].publish_event(
        family.name,
        params["model_key"],
        StatusEvent().dump({"event": "deleted", "model_key": params["model_key"], "family": family.name}),
    )
    return json_response({"model_key": params["model_key"], "deleted": n})


__all__ = ["routes", "DecodeError"]
