"""Shared pieces of the fault tests: a stack on a private broker, bursts of fits and predicts, figures."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from ..stack import Stack
from .broker import PrivateBroker

FEATURES = ["f0", "f1", "f2", "f3"]
SLOW = "tests.families_for_tests:slow"


def data(seed: int, n: int = 120) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    return x, (x["f0"] + x["f1"] > 0).astype(int).rename("label")


def fit_body(x: pd.DataFrame, y: pd.Series, **fields: Any) -> dict[str, Any]:
    return {"x": x.to_json(orient="split"), "y": y.to_frame().to_json(orient="split"), "orient": "split", **fields}


def put(stack: Stack, family: str, seed: int, timeout: float = 30, **fields: Any) -> requests.Response:
    x, y = data(seed)
    return requests.post(stack.fit_url(family), json=fit_body(x, y, **fields), timeout=timeout)


def predict_body(key: str, rows: int = 5) -> dict[str, Any]:
    x, _ = data(9999, rows)
    return {"model_key": key, "x": x.to_json(orient="split"), "orient": "split", "as_array": True}


def versions(stack: Stack, key: str) -> list[dict[str, Any]]:
    r = requests.get(f"{stack.url}/models/{key}/versions", timeout=10)
    r.raise_for_status()
    return r.json()["versions"]


class PrivateStack(Stack):
    """A Stack whose processes talk to a private RabbitMQ node (consumer counts asked of that node)."""

    def __init__(self, database_url: str, workdir: Path, broker: PrivateBroker, **env: str) -> None:
        super().__init__(database_url, workdir, broker_url=broker.url, **env)
        self.broker = broker

    def queues(self, family: str) -> list[str]:
        return [f"{self.namespace}.{family}.train", f"{self.namespace}.{family}.predict"]

    def wait_consumers(self, family: str, count: int = 1) -> None:
        self.broker.wait_consumers(self.queues(family), count, timeout=90)

    def stop(self) -> None:
        # The private node is deleted with everything on it: no purge of the shared broker.
        self.stop_processes()


@dataclass
class PredictLoad:
    """Predicts sent back to back from `threads` threads until stopped: (start, latency, status) of each."""

    url: str
    key: str
    threads: int = 2
    client_timeout: float = 60.0
    results: list[tuple[float, float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]

    def start(self) -> PredictLoad:
        for t in self._workers:
            t.start()
        return self

    def _run(self) -> None:
        body = predict_body(self.key)
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                status = requests.post(self.url, json=body, timeout=self.client_timeout).status_code
            except requests.RequestException:
                status = -1  # no HTTP answer at all (hung past the client timeout, or refused)
            with self._lock:
                self.results.append((began, time.monotonic() - began, status))
            if status != 200:
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=self.client_timeout + 5)
            assert not t.is_alive(), "a predict thread hung"

    def ok_since(self, when: float) -> bool:
        with self._lock:
            return any(s == 200 and b >= when for b, _, s in self.results)


def record(figures_file: Path, name: str, **figures: Any) -> dict[str, Any]:
    """Append one JSON line of figures to the run's figures file, and print it (visible with `pytest -s`)."""
    line = {"test": name, **figures}
    with figures_file.open("a") as f:
        f.write(json.dumps(line) + "\n")
    print(f"\nFAULT FIGURES {json.dumps(line)}  (appended to {figures_file})")
    return line
