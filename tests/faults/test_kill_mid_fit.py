"""SIGKILL a consumer in the middle of a fit, 20 times over 20 fits: every fit ends `done`, once, with no orphan.

Each fit stays mid-flight on its first attempt (60 s) until its consumer is killed, and takes 0.5 s
when it runs again, so each of the 20 is killed exactly once, however fast or slow the machine is.
Four consumers run at once, and every round kills each of them mid-fit (20 kills in five rounds)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from contracts.status import Status
from contracts.store import Model, TrainingSession

from ..conftest import Stack
from ..stack import wait_for
from ..processes import descendants, fit_processes, running
from ..test_lifecycle import sessions_of, store
from .helpers import put, record, versions

COUNTED = "tests.families_for_tests:counted"

pytestmark = pytest.mark.integration

FITS = KILLS = 20
CONSUMERS = 4


def _started(count_file: Path) -> bool:
    """The fit's first execution is inside the estimator's `fit` (it wrote its line): killing its consumer
    now kills a fit mid-flight, and the next attempt is the quick one."""
    return count_file.exists() and len(count_file.read_text().split()) == 1


def _running_first_attempts(stack: Stack, keys: dict[str, Path], pids: set[int]) -> list[tuple[str, int]]:
    """(model_key, consumer pid) of fits on their first attempt, mid-fit on one of `pids`."""
    with store(stack) as engine, engine.connect() as conn:
        rows = conn.execute(
            select(Model.model_key, TrainingSession.worker, TrainingSession.attempts, TrainingSession.started_at)
            .join(Model, Model.id == TrainingSession.model_id)
            .where(Model.model_key.in_(keys), TrainingSession.status == Status.RUNNING)
        ).all()
    found = []
    for key, worker, attempts, _ in rows:
        pid = int(worker.rsplit(":", 1)[1])
        if attempts == 1 and pid in pids and _started(keys[key]):
            found.append((key, pid))
    return found


def test_sigkill_mid_fit_twenty_times(fresh_stack: Stack, figures_file: Path, tmp_path: Path) -> None:
    s = fresh_stack
    for _ in range(CONSUMERS):
        s.start_consumer(COUNTED, wait=False)
    s.start_gateway()
    s.wait_consumers("counted", CONSUMERS)

    began = time.monotonic()
    keys = []
    counts: dict[str, Path] = {}
    for i in range(FITS):
        count = tmp_path / f"fit-{i}"
        fields = {"name": f"{s.namespace}-kill-{i}", "modkwargs": {"delay": 0.5, "first_delay": 60, "count_file": str(count)}}
        r = put(s, "counted", seed=1000 + i, **fields)
        assert r.status_code == 202, r.text
        keys.append(r.json()["model_key"])
        counts[keys[-1]] = count

    killed: list[str] = []
    orphans_checked: list[int] = []
    while len(killed) < KILLS:
        live = {p.pid: p for f, p in s.consumers if p.poll() is None}
        wanted = min(len(live), KILLS - len(killed))

        def one_per_consumer() -> dict[int, str] | None:
            """A fit mid-flight on its first attempt on each of `wanted` consumers: {pid: model_key}."""
            found: dict[int, str] = {}
            for key, pid in _running_first_attempts(s, {k: counts[k] for k in keys if k not in killed}, set(live)):
                found.setdefault(pid, key)
            return found if len(found) >= wanted else None

        victims = wait_for(one_per_consumer, 90, interval=0.1, what=f"fits mid-flight on {wanted} consumers (after {len(killed)} kills)")
        # The forkserver and the fit process forked from it, below each consumer.
        below = {
            pid: wait_for(lambda: (d := descendants(pid)) and len(fit_processes(d)) >= 2 and d, 30, what="the fit process")
            for pid in list(victims)[:wanted]
        }
        for pid in below:
            s.kill(live[pid], signal.SIGKILL)
            killed.append(victims[pid])
        for _ in below:
            s.start_consumer(COUNTED, wait=False)  # replacements; the others' jobs go back to the queue meanwhile
        children = [c for d in below.values() for c in d]
        try:
            wait_for(lambda: not [c for c in children if running(c)], 15, what=f"children of killed consumers {sorted(below)} gone")
        finally:
            for c in children:
                if running(c):
                    os.kill(c, signal.SIGKILL)
        orphans_checked += children

    states = [s.wait_finished("counted", key, timeout=120) for key in keys]
    elapsed = time.monotonic() - began

    done = [st for st in states if st["status"] == "done"]
    duplicates = 0
    for key in keys:
        listed = versions(s, key)
        assert [(v["version"], v["status"]) for v in listed] == [(1, "done")], listed
        rows = sessions_of(s, key)
        duplicates += sum(r["artifacts"] for r in rows) - 1
        assert [(r["version"], r["status"].value, r["artifacts"]) for r in rows] == [(1, "done", 1)], rows
    assert sorted(killed) == sorted(keys)  # every fit was killed once mid-flight
    assert all(st["attempts"] == 2 for st in states), [st["attempts"] for st in states]
    record(
        figures_file,
        "sigkill_mid_fit",
        database=s.database_url.split(":")[0],
        faults_injected=len(killed),
        jobs_accepted=len(keys),
        jobs_done=len(done),
        duplicates=duplicates,
        lost=len(keys) - len(done),
        orphan_fit_processes=sum(1 for c in orphans_checked if running(c)),
        seconds=round(elapsed, 1),
    )
    assert len(done) == FITS and duplicates == 0
