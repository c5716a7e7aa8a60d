"""The CPU-bound half of a train job, run in a fit process (`pool.FitPool`).

These functions take and return only bytes and plain data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contracts.columns import InputSchema, check_target, check_update, conform, infer
from contracts.errors import MLServerError
from contracts.frames import decode_training
from contracts.status import Backend

from . import backends, preprocess, scoring
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
    check_target(y)
    # Labels as they come: text and category targets stay text (answered in the same labels).
    values = y.astype(object) if any(isinstance(t, pd.CategoricalDtype) for t in y.dtypes) else y
    return values.iloc[:, 0].to_numpy() if y.shape[1] == 1 else values.to_numpy()


def _meta(
    model: Any, schema: InputSchema, x: pd.DataFrame, y: pd.DataFrame | None, yv: Any, started: float, versions: dict[str, str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "features": schema.names,
        "dtypes": {c: str(t) for c, t in x.dtypes.items()},
        "schema": schema.as_list(),
        "preprocessing": preprocess.describe(model),
        "array_ready": preprocess.array_ready(model),
        "targets": list(y.columns) if y is not None else [],
        "fit_seconds": round(time.perf_counter() - started, 6),
        "versions": versions,
    }
    if hasattr(model, "classes_"):
        classes = np.asarray(model.classes_)
        meta["classes"] = [str(c) for c in classes.ravel()]
        meta["classes_dtype"] = str(classes.dtype)
    if hasattr(model, "score"):
        # On at most SCORE_ROWS evenly spaced training rows: a courtesy must not cost a second fit's time.
        step = max(1, len(x) // SCORE_ROWS)
        xs, ys = (x.iloc[::step], yv[::step] if yv is not None else None) if step > 1 else (x, yv)
        try:
            meta["score"] = float(model.score(xs, ys) if ys is not None else model.score(xs))
        except Exception:  # a score is a courtesy, not part of the fit
            pass
    return meta


def _run(spec: str, body: bytes, key: bytes, backend: str, call: Any, evaluate: Any = None) -> Result:
    """Decode the job's frames, let `call(family, x, yv)` make the model, and store it; `evaluate(conformed, yv)`
    gives its held-out scores (None: none)."""
    try:
        family = load_family(spec)
        x, y = decode_training(body)
        yv = _target(family, y)
        started = time.perf_counter()
        model, schema, conformed = call(family, x, yv)
        meta = _meta(model, schema, conformed, y, yv, started, backends.versions(backend, family.supports_update))
        scores = evaluate(conformed, yv) if evaluate is not None else None
        if scores is not None:
            meta["scores"] = scores
        exporting = time.perf_counter()
        artifact = backends.dump(
            model,
            key,
            Backend(backend),
            x=conformed,
            schema=schema,
            methods=family.methods,
            keep_state=family.supports_update,
            trusted=family.trusted(),
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
    unfitted: list[Any] = []

    def call(family: Family, x: pd.DataFrame, yv: Any) -> tuple[Any, InputSchema, pd.DataFrame]:
        schema = infer(x)
        conformed = conform(x, schema)
        model = preprocess.model_for(family, schema, estimator_kwargs, backend == Backend.ONNX.value)
        if how is not None:
            unfitted.append(scoring.unfitted(model))
        params = preprocess.fit_params(model, algkwargs)
        model.fit(conformed, yv, **params) if yv is not None else model.fit(conformed, **params)
        return model, schema, conformed

    def evaluate(conformed: pd.DataFrame, yv: Any) -> dict[str, Any] | None:
        model = unfitted[0] if unfitted else None
        if how is None or model is None:
            return None
        return scoring.evaluate(model, conformed, yv, preprocess.fit_params(model, algkwargs), how, asked)

    try:
        how, asked, estimator_kwargs = scoring.options(modkwargs)
    except MLServerError as e:
        raise JobError(str(e)) from None
    return _run(spec, body, key, backend, call, evaluate)


def update(
    spec: str, body: bytes, base: bytes, backend: str, key: bytes, base_meta: dict[str, Any] | None = None
) -> Result:
    """`partial_fit` on the base version, through the base's own preprocessing (fitted at the first fit,
    never refitted); the new version keeps the base's backend."""

    def call(family: Family, x: pd.DataFrame, yv: Any) -> tuple[Any, InputSchema, pd.DataFrame]:
        meta = base_meta or {}
        model = backends.load_estimator(base, key, backend, trusted=family.trusted(), versions=meta.get("versions"))
        if "schema" in meta:
            schema = InputSchema.from_list(meta["schema"])
        else:  # a version stored before schemas were recorded: its columns, as numbers
            schema = infer(x[[str(f) for f in meta.get("features", x.columns)]])
        check_update(x, schema)
        conformed = conform(x, schema)
        preprocess.partial_fit(model, conformed, yv)
        return model, schema, conformed

    return _run(spec, body, key, backend, call)
