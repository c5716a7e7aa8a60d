"""Several gateway processes on one port: `ml-server run --gateways 2` (the gateway's `--workers 2`).

Both processes take connections on the one port (SO_REUSEPORT: the kernel
spreads connections over them), both serve predicts through the broker, and
`GET /metrics` on either answers the requests of both, summed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client import multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from client import GenericModelInterface

from .conftest import new_database
from .processes import descendants, parent
from .stack import BROKER_URL, ROOT, purge_namespace, wait_for
from .test_run import run, said_ready

pytestmark = pytest.mark.integration

REQUESTS = "ml_server_gateway_requests"


def answered(families: Iterable[Metric]) -> float:
    """Requests counted by the gateway's request counter, over every label."""
    return sum(s.value for family in families if family.name == REQUESTS for s in family.samples if s.name == f"{REQUESTS}_total")


def metrics_folder(pid: int) -> Path:
    """Where a gateway process writes its metrics (the workers' PROMETHEUS_MULTIPROC_DIR)."""
    environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
    return Path(environ[b"PROMETHEUS_MULTIPROC_DIR"].decode())


def scraped(url: str) -> float:
    r = requests.get(f"{url}/metrics", timeout=10)
    r.raise_for_status()
    return answered(text_string_to_metric_families(r.text))


def test_two_gateways_share_the_port_and_sum_their_metrics(tmp_path: Path) -> None:
    with run(tmp_path, "--families", "logreg", "--gateways", "2") as (proc, url, log):
        wait_for(lambda: said_ready(proc, log), 120, interval=0.2, what="`ml-server run --gateways 2` to say ready")
        below = descendants(proc.pid)
        supervisor = next(pid for pid, cmd in below.items() if parent(pid) == proc.pid and cmd.split()[2] == "gateway")
        workers = sorted(pid for pid, cmd in below.items() if parent(pid) == supervisor and cmd.split()[2:] == ["gateway", "--worker"])
        assert len(workers) == 2, below
        folder = metrics_folder(workers[0])
        assert metrics_folder(workers[1]) == folder

        rng = np.random.default_rng(0)
        x = pd.DataFrame(rng.normal(size=(200, 4)), columns=["a", "b", "c", "d"])
        y = (x["a"] > 0).astype(int).to_frame("y")
        key = GenericModelInterface(url + "/", "logreg").fit(x, y, name="two-gateways").model_key  # waits for done

        before = scraped(url)
        sent = 40
        body = {"model_key": key, "x": x.head(3).to_json(orient="split"), "orient": "split"}
        for _ in range(sent):  # each on a connection of its own: the kernel picks a process per connection
            assert requests.post(f"{url}/logreg", json=body, timeout=30).status_code == 200
        after = scraped(url)
        # Every predict, and the first scrape, counted once, whichever process answered it.
        assert after - before == sent + 1, (before, after)

        # Both processes answered some of them: each one's own counter file holds requests.
        per_process = {pid: answered(multiprocess.MultiProcessCollector.merge([str(folder / f"counter_{pid}.db")])) for pid in workers}
        assert all(n > 0 for n in per_process.values()), per_process
        assert sum(per_process.values()) >= sent, per_process
    assert not folder.exists()  # the workers' metrics files went with them


def test_workers_that_cannot_start_stop_the_gateway_command(tmp_path: Path) -> None:
    """A port taken by a process that does not share it: both workers fail to bind, and the command
    exits with their error instead of starting them again and again."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    with taken, new_database("sqlite", tmp_path) as database_url:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ML_SERVER_DATA_DIR": str(tmp_path / "data"),
            "ML_SERVER_DATABASE_URL": database_url,
            "ML_SERVER_BROKER_URL": BROKER_URL,
            "ML_SERVER_NAMESPACE": f"test-workers-{port}",
            "ML_SERVER_PORT": str(port),
        }
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
            purge_namespace(env["ML_SERVER_NAMESPACE"], [])  # the exchanges the workers declared
        text = out.decode(errors="replace")
        assert proc.returncode != 0, text
        assert "as it started; stopping" in text and "starting another" not in text, text
