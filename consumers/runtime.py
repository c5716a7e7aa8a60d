"""The predict runtime of one family: the model to answer with, and the answer.

`Runtime.answer(headers, body)` takes a predict message's headers and
Parquet body and returns the answer's Parquet, or raises the `MLServerError`
the reply carries. Models come from memory (`cache`): which stored version
answers for a model key is remembered (`Resolutions`), and loaded estimators
are kept (`ModelCache`), both dropped when status events say the model
changed. No SQL and no deserialization on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from marshmallow import ValidationError

from service import logs
from contracts.columns import InputSchema, conform
from contracts.errors import InvalidInput, MLServerError
from contracts.frames import ParquetCodec, check_table, has_default_index, normalize, numeric_matrix
from contracts.schemas import PredictHeaders

from . import backends, metrics
from .cache import Loaded, ModelCache, Resolutions
from .families import Family
from .records import Records

log = logging.getLogger(__name__)

# Frames up to this many rows are predicted on the event loop; bigger ones in a thread.
INLINE_ROWS = 2_000

_PREDICT_HEADERS = PredictHeaders()


class Runtime:
    def __init__(self, family: Family, records: Records, key: bytes) -> None:
        self.family = family
        self.records = records
        self.key = key
        self.cache = ModelCache(family=family.name)
        self.resolutions = Resolutions()

    async def answer(self, headers: Mapping[str, Any], body: bytes) -> bytes:
        try:
            job = _PREDICT_HEADERS.load(dict(headers))
        except ValidationError as e:
            raise InvalidInput(f"invalid predict headers: {e.messages}", fields=_fields(e)) from e
        logs.bind(model_key=job["model_key"], version=job["version"])
        # The input first: a bad frame is a 422 whatever the model.
        table = check_table(ParquetCodec.decode_table(body))
        metrics.PREDICT_ROWS.labels(self.family.name).observe(table.num_rows)
        loaded = await self.loaded(job["model_key"], job["version"], job["alias"])
        kwargs = dict(job["kwargs"])
        method = kwargs.pop("method", "predict")
        if table.num_rows > INLINE_ROWS:
            return await asyncio.to_thread(predict_table, self.family, loaded, table, method, kwargs)
        return predict_table(self.family, loaded, table, method, kwargs)

    async def loaded(self, model_key: str, version: int | None, alias: str | None = None) -> Loaded:
        """The model to answer with, from memory when it is there: no SQL per predict."""
        lookup = (model_key, version, alias)
        where = self.resolutions.get(lookup)
        if where is None:
            where = await self.records.servable(self.family.name, model_key, version, alias)
            self.resolutions.put(lookup, where)
        logs.bind(version=where.version)
        cache_key = (model_key, where.session_id)
        loaded = self.cache.get(cache_key)
        if loaded is None:
            art = await self.records.artifact(where.session_id)
            estimator = await asyncio.to_thread(
                backends.load,
                art.data,
                self.key,
                art.backend,
                trusted=self.family.trusted(),
                versions=art.meta.get("versions"),
            )
            schema = InputSchema.from_list(art.meta["schema"]) if "schema" in art.meta else None
            loaded = Loaded(estimator, art.meta, where.version, art.backend, schema)
            self.cache.put(cache_key, loaded)
        return loaded

    async def warm(self, model_key: str) -> None:
        """Load the model's default version now (the V2 repository's `load`): its next predict finds it in memory."""
        self.resolutions.drop(model_key)
        try:
            loaded = await self.loaded(model_key, None)
        except MLServerError as e:
            log.warning("model=%s not loaded: %s", model_key, e.message)
            return
        log.info("model=%s version %d loaded into the cache", model_key, loaded.version)

    def forget(self, model_key: str) -> int:
        """Drop what is remembered of a model (deleted, an alias moved, or a newer version is the default now)."""
        self.resolutions.drop(model_key)
        return self.cache.drop(model_key)


def _fields(e: ValidationError) -> dict[str, Any]:
    return e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}


def predict_table(family: Family, loaded: Loaded, table: pa.Table, method: str, kwargs: dict[str, Any]) -> bytes:
    """Predict on a decoded Parquet frame and answer with a Parquet frame.

    A numeric frame with the model's columns and no index of its own goes
    straight to the estimator as one array (no pandas on the way in or out);
    anything else takes the DataFrame path with its checks and messages.
    Rows without an index of their own are answered without one, so a
    caller that concatenated several requests' rows can split the answer by
    position.
    """
    _check_method(family, loaded, method)
    default_index = has_default_index(table)
    features = loaded.meta.get("features")
    numeric = loaded.schema is None or loaded.schema.numeric
    # An imported model says itself whether it takes an array (no column selection by name inside).
    array_input = loaded.meta.get("array_input", family.array_input)
    if array_input and numeric and default_index and features and table.num_rows:
        names = table.column_names
        if names != features and len(names) == len(features) and set(names) == set(features):
            table = table.select(features)
            names = features
        matrix = numeric_matrix(table) if names == features else None
        if matrix is not None:
            model = loaded.estimator
            if loaded.array_ready and loaded.backend != "onnx" and not np.isnan(matrix).any():
                model = loaded.array_model  # complete numbers: the imputer would change nothing
            with warnings.catch_warnings():
                # Fitted on a frame, asked on its array: the columns were matched above.
                warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
                out = _call(model, method, matrix.astype(np.float64, copy=False), kwargs)
            labels = _labels(loaded, method, out)
            if all(isinstance(label, str) for label in labels):
                columns = [out] if out.ndim == 1 else list(out.T)
                return ParquetCodec.encode_table(pa.table(dict(zip(labels, columns))))
            frame = pd.DataFrame(out.reshape(len(out), -1), columns=labels)
            return ParquetCodec.encode(frame, index=False)
    x = normalize(table.to_pandas(), "x")
    answer = predict(family, loaded, x, method, kwargs)
    return ParquetCodec.encode(answer, index=None if not default_index else False)


def predict(family: Family, loaded: Loaded, x: pd.DataFrame, method: str, kwargs: dict[str, Any]) -> pd.DataFrame:
    """Run one predict method on a frame, read against the version's input schema; the answer is a
    frame indexed like x."""
    _check_method(family, loaded, method)
    features = loaded.meta.get("features", list(x.columns))
    if sorted(map(str, x.columns)) != sorted(features):
        raise InvalidInput(
            f"x has columns {list(x.columns)}; the model was trained on {features}",
            fields={"x": [f"expected columns {features}"]},
        )
    x = conform(x, loaded.schema) if loaded.schema is not None else x[features]
    out = _run(loaded, method, x, kwargs)
    labels = _labels(loaded, method, out)
    if out.ndim == 1:
        return pd.DataFrame({labels[0]: out}, index=x.index)
    return pd.DataFrame(out, index=x.index, columns=labels)


def _check_method(family: Family, loaded: Loaded, method: str) -> None:
    available = [m for m in family.methods if hasattr(loaded.estimator, m)]
    if method not in available:
        form = f" (version {loaded.version} is stored as {loaded.backend})" if loaded.backend != "joblib" else ""
        raise InvalidInput(
            f"kwargs.method={method!r} is not available for {family.name}{form}; use one of {available}",
            fields={"kwargs": [f"method must be one of {available}"]},
        )


def _run(loaded: Loaded, method: str, x: Any, kwargs: dict[str, Any]) -> np.ndarray:
    return _call(loaded.estimator, method, x, kwargs)


def _call(model: Any, method: str, x: Any, kwargs: dict[str, Any]) -> np.ndarray:
    try:
        return np.asarray(getattr(model, method)(x, **kwargs))
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"{method} failed on this input: {e}", fields={"x": [str(e)]}) from e


def _labels(loaded: Loaded, method: str, out: np.ndarray) -> list[Any]:
    """Column names of an answer: the target, the classes, or positions."""
    if out.ndim == 1:
        return [(loaded.meta.get("targets") or [method])[0]]
    if method.startswith("predict_") and "classes" in loaded.meta and out.shape[1] == len(loaded.meta["classes"]):
        return list(loaded.meta["classes"])
    if method == "predict" and len(loaded.meta.get("targets", [])) == out.shape[1]:
        return list(loaded.meta["targets"])
    return [str(i) for i in range(out.shape[1])]
