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
    unavailable_without_retry_after: int = 0  # 503s that did not say when to try again

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
                r = requests.post(self.url, json=body, timeout=self.client_timeout)
                status = r.status_code
            except requests.RequestException:
                status = -1  # no HTTP answer at all (hung past the client timeout, or refused)
            with self._lock:
                self.results.append((began, time.monotonic() - began, status))
                if status == 503 and "Retry-After" not in r.headers:
                    self.unavailable_without_retry_after += 1
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

    def longest_gap(self, since: float, until: float) -> float:
        """The longest time between two answered (200) predicts from `since` to `until`: how long
        callers got no answers, e.g. across a failover."""
        with self._lock:
            answered = sorted(b + lat for b, lat, s in self.results if s == 200 and since <= b + lat <= until)
        marks = [since, *answered, until]
        return max(b - a for a, b in zip(marks, marks[1:]))


def record(figures_file: Path, name: str, **figures: Any) -> dict[str, Any]:
    """Append one JSON line of figures to the run's figures file, and print it (visible with `pytest -s`)."""
    line = {"test": name, **figures}
    with figures_file.open("a") as f:
        f.write(json.dumps(line) + "\n")
    print(f"\nFAULT FIGURES {json.dumps(line)}  (appended to {figures_file})")
    return line


class FitBurst:
    """Small distinct fits sent one after the other until stopped (or `count` of them), each sent again after a
    503 as a client would (with `retrain`: a refused fit is recorded `failed`): (status, model_key) of every answer."""

    def __init__(self, stack: Stack, family: str = "logreg", count: int | None = None) -> None:
        self.stack, self.family, self.count = stack, family, count
        self.answers: list[tuple[int, str | None]] = []
        self.sent = 0  # fits (not attempts) begun
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FitBurst:
        self._thread.start()
        return self

    def _run(self) -> None:
        s = self.stack
        while not self._stop.is_set() and (self.count is None or self.sent < self.count):
            x, y = data(5000 + self.sent, n=60)
            body = fit_body(x, y, name=f"{s.namespace}-burst-{self.sent}", retrain=True)
            self.sent += 1
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    r = requests.post(s.fit_url(self.family), json=body, timeout=30)
                    self.answers.append((r.status_code, r.json().get("model_key") if r.status_code == 202 else None))
                except requests.RequestException:
                    self.answers.append((-1, None))
                if self.answers[-1][0] != 503:
                    break
                time.sleep(0.3)

    def accepted(self) -> list[str]:
        return [k for st, k in self.answers if st == 202 and k]

    def stop(self) -> None:
        """Let the fit under way finish (accepted or given up), then return."""
        self._stop.set()
        self.join(150)

    def join(self, timeout: float) -> None:
        """Until every fit is sent (`count`), or the one under way after `stop`."""
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), "the fit burst hung"
