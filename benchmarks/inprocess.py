"""The in-process baseline: the same LogisticRegression's `predict` and `fit`, no server in between."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .bodies import make_data, predict_frame


def time_call(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Mean seconds per call of fn, over about `seconds`; and the number of calls."""
    fn()
    n, start = 0, time.perf_counter()
    batch = 1
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n, n
        batch = min(batch * 2, 1000)


def in_process(seconds: float) -> tuple[dict[str, Any], Any]:
    """Predict (1 and 1,000 rows, DataFrame and ndarray) and fit (10,000 and 100,000 rows) timings; and the
    model fitted on 10,000 rows (MLServer serves it)."""
    from sklearn.linear_model import LogisticRegression

    out: dict[str, Any] = {"predict": {}, "fit": {}}
    x, y = make_data(10_000)
    model = LogisticRegression().fit(x, y["label"])
    # The same coefficients, fitted on the bare array: predict on an ndarray skips the feature-name checks.
    bare = LogisticRegression().fit(x.to_numpy(), y["label"].to_numpy())
    for rows in (1, 1000):
        frame = predict_frame(rows)
        array = frame.to_numpy()
        calls: tuple[tuple[str, Callable[[], object]], ...] = (
            ("DataFrame", lambda: model.predict(frame)),
            ("ndarray", lambda: bare.predict(array)),
        )
        for what, fn in calls:
            per_call, n = time_call(fn, seconds)
            out["predict"][f"{what} {rows}"] = {"input": what, "rows": rows, "seconds_per_call": per_call, "calls": n, "rps": 1 / per_call}
    for rows in (10_000, 100_000):
        x, y = make_data(rows)
        best = float("inf")
        for _ in range(3 if rows <= 10_000 else 2):
            t = time.perf_counter()
            LogisticRegression().fit(x, y["label"])
            best = min(best, time.perf_counter() - t)
        out["fit"][rows] = {"seconds": best}
    return out, model
