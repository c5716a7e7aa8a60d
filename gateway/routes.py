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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
from aiohttp import web
from marshmallow import Schema, ValidationError

from contracts.errors import DecodeError, InvalidInput, PayloadTooLarge, UnsupportedMediaType, from_wire
from contracts.frames import (
    JSON,
    PARQUET,
    JsonCodec,
    ParquetCodec,
    check_table,
    decode_training,
    digest_frames,
    encode_training,
    has_default_index,
    normalize,
    training_targets,
)
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
from contracts.families import FamilyInfo
from contracts.status import Backend, JobKind
from contracts.topology import EventKind

from . import metrics
from .batching import Answer
from .state import BROKER, COALESCER, RECORDS, SETTINGS

# Bodies bigger than this are parsed in a worker thread, off the event loop.
_THREAD_PARSE_BYTES = 256 * 1024

routes = web.RouteTableDef()


def dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


# ---- request parsing ----------------------------------------------------------


# A status or delete body holds a model key (the seed's client sends one with GET).
_KEY_BODY_LIMIT = 1 << 20


def _body_limit(request: web.Request) -> tuple[int, str]:
    settings = request.app[SETTINGS]
    if request.method == "POST":
        return min(settings.max_predict_body, settings.max_body), "predict"
    if request.method in ("PUT", "PATCH"):
        return settings.max_body, "fit" if request.method == "PUT" else "update"
    return _KEY_BODY_LIMIT, request.method


async def _body(request: web.Request) -> bytes:
    """The body, refused with 413 past the verb's limit: from Content-Length before reading,
    or while reading a chunked body."""
    limit, verb = _body_limit(request)
    if request.content_length is not None:
        if request.content_length > limit:
            raise PayloadTooLarge(f"{verb} body of {request.content_length} bytes is over the {limit}-byte limit")
        return await request.read()
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"{verb} body is over the {limit}-byte limit")
    return bytes(data)


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


@dataclass
class _Training:
    """A fit or update request: its parameters, and its data as frames or as the Parquet to queue."""

    params: dict[str, Any]
    has_y: bool
    x: pd.DataFrame | None = None
    y: pd.DataFrame | None = None
    body: bytes | None = None

    async def encoded(self) -> bytes:
        if self.body is None:
            assert self.x is not None
            self.body = await asyncio.to_thread(encode_training, self.x, self.y)
        return self.body


async def _training_request(
    request: web.Request, json_schema: Schema, params_schema: Schema, frames: Callable[[dict[str, Any]], bool]
) -> _Training:
    """`frames(params)`: whether the handler needs the data as frames. When it does not, a
    Parquet body is checked from its footer and queued as it came, never decoded here."""
    if _kind(request) == PARQUET:
        params = _load(params_schema, dict(request.query))
        raw = await _body(request)
        if not frames(params):
            targets = training_targets(raw)
            return _Training(params, bool(targets), body=raw)
        x, y = await asyncio.to_thread(decode_training, raw)
        return _Training(params, y is not None, x, y)
    data = await _load_json(request, json_schema)
    x, y = data.pop("x"), data.pop("y", None)
    return _Training(data, y is not None, x, y)


async def _family(request: web.Request) -> FamilyInfo:
    name = request.match_info["family"]
    try:
        FAMILY_NAME(name)
    except ValidationError:
        name = name[:64]
    info = await request.app[RECORDS].family(name)
    request["family"] = info.name  # the metrics label: only families that exist
    return info


def _model_key(
    family: str,
    name: str | None,
    x: pd.DataFrame | None,
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
    # Frames only to name the model after its data; a named model's Parquet goes on as sent.
    req = await _training_request(request, FitRequest(), FitParams(), frames=lambda p: p["name"] is None)
    params = req.params
    family.check_target(req.has_y)
    family.check_modkwargs(params["modkwargs"])
    backend = params["backend"]
    key = _model_key(family.name, params["name"], req.x, req.y, params["modkwargs"], backend)
    body = await req.encoded()
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
    req = await _training_request(request, UpdateRequest(), UpdateParams(), frames=lambda p: False)
    params = req.params
    if not family.supports_update:
        raise InvalidInput(f"family {family.name!r} does not support update (partial_fit)")
    if family.supervised:
        family.check_target(req.has_y)
    body = await req.encoded()
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


_PREDICT_PARAMS = PredictParams()
_PREDICT_REQUEST = PredictRequest()


@routes.post("/{family}")
async def predict(request: web.Request) -> web.Response:
    """sklearn `predict` (or another method through `kwargs.method`), as an RPC with a deadline.

    Rows without an index of their own go through the coalescer, which sends
    concurrent predicts for the same model as one message; a frame with its
    own index goes alone, and its answer keeps that index.
    """
    family = await _family(request)
    settings = request.app[SETTINGS]
    raw: bytes | None = None
    answer: Answer | None = None
    if _kind(request) == PARQUET:
        params = _load(_PREDICT_PARAMS, dict(request.query))
        raw = await _body(request)
        schema, rows = ParquetCodec.footer(raw)
        if rows >= settings.batch_max_rows:
            # Too big to share a message: checked from the footer, forwarded as sent, and the
            # consumer's answer passed back as it came (decoded only for a JSON answer).
            check_table(schema.empty_table(), rows=rows)
            answer = await _predict_alone(request, family.name, params, raw, rows)
    if answer is not None:
        pass
    elif raw is not None:
        if len(raw) > _THREAD_PARSE_BYTES:
            table = await asyncio.to_thread(ParquetCodec.decode_table, raw)
        else:
            table = ParquetCodec.decode_table(raw)
        own_index = not has_default_index(check_table(table))
        if not own_index and table.schema.metadata:
            # Grouped by columns and types: pandas metadata differs from request to request. A request
            # that gets a message to itself is still forwarded as it came (`raw`), not re-encoded.
            table = table.replace_schema_metadata(None)
    else:
        params = await _load_json(request, _PREDICT_REQUEST)
        x = params.pop("x")
        own_index = not x.index.equals(pd.RangeIndex(len(x)))  # JSON gives 0..n-1 as integers: that is no index
        table = pa.Table.from_pandas(x, preserve_index=own_index)
        if not own_index:
            table = table.replace_schema_metadata(None)
    if answer is not None:
        pass
    elif own_index or settings.batch_max_rows <= 1:
        answer = await _predict_alone(request, family.name, params, raw or ParquetCodec.encode_table(table), table.num_rows)
    else:
        answer = await request.app[COALESCER].predict(
            family.name,
            params["model_key"],
            params["version"],
            params["kwargs"],
            table,
            settings.predict_timeout,
            raw,
        )
    if PARQUET in request.headers.get("Accept", ""):
        return web.Response(body=answer.parquet(), content_type=PARQUET)
    frame = normalize(answer.table.to_pandas(), "prediction")
    orient = params["orient"]
    if params["as_array"]:
        values = frame.to_numpy()
        data = dumps((values[:, 0] if values.shape[1] == 1 else values).tolist())
    else:
        data = JsonCodec.encode(frame, orient)
    return json_response({"data": data, "orient": orient})


async def _predict_alone(request: web.Request, family: str, params: dict[str, Any], body: bytes, rows: int) -> Answer:
    """One request, one message (not coalesced)."""
    headers = PredictHeaders().dump({"model_key": params["model_key"], "version": params["version"], "kwargs": params["kwargs"]})
    headers = {k: v for k, v in headers.items() if v is not None}
    metrics.observe_predict_batch(1, rows)
    timeout = request.app[SETTINGS].predict_timeout
    reply_headers, reply_body = await request.app[BROKER].call(family, body, headers, timeout)
    reply = ReplyHeaders().load(reply_headers)
    if reply["status"] != 200:
        raise from_wire(reply["code"] or "internal_error", reply["message"] or "consumer error", reply["fields"])
    return Answer(body=reply_body)


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
    return json_response(status_body(model, session))


def status_body(model: Any, session: Any) -> dict[str, Any]:
    """A version's status as `GET /{family}` and the event stream show it."""
    return StatusResponse().dump(
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


@routes.delete("/{family}")
async def remove(request: web.Request) -> web.Response:
    """Delete the model, all its versions and artifacts."""
    family = await _family(request)
    params = await _key_params(request)
    n = await request.app[RECORDS].delete(family.name, params["model_key"])
    await request.app[BROKER].publish_event(
        family.name,
        params["model_key"],
        StatusEvent().dump({"event": EventKind.DELETED, "model_key": params["model_key"], "family": family.name}),
    )
    return json_response({"model_key": params["model_key"], "deleted": n})


__all__ = ["routes", "DecodeError"]
