"""Operational routes: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from contracts.responses import HealthResponse, ReadyResponse

from . import metrics
from .service import respond
from .state import BROKER, RECORDS, SETTINGS

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return respond(HealthResponse().dump({"status": "ok"}))


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


async def prometheus_metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: request counts and latencies, predict batch sizes, queue depths."""
    body = await metrics.scrape(request.app.get(BROKER), request.app[RECORDS].families)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})
