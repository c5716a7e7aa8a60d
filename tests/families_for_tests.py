"""Families defined outside the package, loaded by consumers as `tests.families_for_tests:NAME`.

`slow` is a logistic regression whose fit sleeps `delay` seconds first (in
small steps), so tests can catch a consumer in the middle of a fit. `killer` kills its
consumer on every fit.
"""

from __future__ import annotations

import os
import signal
import time

from sklearn.linear_model import LogisticRegression

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
    """A slow fit that appends one line (its pid) to `count_file` each time it starts: fit executions, counted."""

    def __init__(self, delay: float = 2.0, count_file: str = "", **kwargs: object) -> None:
        super().__init__(delay=delay, **kwargs)
        self.count_file = count_file

    def get_params(self, deep: bool = True) -> dict[str, object]:
        return {**super().get_params(deep), "count_file": self.count_file}

    def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def,override]
        if self.count_file:
            with open(self.count_file, "a") as f:
                f.write(f"{os.getpid()}\n")
        return super().fit(X, y, sample_weight)


class ConsumerKiller(LogisticRegression):
    """Its fit kills the consumer process that runs it (the fit process's parent): a poison job."""

    def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def,override]
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
        return self


slow = Family("slow", SlowLogisticRegression, methods=("predict", "predict_proba"))
killer = Family("killer", ConsumerKiller)
counted = Family("counted", CountedSlowLogisticRegression, methods=("predict", "predict_proba"))
