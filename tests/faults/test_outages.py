"""The broker goes away during a burst of fits and continuous predicts, and comes back.

Two ways: RabbitMQ itself restarted (a private node, since the shared one
must never stop), and every connection cut by a proxy while the broker runs.
Either way: every fit that got a 202 ends `done`, predicts during the outage
get a 503/504 within their deadline (never hang), and the gateway and the
consumers reconnect by themselves, consumers back on both queues.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from ..conftest import Stack
from ..proxy import TcpProxy
from ..stack import BROKER_URL, wait_for
from .broker import PrivateBroker
from .helpers import FitBurst, PredictLoad, PrivateStack, fit_body, data, record, versions

pytestmark = pytest.mark.integration

FITS = 100
PREDICT_TIMEOUT = 4.0
PUBLISH_TIMEOUT = 3.0
ENV = {"ML_SERVER_PREDICT_TIMEOUT": str(PREDICT_TIMEOUT), "ML_SERVER_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT)}


def _outage(stack: Stack, cut: Callable[[], None], restore: Callable[[], float], consumers_back: Callable[[], None]) -> dict[str, Any]:
    s = stack
    for _ in range(2):
        s.start_consumer("logreg", wait=False)
    s.start_gateway()
    s.wait_consumers("logreg", 2)

    x, y = data(1)
    model = requests.post(s.fit_url("logreg"), json=fit_body(x, y, name=f"{s.namespace}-predicted"), timeout=30).json()["model_key"]
    assert s.wait_finished("logreg", model)["status"] == "done"

    load = PredictLoad(s.family_url("logreg"), model, threads=3).start()
    burst = FitBurst(s, count=FITS).start()
    answers = burst.answers
    try:
        wait_for(lambda: len(burst.accepted()) >= 11, 60, what="the burst under way")
        down_at = time.monotonic()
        cut()
        # The gateway notices by itself: /readyz says the broker is unavailable.
        wait_for(lambda: requests.get(f"{s.url}/readyz", timeout=5).status_code == 503, 30, what="gateway sees the outage")
        time.sleep(1.0)  # let requests run into the outage (the assertions below don't depend on it)
        restart_seconds = restore()
        up_at = time.monotonic()
        consumers_back()
        consumers_back_s = time.monotonic() - up_at
        wait_for(lambda: requests.get(f"{s.url}/readyz", timeout=5).status_code == 200, 60, what="gateway reconnected")
        gateway_back_s = time.monotonic() - up_at
        wait_for(lambda: load.ok_since(up_at), 60, what="a predict answered 200 after the outage")
        predicts_back_s = time.monotonic() - up_at
        burst.join(300)
    finally:
        load.stop()

    statuses = [st for st, _ in answers]
    accepted = [k for st, k in answers if st == 202 and k]
    assert len(accepted) == FITS, statuses  # each fit accepted in the end (after its 503s)
    assert set(statuses) <= {202, 503}, statuses  # a clean refusal or an acceptance, nothing else
    finished = [s.wait_finished("logreg", k, timeout=180) for k in accepted]
    done = [f for f in finished if f["status"] == "done"]
    # Refused attempts left `failed` versions behind; exactly one version of each model is done.
    duplicates = sum(len([v for v in versions(s, k) if v["status"] == "done"]) - 1 for k in accepted)
    assert all(v["status"] in ("done", "failed") for k in accepted for v in versions(s, k))

    during = [(lat, st) for b, lat, st in load.results if b >= down_at - PREDICT_TIMEOUT and b < up_at]
    figures = dict(
        database=s.database_url.split(":")[0],
        fits_sent=len(answers),
        jobs_accepted=len(accepted),
        fits_refused_503_then_resent=statuses.count(503),
        jobs_done=len(done),
        duplicates=duplicates,
        predicts=len(load.results),
        predicts_during_outage=len(during),
        predict_statuses_during_outage=sorted({st for _, st in during}),
        max_predict_latency_s=round(max((lat for _, lat, _ in load.results), default=0.0), 2),
        restart_s=round(restart_seconds, 2),
        consumers_back_s=round(consumers_back_s, 2),
        gateway_back_s=round(gateway_back_s, 2),
        predicts_back_s=round(predicts_back_s, 2),
    )
    assert len(done) == len(accepted), [f for f in finished if f["status"] != "done"]
    assert duplicates == 0
    assert statuses.count(202) >= 11 and during, figures  # fits were accepted before, predicts ran into it
    # Every predict got an HTTP answer: 200, or 503/504 during the outage; none past its deadline.
    assert {st for _, _, st in load.results} <= {200, 503, 504}, figures
    assert figures["max_predict_latency_s"] < PREDICT_TIMEOUT + PUBLISH_TIMEOUT + 2, figures
    return figures


def test_broker_restart_during_a_burst(database_url: str, tmp_path: Path, private_broker: PrivateBroker, figures_file: Path) -> None:
    broker = private_broker
    first_start = broker.start()
    s = PrivateStack(database_url, tmp_path / "stack", broker, **ENV)
    try:
        figures = _outage(
            s,
            cut=broker.stop,
            restore=broker.start,
            consumers_back=lambda: broker.wait_consumers(s.queues("logreg"), 2, timeout=90),
        )
        # Our processes were never restarted: they reconnected on their own.
        assert s.gateway is not None and s.gateway.poll() is None
        assert all(p.poll() is None for _, p in s.consumers)
        queues = broker.queue_consumers(s.queues("logreg"))
        assert all(queues.get(q, 0) == 2 for q in s.queues("logreg")), queues
    finally:
        s.stop()
    record(figures_file, "broker_restart", private_node_first_start_s=round(first_start, 2), **figures)


def test_connections_cut_during_a_burst(database_url: str, tmp_path: Path, figures_file: Path) -> None:
    host, port = BROKER_URL.rsplit("@", 1)[1].split("/")[0].split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    s = Stack(database_url, tmp_path / "stack", broker_url=BROKER_URL.replace(f":{port}/", f":{proxy.port}/"), **ENV)

    def restore() -> float:
        began = time.monotonic()
        proxy.start()
        return time.monotonic() - began

    try:
        figures = _outage(s, cut=proxy.cut, restore=restore, consumers_back=lambda: s.wait_consumers("logreg", 2))
        assert s.gateway is not None and s.gateway.poll() is None
        assert all(p.poll() is None for _, p in s.consumers)
    finally:
        s.stop()
        proxy.cut()
    record(figures_file, "connections_cut", **figures)
