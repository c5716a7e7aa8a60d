"""`ml-server run`: the all-in-one local command: the gateway and one consumer process for every built-in family."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from client import GenericModelInterface
from contracts.families import BUILTIN

from .processes import descendants, parent
from .stack import BROKER_URL, ROOT, free_port, purge_namespace, wait_for

pytestmark = pytest.mark.integration


@contextmanager
def run(
    tmp_path: Path, *args: str, stop: int = signal.SIGTERM, **extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`ml-server run ARGS` in a data folder of its own (`extra`: more environment), until `stop` (SIGINT: to
    its whole process group, as a terminal's Ctrl-C); (process, base URL, log file)."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_DATA_DIR": str(tmp_path / "data"),
        "ML_SERVER_BROKER_URL": BROKER_URL,
        "ML_SERVER_NAMESPACE": f"test-run-{port}",
        "ML_SERVER_PORT": str(port),
        "ML_SERVER_METRICS_PORT": "0",
        **extra,
    }
    for name in ("ML_SERVER_SECRET", "ML_SERVER_SECRET_FILE", "ML_SERVER_FAMILIES", "ML_SERVER_DATABASE_URL"):
        env.pop(name, None)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "commands", "run", *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        if stop == signal.SIGINT:
            os.killpg(proc.pid, stop)
        else:
            proc.send_signal(stop)
        rc = proc.wait(timeout=60)
        purge_namespace(env["ML_SERVER_NAMESPACE"], BUILTIN)
        text = log.read_text()
        assert rc == 0, text
        # Every process stopped cleanly, and a stop is not reported as a crash or answered with restarts.
        assert "Traceback" not in text and " ERROR " not in text and "restarting" not in text, text


def said_ready(proc: subprocess.Popen[bytes], log: Path) -> bool:
    assert proc.poll() is None, log.read_text()
    return "ready in " in log.read_text()


def mapped(pid: int, name: str) -> bool:
    """Whether a process has loaded a shared library of the package `name` (the sign it imported it)."""
    return f"/site-packages/{name}/" in Path(f"/proc/{pid}/maps").read_text()


def test_run_is_one_consumer_process_ready_when_every_family_is_served(tmp_path: Path) -> None:
    with run(tmp_path) as (proc, url, log):
        wait_for(lambda: said_ready(proc, log), 120, interval=0.2, what="`ml-server run` to say ready")
        # The `ready` line is the user's cue to start: the seed's example works at the first try.
        rng = np.random.default_rng(0)
        x = pd.DataFrame(rng.normal(size=(2000, 10)))
        y = (x.sum(axis=1) <= x.mean(axis=1)).astype(np.float32)
        mi = GenericModelInterface(url + "/", "logreg")
        mi.fit(x, y.to_frame(), name="logistic-regression-random-data")
        yhat = mi.predict(x).iloc[:, 0]
        assert (yhat.to_numpy() == y.to_numpy()).mean() > 0.9

        ready = requests.get(f"{url}/readyz", timeout=5).json()
        assert ready["families"] == dict.fromkeys(BUILTIN, "ok"), ready
        families = requests.get(f"{url}/families", timeout=5).json()["families"]
        assert {f["name"] for f in families} >= set(BUILTIN)

        below = descendants(proc.pid)
        children = {pid: cmd for pid, cmd in below.items() if parent(pid) == proc.pid}
        assert sorted(cmd.split()[2] for cmd in children.values()) == ["consumers", "gateway"], children
        consumer = next(pid for pid, cmd in children.items() if " consumers " in cmd)
        assert all(f in below[consumer] for f in BUILTIN)
        # Imported only where used: no scikit-learn in `ml-server run` itself, no ONNX runtime in a
        # consumer that served no ONNX model.
        assert not mapped(proc.pid, "sklearn") and not mapped(proc.pid, "pandas")
        assert mapped(consumer, "sklearn") and not mapped(consumer, "onnxruntime")

        secret = tmp_path / "data" / "secret"
        assert secret.exists() and (secret.stat().st_mode & 0o777) == 0o600
        assert (tmp_path / "data" / "ml-server.db").exists()


def test_run_with_a_process_per_family(tmp_path: Path) -> None:
    with run(tmp_path, "--families", "logreg,nn", "--process-per-family", stop=signal.SIGINT) as (proc, url, log):
        wait_for(lambda: said_ready(proc, log), 120, interval=0.2, what="`ml-server run` to say ready")
        assert requests.get(f"{url}/readyz", timeout=5).json()["families"] == {"logreg": "ok", "nn": "ok"}
        consumers = sorted(cmd.split()[-1] for pid, cmd in descendants(proc.pid).items() if parent(pid) == proc.pid and " consumers " in cmd)
        assert consumers == ["logreg", "nn"], consumers
