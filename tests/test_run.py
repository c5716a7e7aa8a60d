"""`ml-server run`: the all-in-one local command starts the gateway and a consumer per built-in family."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from consumers.families import BUILTIN

from .stack import BROKER_URL, ROOT, free_port, purge_namespace, wait_for

pytestmark = pytest.mark.integration


def test_run_serves_every_builtin_family_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_DATA_DIR": str(tmp_path / "data"),
        "ML_SERVER_BROKER_URL": BROKER_URL,
        "ML_SERVER_NAMESPACE": f"test-run-{port}",
        "ML_SERVER_PORT": str(port),
    }
    env.pop("ML_SERVER_SECRET", None)
    env.pop("ML_SERVER_SECRET_FILE", None)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def families() -> set[str] | None:
            assert proc.poll() is None, log.read_text()
            r = requests.get(f"http://127.0.0.1:{port}/families", timeout=2)
            names = {f["name"] for f in r.json()["families"]} if r.ok else set()
            return names if names >= set(BUILTIN) else None

        assert wait_for(families, 120, interval=0.5, what="every built-in family registered") >= set(BUILTIN)
        secret = tmp_path / "data" / "secret"
        assert secret.exists() and (secret.stat().st_mode & 0o777) == 0o600
        assert (tmp_path / "data" / "ml-server.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        purge_namespace(env["ML_SERVER_NAMESPACE"])
    assert rc == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()  # every process stopped cleanly
