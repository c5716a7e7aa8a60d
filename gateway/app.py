"""The aiohttp application: lifecycle, one error middleware, operational routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from contracts import frames
from contracts.errors import MLServerError, NotFound, PayloadTooLarge, Unavailable
from contracts.responses import HealthResponse, ReadyResponse
from contracts.settings import Settings
from contracts.store import make_engine

from . import auth, budget, dashboard, events, metrics, openapi
from .batching import Coalescer
from .records import Records
from .resources import resources
from .routes import routes
from .rpc import Broker
from .service import respond
from .registry import Registry
from .state import BROKER, COALESCER, RECORDS, REGISTRY, SETTINGS

log = logging.getLogger(__name__)

ops = web.RouteTableDef()


@ops.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return respond(HealthResponse().dump({"status": "ok"}))


@ops.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Broker and store reachable, and a consumer on the queues of every family the deployment serves
    (ML_SERVER_FAMILIES): 200, else 503 naming what is not there."""
    broker = request.app[BROKER]
    checks: dict[str, str] = {"broker": "ok" if broker.ready else "unavailable"}
    try:
        await asyncio.wait_for(request.app[RECORDS].ping(), 3)
        checks["store"] = "ok"
    except Exception as e:  # any failure to answer SELECT 1 means not ready
        checks["store"] = f"unavailable: {type(e).__name__}"
    expected = list(request.app[SETTINGS].families)
    consumers: dict[str, bool] = {}
    if expected and broker.ready:
        try:
            consumers = await asyncio.wait_for(broker.consumers(expected), 3)
        except Exception as e:  # noqa: BLE001 - a broker that can't answer is a broker that is not ready
            log.warning("consumer counts not read: %s", e)
    families = {f: "ok" if consumers.get(f) else "no consumer" for f in expected}
    ok = all(v == "ok" for v in (*checks.values(), *families.values()))
    body: dict[str, object] = {"status": "ok" if ok else "unavailable", **checks}
    if expected:
        body["families"] = families
    return respond(ReadyResponse().dump(body), status=200 if ok else 503)


@ops.get("/metrics")
async def prometheus_metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: request counts and latencies, predict batch sizes, queue depths."""
    body = await metrics.scrape(request.app.get(BROKER), request.app[RECORDS].families)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})


def error_response(error: MLServerError) -> web.Response:
    response = web.Response(
        status=error.status,
        body=orjson.dumps({"error": error.to_wire()}, option=orjson.OPT_NON_STR_KEYS),
        content_type="application/json",
    )
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ml-server"'
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """The one place errors become responses: `{error: {code, message, fields?}}`."""
    try:
        return await handler(request)
    except MLServerError as e:
        return error_response(e)
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLarge(f"body is over the {request.app[SETTINGS].max_body}-byte limit"))
    except web.HTTPNotFound:
        return error_response(NotFound(f"no route {request.method} {request.path}"))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        err = MLServerError(e.reason or "error")
        err.status, err.code = e.status, e.reason.lower().replace(" ", "_") if e.reason else "error"
        return error_response(err)
    except (OperationalError, DBAPIError, OSError) as e:
        log.warning("store unavailable during %s %s: %s", request.method, request.path, e)
        return error_response(Unavailable("the store is unavailable"))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(MLServerError("internal error; the gateway's log has the details"))


def make_app(settings: Settings) -> web.Application:
    checks = [auth.middleware(settings)] if settings.tokens else []  # no tokens: nothing to check
    middlewares = [metrics.middleware, errors, budget.middleware, *checks]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body)
    app[SETTINGS] = settings
    app[budget.BUDGET] = budget.DecodeBudget(settings.decode_budget)
    frames.set_limits(
        columns=settings.max_columns, rows=settings.max_rows, frame_bytes=settings.max_frame_bytes, json_frame=settings.max_json_frame
    )
    app.add_routes(ops)
    app.add_routes(openapi.routes)
    app.add_routes(resources)  # before `/{family}`: `/models` and `/families` are not families
    dashboard.setup(app)  # GET /ui and GET /events, before `/{family}` too
    app.add_routes(routes)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_broker)
    events.setup(app)  # GET /models/{model_key}/events; needs the broker
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    app[RECORDS] = Records(engine, settings.families)
    app[REGISTRY] = Registry(app[RECORDS].sessions)
    yield
    await engine.dispose()


async def _broker(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    broker = Broker(settings)
    await broker.connect()
    app[BROKER] = broker
    app[COALESCER] = Coalescer(broker.call, settings.batch_max_rows, settings.batch_max_wait, settings.batch_inflight)
    yield
    await app[COALESCER].close()
    await broker.close()
