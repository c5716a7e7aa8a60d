"""Families defined outside the package, loaded by consumers as `tests.families_for_tests:NAME`.

`slow` is a logistic regression whose fit sleeps `delay` seconds first (in
small steps), so tests can catch a consumer in the middle of a fit. `killer` kills its
consumer process on every fit.
"""

from __future__ import annotations

import os
import signal
import time

from sklearn.linear_model import LogisticRegression

from consumers import pool
from consumers.families import Family


class SlowLogisticRegression(LogisticRegression):
    def __init__(self, delay: float = 2.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.delay = delay

    def get_params(self, deep: bool = True) -> dict[str, object]:
        return {**super().get_params(deep), "delay": self.delay}

    def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def,override]
        end = time.monotonic() + self.delay
        while time.monotonic() < end:
            time.sleep(0.05)
        return super().fit(X, y, sample_weight)


class CountedSlowLogisticRegression(SlowLogisticRegression):
    """A slow fit that appends one line (its pid) to `count_file` each time it starts: fit executions, counted.

    With `first_delay`, the first execution (no line in `count_file` yet) sleeps that long instead
    of `delay`: a fit that stays mid-flight on its first attempt until a test kills it."""

    def __init__(self, delay: float = 2.0, count_file: str = "", first_delay: float | None = None, **kwargs: object) -> None:
        super().__init__(delay=delay, **kwargs)
        self.count_file = count_file
        self.first_delay = first_delay

    def get_params(self, deep: bool = True) -> dict[str, object]:
        return {**super().get_params(deep), "count_file": self.count_file, "first_delay": self.first_delay}

    def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def,override]
        if self.count_file:
            first = not os.path.exists(self.count_file) or not open(self.count_file).read().strip()
            with open(self.count_file, "a") as f:
                f.write(f"{os.getpid()}\n")
            if first and self.first_delay is not None:
                self.delay = self.first_delay
        return super().fit(X, y, sample_weight)


class ConsumerKiller(LogisticRegression):
    """Its fit kills the consumer process that runs it: a poison job."""

    def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def,override]
        os.kill(pool.consumer_pid(), signal.SIGKILL)
        time.sleep(60)
        return self


slow = Family("slow", SlowLogisticRegression, methods=("predict", "predict_proba"))
killer = Family("killer", ConsumerKiller)
counted = Family("counted", CountedSlowLogisticRegression, methods=("predict", "predict_proba"))


class HangingPredict(LogisticRegression):
    """A fitted logistic regression whose `predict` writes its process id to `pid_file` and then spins forever:
    what a model with a cycle in its tree does, without needing the cycle to get past an import's checks."""

    def __init__(self, pid_file: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.pid_file = pid_file

    def get_params(self, deep: bool = True) -> dict[str, object]:
        return {**super().get_params(deep), "pid_file": self.pid_file}

    def predict(self, X):  # type: ignore[no-untyped-def,override]
        with open(self.pid_file, "a") as f:
            f.write(f"{os.getpid()}\n")
        while True:
            pass
