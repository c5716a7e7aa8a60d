"""The gateway's Prometheus metrics, served at `GET /metrics` (behind the read scope when tokens are set).

Requests are counted and timed by one middleware (`middleware`), outermost, so
it sees the status the error middleware answered with. The family label is the
family a handler resolved (`request["family"]`, set once a known family was
found), `none` otherwise, so unknown paths can't grow the label set. Queue
depths are read at scrape time with passive declares, bounded by
`QUEUE_DEPTH_TIMEOUT`: with the broker down, /metrics answers at once and the
gauges keep their last values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess


from .routing import ROUTES

if TYPE_CHECKING:  # rpc.py reports predict batches here
    from .rpc import Broker

log = logging.getLogger(__name__)

# How long a scrape may spend asking the broker for queue depths.
QUEUE_DEPTH_TIMEOUT = 1.0

REQUESTS = Counter(
    "ml_server_gateway_requests",
    "HTTP requests answered, by model family, verb and status",
    ["family", "verb", "status"],
)
LATENCY = Histogram(
    "ml_server_gateway_request_seconds",
    "Time to answer an HTTP request, by model family and verb",
    ["family", "verb"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PREDICT_BATCH_REQUESTS = Histogram(
    "ml_server_gateway_predict_batch_requests",
    "Predict requests carried by one predict message to the broker",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
PREDICT_BATCH_ROWS = Histogram(
    "ml_server_gateway_predict_batch_rows",
    "Rows carried by one predict message to the broker",
    buckets=(1, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
)
# With several gateway processes, the one scraped last knows the depths best.
QUEUE_MESSAGES = Gauge(
    "ml_server_queue_messages",
    "Messages ready in a family's queue (from a passive declare at scrape time)",
    ["family", "queue"],
    multiprocess_mode="mostrecent",
)
QUEUE_CONSUMERS = Gauge(
    "ml_server_queue_consumers",
    "Consumers on a family's queue (from the same passive declare)",
    ["family", "queue"],
    multiprocess_mode="mostrecent",
)

# What `GET /metrics` exposes: this process's metrics, or every gateway process's summed (`configure`).
_exposed: CollectorRegistry = REGISTRY


def configure(multiprocess_dir: str | None) -> None:
    """Several gateway processes on one port (`gateway.workers`) write their metrics to files in
    `multiprocess_dir` (PROMETHEUS_MULTIPROC_DIR, set before prometheus_client was imported);
    `GET /metrics` on any of them then answers the sum over all of them."""
    global _exposed
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
        _exposed = registry


def observe_predict_batch(requests: int, rows: int) -> None:
    """One predict message published: how many requests it answers and how many rows it carries."""
    PREDICT_BATCH_REQUESTS.observe(requests)
    PREDICT_BATCH_ROWS.observe(rows)


def labels(request: web.Request) -> tuple[str, str]:
    """(family, verb) of a request: its route's label in the route table (fit, predict, update, status,
    delete on the seed's `/{family}` and on ml-server's own routes alike, `other` elsewhere)."""
    row = request.app[ROUTES].row(request)
    return request.get("family") or "none", row.label if row is not None else "other"


@web.middleware
async def middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        family, verb = labels(request)
        REQUESTS.labels(family, verb, str(status)).inc()
        LATENCY.labels(family, verb).observe(time.perf_counter() - started)


async def refresh_queue_depths(broker: Broker, families: Iterable[str]) -> None:
    """Set `ml_server_queue_messages` and `ml_server_queue_consumers` for each family's train and predict queue;
    skip queues that don't exist."""
    t = broker.topology
    queues = {(family, kind): name for family in families for kind, name in (("train", t.train_queue(family)), ("predict", t.predict_queue(family)))}
    states = await broker.inspect(list(queues.values()))
    for (family, kind), name in queues.items():
        if name in states:
            QUEUE_MESSAGES.labels(family, kind).set(states[name].messages)
            QUEUE_CONSUMERS.labels(family, kind).set(states[name].consumers)


async def scrape(broker: Broker | None, families: Callable[[], Awaitable[Iterable[str]]]) -> bytes:
    """The exposition text, after refreshing queue depths for at most QUEUE_DEPTH_TIMEOUT seconds."""
    if broker is not None:

        async def refresh() -> None:
            await refresh_queue_depths(broker, list(await families()))

        try:
            await asyncio.wait_for(refresh(), QUEUE_DEPTH_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - broker or store trouble: serve the last values
            log.debug("queue depths not refreshed: %s", e)
    return generate_latest(_exposed)


__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY",
    "PREDICT_BATCH_REQUESTS",
    "PREDICT_BATCH_ROWS",
    "QUEUE_CONSUMERS",
    "QUEUE_MESSAGES",
    "REQUESTS",
    "configure",
    "middleware",
    "observe_predict_batch",
    "scrape",
]
