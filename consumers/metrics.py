"""A consumer's Prometheus metrics, served on its own port (`ML_SERVER_METRICS_PORT`, 0: none).

The worker reports with one-line calls (`fit_finished`, `predict_answered`,
`PREDICT_ROWS`); the model cache counts its own hits and misses. Every metric
carries the `family` label, so the consumers of all families can share one
scrape job.
"""

from __future__ import annotations

import errno
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from contracts import paths

log = logging.getLogger(__name__)

FITS = Counter(
    "ml_server_consumer_fits",
    "Fit and update jobs run to an end, by family, kind (fit, update) and outcome (done, failed)",
    ["family", "kind", "outcome"],
)
FIT_SECONDS = Histogram(
    "ml_server_consumer_fit_seconds",
    "Time the estimator's fit (or partial_fit) took, for jobs that ended done",
    ["family", "kind"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600),
)
PREDICTS = Counter(
    "ml_server_consumer_predicts",
    "Predict messages answered, by family and reply status (200, or the error's HTTP-equivalent status)",
    ["family", "status"],
)
PREDICT_SECONDS = Histogram(
    "ml_server_consumer_predict_seconds",
    "Time from taking a predict message to having its answer (load, predict, encode)",
    ["family"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PREDICT_ROWS = Histogram(
    "ml_server_consumer_predict_rows",
    "Rows in one predict message",
    ["family"],
    buckets=(1, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
)
PREDICT_GROUPS = Histogram(
    "ml_server_consumer_predict_group_messages",
    "Predict messages answered by one predict call (those delivered together for the same model, version and arguments)",
    ["family"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
CACHE_LOOKUPS = Counter(
    "ml_server_consumer_model_cache",
    "Lookups of a loaded model in the consumer's cache, by result (hit, miss)",
    ["family", "result"],
)


def fit_finished(family: str, kind: object, outcome: str, seconds: float | None = None) -> None:
    """A train job ended `outcome` (`done`, `failed`); `seconds` is the fit's own time, when done."""
    kind = getattr(kind, "value", kind)
    FITS.labels(family, str(kind), outcome).inc()
    if seconds is not None:
        FIT_SECONDS.labels(family, str(kind)).observe(seconds)


def clock() -> float:
    return time.perf_counter()


def predict_answered(family: str, status: int, started: float) -> None:
    """A predict message answered with `status`, `started` being `clock()` when it was taken."""
    PREDICTS.labels(family, str(status)).inc()
    PREDICT_SECONDS.labels(family).observe(time.perf_counter() - started)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve(host: str, port: int) -> web.AppRunner | None:
    """Serve GET /metrics on host:port until the runner is cleaned up; None when port is 0 or taken.

    A port already in use (another consumer on this machine) is logged, not fatal:
    the consumer's work matters more than its metrics.
    """
    if not port:
        return None
    app = web.Application()
    app.router.add_get(paths.METRICS, _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        if e.errno != errno.EADDRINUSE:
            raise
        log.warning("metrics port %s:%s is in use; this consumer serves no /metrics (set ML_SERVER_METRICS_PORT)", host, port)
        return None
    log.info("metrics on http://%s:%s/metrics", host, port)
    return runner
