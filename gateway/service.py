"""What a request asks of the store and the broker, whichever route it came by.

The seed's routes (`routes.py`) and ml-server's own (`resources.py`) differ in
how they name things and what they answer; the work is the same and is done
here once: fit, update, predict (parse → coalescer → render), delete.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pandas as pd
from aiohttp import web

from contracts.columns import InputSchema, check_target, check_update, infer
from contracts.errors import Conflict, InvalidInput, NotFound
from contracts.families import FamilyInfo
from contracts.frames import PARQUET, ParquetCodec, digest_frames, labelled
from contracts.pandas_json import write_answer, write_array
from contracts.responses import PredictResponse, StatusResponse
from contracts.messages import ImportJob, TrainJob, read_reply
from contracts.status import Backend, JobKind, Status
from contracts.store import TrainingSession
from contracts.topology import EventKind, MessageType

from . import uploads
from .batching import Answer
from .requests import Predicting, Training
from .state import BROKER, COALESCER, RECORDS, SETTINGS


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=str)


def respond(data: Any, status: int = 200) -> web.Response:
    """A JSON answer (already dumped through its response schema)."""
    return web.Response(body=dumps(data), status=status, content_type="application/json")


# ---- fit and update ----------------------------------------------------------------------------


def model_key(
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


async def fit(
    app: web.Application, family: FamilyInfo, req: Training, actor: str | None = None
) -> tuple[str, TrainingSession, bool]:
    """(model_key, session, created): a new queued version, or the latest one of a model that exists.
    What no model could learn from is refused here (422), before anything is queued."""
    params = req.params
    family.check_fits()
    family.check_target(req.has_y)
    family.check_modkwargs(params["modkwargs"])
    assert req.x is not None
    infer(req.x)  # every column learnable: not all missing, one kind of value, not too many levels
    if req.y is not None:
        check_target(req.y)
    backend = params["backend"]
    key = model_key(family.name, params["name"], req.x, req.y, params["modkwargs"], backend)
    body = await req.encoded()
    stored = {k: params[k] for k in ("modkwargs", "algkwargs", "name", "retrain")}
    stored["backend"] = backend.value if backend is not None else None  # None: the family's default
    session, created = await app[RECORDS].submit_fit(family.name, key, params["name"], stored, params["retrain"], actor)
    if created:
        await publish(app, family.name, key, session, JobKind.FIT, body, params["modkwargs"], params["algkwargs"], backend)
    elif params["name"] is not None and session.status is Status.DONE:
        await check_same_columns(app, family.name, key, params["name"], req.x)
    return key, session, created


async def check_same_columns(app: web.Application, family: str, key: str, name: str, x: pd.DataFrame) -> None:
    """A named fit that finds its model trained on other columns says so (409), instead of answering
    with a model the caller's next predict can't use."""
    schema = await app[RECORDS].schema(family, key)
    if not schema:
        return
    trained = [str(c["name"]) for c in schema]
    sent = [str(c) for c in x.columns]
    if set(trained) == set(sent):
        return
    missing, unexpected = sorted(set(trained) - set(sent)), sorted(set(sent) - set(trained))
    raise Conflict(
        f"model {key!r} named {name!r} exists and was trained on other columns "
        f"(not sent: {missing}; not trained on: {unexpected}): fit under another name, or with retrain",
        fields={"x": "columns differ from the existing model's", "name": "in use by a model with other columns"},
    )


async def update(app: web.Application, family: FamilyInfo, key: str, req: Training, actor: str | None = None) -> TrainingSession:
    """`partial_fit` on the model's latest done version, as a new version."""
    family.check_fits()
    if not family.supports_update:
        raise InvalidInput(f"family {family.name!r} does not support update (partial_fit)")
    if family.supervised:
        family.check_target(req.has_y)
    assert req.x is not None
    if req.y is not None:
        check_target(req.y)
    schema = await app[RECORDS].schema(family.name, key)
    if schema is not None:  # the encoders of the first fit stay: the same columns, no new categories
        check_update(req.x, InputSchema.from_list(schema))
    body = await req.encoded()
    session = await app[RECORDS].submit_update(family.name, key, {}, actor)
    await publish(app, family.name, key, session, JobKind.UPDATE, body, {}, {})
    return session


async def publish(
    app: web.Application,
    family: str,
    key: str,
    session: TrainingSession,
    kind: JobKind,
    body: bytes,
    modkwargs: dict[str, Any],
    algkwargs: dict[str, Any],
    backend: Backend | None = None,
) -> None:
    """Queue the job of a session written as `queued`; the session is marked failed if that can't be done."""
    job = TrainJob(key, family, kind, session.id, session.version, modkwargs=modkwargs, algkwargs=algkwargs, backend=backend)
    try:
        if len(body) > app[SETTINGS].inline_limit:
            # Too big for one broker message (RabbitMQ 4 caps them at 16 MiB): by reference.
            job.payload_id = await app[RECORDS].store_payload(session.id, body)
            body = b""
        headers = job.headers()
        await app[BROKER].publish_job(family, body, headers, kind.value)
    except Exception as e:
        # Never a queued session without a message: the caller is told, and so is the store.
        await app[RECORDS].fail(session.id, f"could not be queued: {getattr(e, 'message', e)}")
        raise


# ---- import ------------------------------------------------------------------------------------

# Seconds an import may take: reading the file in a fit process (started first, if none is warm),
# a test predict, storing it.
IMPORT_TIMEOUT = 120.0


def import_key(family: str, name: str | None, blob: bytes) -> str:
    """From the name when given, else from the file: the same file imported twice is the same model."""
    if name is not None:
        return model_key(family, name, None, None, {})
    h = hashlib.sha256(family.encode() + b"\0import\0" + hashlib.sha256(blob).digest())
    return f"{family}-{h.hexdigest()[:24]}"


async def import_model(
    app: web.Application, family: FamilyInfo, key: str | None, params: dict[str, Any], blob: bytes, actor: str | None
) -> tuple[str, int, bool]:
    """(model_key, version, created): a model file stored as a done version, checked by a consumer of
    the family first (nothing is stored when it refuses the file). `key`: a new version of that model;
    None: a new model (the latest version of the same file imported before, when it was)."""
    fmt = uploads.sniff(blob, params["format"], app[SETTINGS].archive_limits())
    if fmt == uploads.ONNX and family.fits:
        raise InvalidInput(f"file: an ONNX graph is served by the onnx family, not {family.name!r}", fields={"file": ["onnx"]})
    if fmt == uploads.SKOPS and not family.fits:
        raise InvalidInput(f"file: family {family.name!r} takes ONNX graphs; import a skops file into a scikit-learn family", fields={"file": ["skops"]})
    if key is None:
        key = import_key(family.name, params["name"], blob)
        try:
            await app[RECORDS].family_of(key)
        except NotFound:
            pass
        else:
            if params["name"] is not None:
                raise Conflict(f"a model named {params['name']!r} exists ({key}): POST /models/{key}/import adds a version to it")
            _, latest = await app[RECORDS].status(family.name, key)
            return key, latest.version, False
    job = ImportJob(key, family.name, fmt, params["name"], params["features"], params["types"], actor)
    body = blob
    if len(blob) > app[SETTINGS].inline_limit:
        job.payload_id = await app[RECORDS].store_payload(None, blob)
        body = b""
    headers = job.headers()
    try:
        reply_headers, reply = await app[BROKER].call(family.name, body, headers, IMPORT_TIMEOUT, MessageType.IMPORT)
    except Exception:
        if job.payload_id is not None:  # the consumer drops it once it has read it; unread, it would stay
            await app[RECORDS].drop_payload(job.payload_id)
        raise
    answer = orjson.loads(read_reply(reply_headers, reply, body_field="file"))
    return key, int(answer["version"]), True


# ---- predict -----------------------------------------------------------------------------------

_PREDICT_RESPONSE = PredictResponse()


async def predict(app: web.Application, family: str, req: Predicting) -> web.Response:
    """A predict's one way: the parsed request to the coalescer, its answer rendered as asked."""
    p = req.params
    answer = await app[COALESCER].predict(
        family, p["model_key"], p["version"], p["kwargs"], req.rows, app[SETTINGS].predict_timeout, p["alias"]
    )
    return render(req, answer)


def render(req: Predicting, answer: Answer) -> web.Response:
    """Parquet when the request's Accept asks for it, else the seed's `{data, orient}`; the rows
    labelled like the request's."""
    labels = req.rows.labels
    if req.parquet_answer:
        if labels is None:
            return web.Response(body=answer.parquet(), content_type=PARQUET)
        frame = labelled(answer.table, labels, req.rows.label_names)
        return web.Response(body=ParquetCodec.encode(frame), content_type=PARQUET)
    orient = req.params["orient"]
    data = write_array(answer.table) if req.params["as_array"] else write_answer(answer.table, labels, orient)
    return respond(_PREDICT_RESPONSE.dump({"data": data, "orient": orient}))


# ---- status and delete ---------------------------------------------------------------------------


def status_body(model: Any, session: Any) -> dict[str, Any]:
    """A version's status, flat, as the event stream sends it."""
    body: dict[str, Any] = StatusResponse().dump(
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
    return body


async def alias_event(app: web.Application, model: Any, alias: str | None, version: int | None) -> None:
    """Tell consumers (to follow the alias at once) and event streams that an alias or the serving alias changed."""
    event = {"event": EventKind.ALIAS, "model_key": model.model_key, "family": model.family, "alias": alias, "version": version, "serving": model.serving}
    await app[BROKER].publish_event(model.family, model.model_key, event)


async def delete(app: web.Application, family: str, key: str) -> int:
    """Delete the model and every version; consumers drop it from memory on the event."""
    n = await app[RECORDS].delete(family, key)
    await app[BROKER].publish_event(family, key, {"event": EventKind.DELETED, "model_key": key, "family": family})
    return n
