"""Seldon MLServer (scikit-learn runtime) serving the same model, for the side-by-side rows.

Installed on demand into benchmarks/.venv-mlserver (not a dependency of
ml-server), started with one model, `logreg`, from a joblib file, V2 REST on a
free port, `parallel_workers: 0` (inference in the server process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from contracts import paths

from .common import FAMILY, HERE, Fatal, free_port, wait_for
from .stack import Processes

MLSERVER_VENV = HERE / ".venv-mlserver"


def ensure_mlserver() -> tuple[Path | None, str]:
    """The venv's mlserver executable, or None and why not."""
    exe = MLSERVER_VENV / "bin" / "mlserver"
    py = MLSERVER_VENV / "bin" / "python"
    check = [str(py), "-c", "import mlserver, mlserver_sklearn, sklearn; print(mlserver.__version__)"]
    if exe.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return exe, ""
    import sklearn

    print(f"installing mlserver and mlserver-sklearn into {MLSERVER_VENV} ...", flush=True)
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True, capture_output=True, timeout=300)
        r = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "mlserver", "mlserver-sklearn", f"scikit-learn=={sklearn.__version__}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"could not create {MLSERVER_VENV}: {e}"
    if r.returncode != 0:
        return None, "pip install mlserver mlserver-sklearn failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    if subprocess.run(check, capture_output=True).returncode != 0:
        return None, "mlserver installed but does not import"
    return exe, ""


def start_mlserver(procs: Processes, workdir: Path, model: Any) -> tuple[str, int, str]:
    """MLServer serving `model` as `logreg`: its URL, pid and version (raises when it can't be had)."""
    import joblib
    import requests

    exe, why = ensure_mlserver()
    if exe is None:
        raise RuntimeError(why)
    version = subprocess.run(
        [str(MLSERVER_VENV / "bin" / "python"), "-c", "import mlserver; print(mlserver.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    folder = workdir / "mlserver"
    (folder / FAMILY).mkdir(parents=True)
    joblib.dump(model, folder / FAMILY / "model.joblib")
    http_port, grpc_port = free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": free_port(),
        "parallel_workers": 0,
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / FAMILY / "model-settings.json").write_text(
        json.dumps({"name": FAMILY, "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}})
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = procs.spawn("mlserver", [str(exe), "start", str(folder)], env, cwd=folder)
    url = f"http://127.0.0.1:{http_port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise Fatal(f"mlserver exited with {proc.returncode}: {procs.log('mlserver')[-800:]}")
        return bool(requests.get(url + paths.fill(paths.V2_MODEL_READY, model=FAMILY), timeout=2).ok)

    wait_for(ready, 120, "MLServer", interval=0.3)
    return url, proc.pid, version
