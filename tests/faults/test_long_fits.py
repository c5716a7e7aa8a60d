"""Fits longer than RabbitMQ's consumer_timeout: handed over to the store with a lease, completed exactly once.

A private broker node runs with `consumer_timeout = 5000` and a 1 s channel
tick (RabbitMQ 3.10 checks the timeout on the channel tick, every 60 s by
default), so an 8 s fit outlives the timeout. With the hand-over after 2 s it
completes once; with the hand-over out of reach the broker's timeout hits
(control: the test can fail); and a consumer killed after the hand-over has
its job reclaimed by another when the lease runs out.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..stack import wait_for
from ..test_lifecycle import sessions_of
from .broker import PrivateBroker
from .helpers import PrivateStack, put, record, versions

pytestmark = pytest.mark.integration

COUNTED = "tests.families_for_tests:counted"
TIMEOUT_MS = 5000
FIT_SECONDS = 8.0


@pytest.fixture(scope="module")
def timeout_broker() -> Iterator[PrivateBroker]:
    broker = PrivateBroker(consumer_timeout_ms=TIMEOUT_MS, tick_ms=1000)
    try:
        broker.start()
        yield broker
    finally:
        broker.delete()


def _executions(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _stack(database_url: str, tmp_path: Path, broker: PrivateBroker, consumers: int, **env: str) -> PrivateStack:
    s = PrivateStack(database_url, tmp_path / "stack", broker, ML_SERVER_LEASE_SECONDS="3", **env)
    for _ in range(consumers):
        s.start_consumer(COUNTED, wait=False)
    s.start_gateway()
    s.wait_consumers("counted", consumers)
    return s


def test_long_fit_is_handed_over_and_completes_once(
    database_url: str, tmp_path: Path, timeout_broker: PrivateBroker, figures_file: Path
) -> None:
    count = tmp_path / "executions"
    s = _stack(database_url, tmp_path, timeout_broker, 1, ML_SERVER_HANDOVER_AFTER="2")
    try:
        r = put(s, "counted", 1, name=f"{s.namespace}-long", modkwargs={"delay": FIT_SECONDS, "count_file": str(count), "evaluation": False})
        assert r.status_code == 202, r.text
        key = r.json()["model_key"]
        state = s.wait_finished("counted", key, timeout=90)
        assert state["status"] == "done" and state["attempts"] == 1, state
        assert _executions(count) == 1
        assert [(v["version"], v["status"]) for v in versions(s, key)] == [(1, "done")]
        assert [(r["status"].value, r["artifacts"]) for r in sessions_of(s, key)] == [("done", 1)]
        logs = s.logs()
        assert "handed over" in logs and "timed out" not in logs, logs
        # The consumer kept its channel: still on both queues, and nothing is waiting or redelivered.
        assert timeout_broker.queue_consumers(s.queues("counted")).get(s.queues("counted")[0]) == 1
    finally:
        s.stop()
    record(figures_file, "long_fit_handover", database=database_url.split(":")[0], consumer_timeout_s=TIMEOUT_MS / 1000,
           fit_seconds=FIT_SECONDS, executions=1, done=1, duplicates=0)


def test_without_hand_over_the_broker_timeout_hits(database_url: str, tmp_path: Path, timeout_broker: PrivateBroker) -> None:
    """Control: the same fit with the hand-over out of reach is cut off by the broker and runs again."""
    count = tmp_path / "executions"
    s = _stack(database_url, tmp_path, timeout_broker, 1, ML_SERVER_HANDOVER_AFTER="3600")
    try:
        r = put(s, "counted", 2, name=f"{s.namespace}-control", modkwargs={"delay": FIT_SECONDS, "count_file": str(count), "evaluation": False})
        assert r.status_code == 202, r.text
        wait_for(lambda: _executions(count) >= 2, 60, interval=0.2, what="the fit redelivered after the consumer timeout")
        log = (timeout_broker.workdir / "log" / f"{timeout_broker.node}.log").read_text(errors="replace")
        assert "timed out" in log and "delivery acknowledgement" in log, log[-3000:]
    finally:
        s.stop()


def test_consumer_killed_after_hand_over_is_reclaimed(
    database_url: str, tmp_path: Path, timeout_broker: PrivateBroker, figures_file: Path
) -> None:
    count = tmp_path / "executions"
    s = _stack(database_url, tmp_path, timeout_broker, 2, ML_SERVER_HANDOVER_AFTER="2")
    try:
        r = put(s, "counted", 3, name=f"{s.namespace}-reclaimed", modkwargs={"delay": 8, "count_file": str(count), "evaluation": False})
        assert r.status_code == 202, r.text
        key = r.json()["model_key"]
        wait_for(lambda: "handed over" in s.logs() and _executions(count) == 1, 30, interval=0.2, what="the fit running, handed over")
        first = s.status("counted", key)
        victim = int(first["worker"].rsplit(":", 1)[1])
        s.kill(next(p for _, p in s.consumers if p.pid == victim), signal.SIGKILL)
        state = s.wait_finished("counted", key, timeout=90)
        assert state["status"] == "done" and state["attempts"] == 2, state
        assert int(state["worker"].rsplit(":", 1)[1]) != victim
        assert _executions(count) == 2  # the killed one and the reclaimed one
        assert [(v["version"], v["status"]) for v in versions(s, key)] == [(1, "done")]
        assert [(r["status"].value, r["artifacts"]) for r in sessions_of(s, key)] == [("done", 1)]
        assert "published again from the store" in s.logs()
    finally:
        s.stop()
    record(figures_file, "long_fit_owner_killed", database=database_url.split(":")[0], faults_injected=1, jobs_accepted=1,
           jobs_done=1, executions=2, duplicates=0)
