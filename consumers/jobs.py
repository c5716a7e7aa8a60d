"""The CPU-bound half of a train job, run in a fit process (`pool.FitPool`).

These functions take and return only bytes and plain data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contracts.errors import MLServerError
from contracts.frames import decode_training
from contracts.status import Backend

from . import backends
from .families import Family, load_family


# The training score in a version's metadata is computed on at most this many rows.
SCORE_ROWS = 10_000


class JobError(Exception):
    """The fit raised: a user error (bad params, bad data). Picklable on purpose."""


@dataclass
class Result:
    artifact: bytes
    meta: dict[str, Any]
    rows: int
    backend: str = Backend.JOBLIB.value


def _target(family: Family, y: pd.DataFrame | None) -> Any:
    if y is None:
        if family.supervised:
            raise JobError(f"family {family.name!r} needs a target: send y")
        return None
    return y.iloc[:, 0].to_numpy() if y.shape[1] == 1 else y.to_numpy()


def _meta(
    estimator: Any, x: pd.DataFrame, y: pd.DataFrame | None, yv: Any, started: float, versions: dict[str, str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "features": list(x.columns),
        "dtypes": {c: str(t) for c, t in x.dtypes.items()},
        "targets": list(y.columns) if y is not None else [],
        "fit_seconds": round(time.perf_counter() - started, 6),
        "versions": versions,
    }
    if hasattr(estimator, "classes_"):
        classes = np.asarray(estimator.classes_)
        meta["classes"] = [str(c) for c in classes.ravel()]
        meta["classes_dtype"] = str(classes.dtype)
    if hasattr(estimator, "score"):
        # On at most SCORE_ROWS evenly spaced training rows: a courtesy must not cost a second fit's time.
        step = max(1, len(x) // SCORE_ROWS)
        xs, ys = (x.iloc[::step], yv[::step] if yv is not None else None) if step > 1 else (x, yv)
        try:
            meta["score"] = float(estimator.score(xs, ys) if ys is not None else estimator.score(xs))
        except Exception:  # a score is a courtesy, not part of the fit
            pass
    return meta


def _run(spec: str, body: bytes, key: bytes, backend: str, call: Any) -> Result:
    try:
        family = load_family(spec)
        x, y = decode_training(body)
        yv = _target(family, y)
        started = time.perf_counter()
        estimator = call(family, x, yv)
        if hasattr(estimator, "feature_names_in_"):  # the order predicts must use (ONNX inputs are positional)
            x = x[[str(f) for f in estimator.feature_names_in_]]
        meta = _meta(estimator, x, y, yv, started, backends.versions(backend, family.supports_update))
        exporting = time.perf_counter()
        artifact = backends.dump(
            estimator, key, Backend(backend), x=x, methods=family.methods, keep_state=family.supports_update
        )
        if backend == Backend.ONNX:
            meta["export_seconds"] = round(time.perf_counter() - exporting, 6)
        return Result(artifact, meta, len(x), backend)
    except JobError:
        raise
    except (backends.ExportError, MLServerError) as e:  # messages written for the caller
        raise JobError(str(e)) from None
    except Exception as e:
        raise JobError(f"{type(e).__name__}: {e}") from None


def fit(
    spec: str,
    body: bytes,
    modkwargs: dict[str, Any],
    algkwargs: dict[str, Any],
    key: bytes,
    backend: str = Backend.JOBLIB.value,
) -> Result:
    def call(family: Family, x: pd.DataFrame, yv: Any) -> Any:
        family.info().check_modkwargs(modkwargs)  # as the gateway does once the family is registered
        estimator = family.build(modkwargs)
        return estimator.fit(x, yv, **algkwargs) if yv is not None else estimator.fit(x, **algkwargs)

    return _run(spec, body, key, backend, call)


def update(
    spec: str, body: bytes, base: bytes, backend: str, key: bytes, base_meta: dict[str, Any] | None = None
) -> Result:
    """`partial_fit` on the base version; the new version keeps the base's backend."""

    def call(family: Family, x: pd.DataFrame, yv: Any) -> Any:
        estimator = backends.load_estimator(
            base, key, backend, trusted=family.trusted(), versions=(base_meta or {}).get("versions")
        )
        features = list(getattr(estimator, "feature_names_in_", x.columns))
        if sorted(map(str, features)) != sorted(x.columns):
            raise JobError(f"update data must have the trained columns {features}, got {list(x.columns)}")
        x = x[[str(f) for f in features]]
        return estimator.partial_fit(x, yv) if yv is not None else estimator.partial_fit(x)

    return _run(spec, body, key, backend, call)
