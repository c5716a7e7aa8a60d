"""The CPU-bound half of a train job, run in a separate process.

A fit on the event loop (or in a thread, under the GIL) starves aio-pika's
heartbeats and the broker drops the connection, so the consumer hands these
functions to a process pool. They take and return only bytes and plain data.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contracts.frames import decode_training

from . import backends
from .families import Family, load_family


class JobError(Exception):
    """The fit raised: a user error (bad params, bad data). Picklable on purpose."""


@dataclass
class Result:
    artifact: bytes
    meta: dict[str, Any]
    rows: int


def init_child() -> None:
    """Pool initializer: die with the consumer, leave Ctrl-C to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    warnings.simplefilter("ignore")  # sklearn's convergence chatter is not an error


def warm_up() -> int:
    return os.getpid()


def _target(family: Family, y: pd.DataFrame | None) -> Any:
    if y is None:
        if family.supervised:
            raise JobError(f"family {family.name!r} needs a target: send y")
        return None
    return y.iloc[:, 0].to_numpy() if y.shape[1] == 1 else y.to_numpy()


def _meta(estimator: Any, x: pd.DataFrame, y: pd.DataFrame | None, yv: Any, started: float) -> dict[str, Any]:
    import sklearn

    meta: dict[str, Any] = {
        "features": list(x.columns),
        "dtypes": {c: str(t) for c, t in x.dtypes.items()},
        "targets": list(y.columns) if y is not None else [],
        "fit_seconds": round(time.perf_counter() - started, 6),
        "versions": {"python": sys.version.split()[0], "scikit-learn": sklearn.__version__, "numpy": np.__version__},
    }
    if hasattr(estimator, "classes_"):
        meta["classes"] = [str(c) for c in np.asarray(estimator.classes_).ravel()]
    if hasattr(estimator, "score"):
        try:
            meta["score"] = float(estimator.score(x, yv) if yv is not None else estimator.score(x))
        except Exception:  # a score is a courtesy, not part of the fit
            pass
    return meta


def _run(spec: str, body: bytes, key: bytes, call: Any) -> Result:
    try:
        family = load_family(spec)
        x, y = decode_training(body)
        yv = _target(family, y)
        started = time.perf_counter()
        estimator = call(family, x, yv)
        meta = _meta(estimator, x, y, yv, started)
        return Result(backends.dump(estimator, key, family.backend), meta, len(x))
    except JobError:
        raise
    except Exception as e:
        raise JobError(f"{type(e).__name__}: {e}") from None


def fit(spec: str, body: bytes, modkwargs: dict[str, Any], algkwargs: dict[str, Any], key: bytes) -> Result:
    def call(family: Family, x: pd.DataFrame, yv: Any) -> Any:
        estimator = family.build(modkwargs)
        return estimator.fit(x, yv, **algkwargs) if yv is not None else estimator.fit(x, **algkwargs)

    return _run(spec, body, key, call)


def update(spec: str, body: bytes, base: bytes, backend: str, key: bytes) -> Result:
    def call(family: Family, x: pd.DataFrame, yv: Any) -> Any:
        estimator = backends.load(base, key, backend)
        features = list(getattr(estimator, "feature_names_in_", x.columns))
        if sorted(map(str, features)) != sorted(x.columns):
            raise JobError(f"update data must have the trained columns {features}, got {list(x.columns)}")
        x = x[[str(f) for f in features]]
        return estimator.partial_fit(x, yv) if yv is not None else estimator.partial_fit(x)

    return _run(spec, body, key, call)
