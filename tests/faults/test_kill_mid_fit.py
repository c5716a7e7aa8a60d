"""SIGKILL a consumer in the middle of a fit, 20 times over 20 fits: every fit ends `done`, once, with no orphan.

Each fit stays mid-flight on its first attempt (60 s) until its consumer is killed, and takes 0.5 s
when it runs again, so each of the 20 is killed exactly once, however fast or slow the machine is."""

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


def _running_first_attempts(stack: Stack, keys: list[str], pids: set[int]) -> list[tuple[str, int]]:
    """(model_key, consumer pid) of fits on their first attempt, running on one of `pids` for 0.3 s already."""
    with store(stack) as engine, engine.connect() as conn:
        rows = conn.execute(
            select(Model.model_key, TrainingSession.worker, TrainingSession.attempts, TrainingSession.started_at)
            .join(Model, Model.id == TrainingSession.model_id)
            .where(Model.model_key.in_(keys), TrainingSession.status == Status.RUNNING)
        ).all()
    now = time.time()
    found = []
    for key, worker, attempts, started in rows:
        pid = int(worker.rsplit(":", 1)[1])
        if attempts == 1 and pid in pids and now - started.timestamp() > 0.3:
            found.append((key, pid))
    return found


def test_sigkill_mid_fit_twenty_times(fresh_stack: Stack, figures_file: Path, tmp_path: Path) -> None:
    s = fresh_stack
    for _ in range(3):
        s.start_consumer(COUNTED, wait=False)
    s.start_gateway()
    s.wait_consumers("counted", 3)

    began = time.monotonic()
    keys = []
    for i in range(FITS):
        count = str(tmp_path / f"fit-{i}")
        fields = {"name": f"{s.namespace}-kill-{i}", "modkwargs": {"delay": 0.5, "first_delay": 60, "count_file": count}}
        r = put(s, "counted", seed=1000 + i, **fields)
        assert r.status_code == 202, r.text
        keys.append(r.json()["model_key"])

    killed: list[str] = []
    orphans_checked: list[int] = []
    for n in range(KILLS):
        live = {p.pid: p for f, p in s.consumers if p.poll() is None}
        key, pid = wait_for(
            lambda: next(iter(_running_first_attempts(s, [k for k in keys if k not in killed], set(live))), None),
            90,
            interval=0.1,
            what=f"a fit mid-flight on its first attempt (kill {n + 1})",
        )
        # The forkserver and the fit process forked from it.
        below = wait_for(lambda: (d := descendants(pid)) and len(fit_processes(d)) >= 2 and d, 30, what="the fit process")
        s.kill(live[pid], signal.SIGKILL)
        killed.append(key)
        s.start_consumer(COUNTED, wait=False)  # a replacement; the surviving consumers keep working meanwhile
        try:
            wait_for(lambda: not [c for c in below if running(c)], 15, what=f"children of killed consumer {pid} gone")
        finally:
            for c in below:
                if running(c):
                    os.kill(c, signal.SIGKILL)
        orphans_checked += list(below)

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
