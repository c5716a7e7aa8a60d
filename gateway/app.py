"""The aiohttp application: its routes from the route table, its lifecycle, one error middleware."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from contracts import frames
from contracts.errors import MLServerError, NotFound, PayloadTooLarge, Unavailable
from contracts.settings import Settings
from contracts.store import make_engine

from . import auth, budget, events, metrics, searches, v2
from .batching import Coalescer
from .records import Records
from .rpc import Broker
from .registry import Registry
from .routing import ROUTES
from .state import BROKER, COALESCER, RECORDS, REGISTRY, SETTINGS
from .table import ROUTES as TABLE

log = logging.getLogger(__name__)

# Seconds a 503 asks the client to wait before it tries again (a broker node's failover takes about that).
RETRY_AFTER = 1


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
    elif error.status == 503:
        # Broker failover, store restart, full queue: passing states, worth another try shortly.
        response.headers["Retry-After"] = str(RETRY_AFTER)
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
    middlewares = [metrics.middleware, v2.errors, errors, budget.middleware, *checks]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body)
    app[SETTINGS] = settings
    app[budget.BUDGET] = budget.DecodeBudget(settings.decode_budget)
    frames.set_limits(
        columns=settings.max_columns, rows=settings.max_rows, frame_bytes=settings.max_frame_bytes, json_frame=settings.max_json_frame
    )
    app[ROUTES] = TABLE
    TABLE.register(app)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_broker)
    events.setup(app)  # the event hub; needs the broker
    v2.setup(app)  # the Open Inference Protocol's catalog of models
    searches.setup(app)  # the search follower; reads the event hub
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
