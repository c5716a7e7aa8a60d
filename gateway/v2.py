"""The Open Inference Protocol (KServe V2) over REST, beside the seed's routes and ml-server's own.

    GET  /v2                                               the server: name, version, extensions
    GET  /v2/health/live, /v2/health/ready                 probes (ready as /readyz is)
    GET  /v2/models/{model}[/versions/{version}]           inputs and outputs from the version's input schema
    GET  /v2/models/{model}[/versions/{version}]/ready     200 when the version is done and a consumer is up
    POST /v2/models/{model}[/versions/{version}]/infer     JSON, or JSON and binary tensors (Triton's extension)
    POST /v2/repository/index                              every model's versions and their states
    POST /v2/repository/models/{model}/load | /unload      into / out of the consumers' caches (nothing deleted)

`{model}` is a model key or a model's name, `{version}` a number or an alias
(`gateway.v2_models`). An infer takes the road of every predict: its rows to
the coalescer, one message per batch to the family's consumers, one predict
per output (outputs are named after methods: `predict`, `predict_proba`, ...).
Errors are the protocol's `{"error": "..."}`, with ml-server's statuses (its
422, a request the model can't take, is the protocol's 400).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version as package_version
from typing import Any

import orjson
from aiohttp import web

from contracts import v2, v2_rows
from contracts.errors import InvalidInput, NotTrained, TrainingFailed, Unavailable

from contracts.status import Status
from contracts.topology import EventKind
from contracts.v2 import V2

from . import operations, requests
from .state import BROKER, COALESCER, RECORDS, REGISTRY, SETTINGS
from .v2_models import Catalog, Target

log = logging.getLogger(__name__)

CATALOG = web.AppKey("v2_catalog", Catalog)
# Statuses the protocol spells otherwise: a request the model can't take is its 400.
STATUSES = {422: 400}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """ml-server's error answers on V2 paths reshaped as the protocol's `{"error": "<message>"}`."""
    response = await handler(request)
    if response.status < 400 or not request.path.startswith(V2.PREFIX) or not isinstance(response, web.Response):
        return response
    try:
        error = orjson.loads(response.body)["error"]  # type: ignore[arg-type]
        message = error["message"] if isinstance(error, dict) else str(error)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response
    reshaped = web.Response(body=orjson.dumps({"error": message}), status=STATUSES.get(response.status, response.status), content_type="application/json")
    for header in ("WWW-Authenticate", "Retry-After"):
        if header in response.headers:
            reshaped.headers[header] = response.headers[header]
    return reshaped


def _release() -> str:
    try:
        return package_version("ml-server")
    except PackageNotFoundError:
        return "0.0.0"


async def _target(request: web.Request, done: bool = True) -> Target:
    target = await request.app[CATALOG].target(request.match_info["model"], request.match_info.get("version"))
    request["family"] = target.family
    if done:
        target.check_done()
    return target


# ---- health and metadata -----------------------------------------------------------------------


async def server_metadata(request: web.Request) -> web.Response:
    return _json({"name": "ml-server", "version": _release(), "extensions": list(v2.EXTENSIONS)})


async def live(request: web.Request) -> web.Response:
    return _json({"live": True})


async def ready(request: web.Request) -> web.Response:
    """Ready as `/readyz` is (broker, store, a consumer of every expected family); 400 otherwise, as the protocol says."""
    answer = await operations.readyz(request)  # the one readiness check
    ok = answer.status == 200
    return _json({"ready": ok}, 200 if ok else 400)


async def _consumer_up(request: web.Request, family: str) -> bool:
    broker = request.app[BROKER]
    if not broker.ready:
        return False
    try:
        return bool((await asyncio.wait_for(broker.consumers([family]), 3)).get(family))
    except Exception as e:  # noqa: BLE001 - a broker that can't answer has no consumer to offer
        log.warning("consumers of %s not read: %s", family, e)
        return False


async def model_ready(request: web.Request) -> web.Response:
    """200 `{name, ready: true}` when the version is done and a consumer of its family is up; else 400 and false."""
    name = request.match_info["model"]
    try:
        target = await _target(request)
    except (NotTrained, TrainingFailed):
        return _json({"name": name, "ready": False}, 400)
    ok = await _consumer_up(request, target.family)
    return _json({"name": name, "ready": ok}, 200 if ok else 400)


async def model_metadata(request: web.Request) -> web.Response:
    """The version's inputs (from its recorded input schema) and outputs (one per method)."""
    target = await _target(request)
    family = await request.app[RECORDS].family(target.family)
    inputs, parameters = v2_rows.inputs_metadata(target.meta)
    body: dict[str, Any] = {
        "name": target.name,
        "versions": [str(n) for n in target.versions],
        "platform": f"ml-server/{target.family}/{target.meta.get('backend') or 'scikit-learn'}",
        "inputs": inputs,
        "outputs": v2_rows.outputs_metadata(target.meta, family.methods),
        "parameters": {**parameters, "model_key": target.model_key, "family": target.family, "version": str(target.version)},
    }
    return _json(body)


# ---- inference -----------------------------------------------------------------------------------


async def infer(request: web.Request) -> web.Response:
    """Rows from the inputs, one predict per output through the coalescer, the answer in JSON or binary."""
    target = await _target(request)
    raw = await requests.body(request, "predict")
    header_length = request.headers.get(v2.HEADER_LENGTH)
    if len(raw) > requests.THREAD_PARSE_BYTES:
        parsed = await asyncio.to_thread(v2.parse_request, raw, header_length)
        rows = await asyncio.to_thread(v2_rows.rows, parsed, target.meta)
    else:
        parsed = v2.parse_request(raw, header_length)
        rows = v2_rows.rows(parsed, target.meta)
    outputs = parsed.outputs or [v2.Output("predict", parsed.binary_output)]
    methods = (await request.app[RECORDS].family(target.family)).methods
    for output in outputs:
        if output.name not in methods:
            raise InvalidInput(f"output {output.name!r}: outputs are named after the model's methods {list(methods)}", fields={"outputs": [output.name]})
    coalescer, timeout = request.app[COALESCER], request.app[SETTINGS].predict_timeout
    tables = await asyncio.gather(
        *(
            coalescer.predict(target.family, target.model_key, target.version, {} if o.name == "predict" else {"method": o.name}, rows, timeout)
            for o in outputs
        )
    )
    answers = [v2.Answer(o.name, a.table, o.binary, {"columns": [str(c) for c in a.table.column_names]}) for o, a in zip(outputs, tables)]
    body, json_length = v2.encode_response(target.name, target.version, parsed.id, answers)
    if json_length is None:
        return web.Response(body=body, content_type="application/json")
    return web.Response(body=body, content_type=v2.BINARY_CONTENT_TYPE, headers={v2.HEADER_LENGTH: str(json_length)})


# ---- the model repository --------------------------------------------------------------------------


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await requests.body(request, "status")
    return requests.json_object(raw) if raw.strip() else {}


async def index(request: web.Request) -> web.Response:
    """Every model's versions: `READY` when done and a consumer of the family is up, else `UNAVAILABLE` with why."""
    only_ready = (await _json_body(request)).get("ready") is True
    found = await request.app[CATALOG].every_version()
    families = sorted({r.family for r in found})
    up: dict[str, bool] = {f: False for f in families}
    if families and request.app[BROKER].ready:
        try:
            up.update(await asyncio.wait_for(request.app[BROKER].consumers(families), 3))
        except Exception as e:  # noqa: BLE001 - then no family is up, and the index says so
            log.warning("consumer counts not read: %s", e)
    names: dict[str, set[str]] = {}
    for r in found:
        if r.name:
            names.setdefault(r.name, set()).add(r.model_key)
    entries = []
    for r in found:
        name = r.name if r.name and len(names[r.name]) == 1 else r.model_key
        if r.status is Status.DONE and up.get(r.family):
            entry = {"name": name, "version": str(r.version), "state": "READY", "reason": ""}
        elif r.status is Status.DONE:
            entry = {"name": name, "version": str(r.version), "state": "UNAVAILABLE", "reason": f"no consumer of family {r.family!r} is up"}
        else:
            reason = r.error if r.status is Status.FAILED and r.error else f"the version is {r.status.value}"
            entry = {"name": name, "version": str(r.version), "state": "UNAVAILABLE", "reason": reason}
        if not only_ready or entry["state"] == "READY":
            entries.append(entry)
    return _json(entries)


async def _repository_event(request: web.Request, kind: EventKind) -> web.Response:
    params = (await _json_body(request)).get("parameters") or {}
    if not isinstance(params, dict) or "config" in params or any(str(k).startswith("file:") for k in params):
        raise InvalidInput("load: a model's configuration or files can't be given here; fit or import a version instead", fields={"parameters": ["not supported"]})
    target = await _target(request, done=kind == EventKind.LOAD)
    if kind == EventKind.LOAD and not await _consumer_up(request, target.family):
        raise Unavailable(f"no consumer of family {target.family!r} is up to load model {target.name!r} into")
    event = {"event": kind, "model_key": target.model_key, "family": target.family}
    await request.app[BROKER].publish_event(target.family, target.model_key, event)
    log.info("model=%s %s asked of the consumers of %s", target.model_key, kind.value, target.family)
    return _json({"name": target.name, "model_key": target.model_key, "version": str(target.version)})


async def load(request: web.Request) -> web.Response:
    """Every consumer of the family loads the model's default version into its cache now."""
    return await _repository_event(request, EventKind.LOAD)


async def unload(request: web.Request) -> web.Response:
    """Every consumer of the family drops the model from its cache (the store keeps everything)."""
    return await _repository_event(request, EventKind.UNLOAD)


# ---- wiring ----------------------------------------------------------------------------------------


async def _start(app: web.Application) -> None:
    from .events import EVENTS  # registered by events.setup, whose hub is up by now (cleanup contexts run first)

    catalog = app[CATALOG] = Catalog(app[RECORDS], app[REGISTRY])
    hub = app[EVENTS]

    async def follow() -> None:
        with hub.watch_all(follower=True) as inbox:
            await catalog.follow(inbox)

    app[_FOLLOWER] = asyncio.get_running_loop().create_task(follow())


async def _stop(app: web.Application) -> None:
    task = app.get(_FOLLOWER)
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


_FOLLOWER = web.AppKey("v2_follower", asyncio.Task)


def setup(app: web.Application) -> None:
    """The catalog's lifetime (the V2 routes are rows of the route table)."""
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)


__all__ = ["CATALOG", "errors", "index", "infer", "live", "load", "model_metadata", "model_ready", "ready", "server_metadata", "setup", "unload"]
