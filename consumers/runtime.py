"""The predict runtime of one family: the model to answer with, and the answer.

`Runtime.answer(headers, body)` takes a predict message's headers and
Parquet body and returns the answer's Parquet, or raises the `MLServerError`
the reply carries. Models come from memory (`cache`): which stored version
answers for a model key is remembered (`Resolutions`), and loaded estimators
are kept (`ModelCache`), both dropped when status events say the model
changed. No SQL and no deserialization on the hot path.

Imported models (trained elsewhere) are the exception: the consumer keeps
only their stored bytes and hands each predict to a predict process
(`sandbox`), under a deadline that kills it; a version that overruns it
`quarantine_after` times in a row is quarantined in the store.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from service import logs
from contracts.columns import InputSchema, conform
from contracts.errors import DeadlineExceeded, InvalidInput, MLServerError
from contracts.frames import ParquetCodec, check_table, has_default_index, normalize, numeric_matrix
from contracts.messages import PredictJob

from . import backends, metrics
from .cache import Loaded, ModelCache, Resolutions
from .families import Family
from .records import Records
from .sandbox import ModelCrashed, PredictProcesses

log = logging.getLogger(__name__)

# Frames up to this many rows are predicted on the event loop; bigger ones in a thread.
INLINE_ROWS = 2_000
# Versions whose overruns in a row a runtime counts at once.
OVERRUN_MEMORY = 10_000

class Runtime:
    def __init__(
        self,
        family: Family,
        records: Records,
        key: bytes,
        *,
        spec: str | None = None,
        isolation: PredictProcesses | None = None,
        quarantine_after: int = 0,
        announce: Callable[[str, int], Awaitable[None]] | None = None,
    ) -> None:
        """`isolation`: where imported models predict (None: here, like the others); `quarantine_after`:
        overruns in a row that quarantine a version (0: never); `announce(model_key, version)`: publishes
        a quarantined version's status event."""
        self.family = family
        self.records = records
        self.key = key
        self.spec = spec or family.name
        self.isolation = isolation
        self.quarantine_after = quarantine_after
        self.announce = announce
        self.cache = ModelCache(family=family.name)
        self.resolutions = Resolutions()
        self.overruns: dict[int, int] = {}  # session id: predicts in a row that overran or crashed

    async def answer(self, headers: Mapping[str, Any], body: bytes) -> bytes:
        try:
            job = PredictJob.read(headers)
        except ValidationError as e:
            raise InvalidInput(f"invalid predict headers: {e.messages}", fields=_fields(e)) from e
        logs.bind(model_key=job.model_key, version=job.version)
        # The input first: a bad frame is a 422 whatever the model.
        table = check_table(ParquetCodec.decode_table(body))
        metrics.PREDICT_ROWS.labels(self.family.name).observe(table.num_rows)
        loaded = await self.loaded(job.model_key, job.version, job.alias)
        kwargs = dict(job.kwargs)
        method = kwargs.pop("method", "predict")
        if loaded.isolated:
            return await self._isolated(job.model_key, loaded, body, method, kwargs)
        if table.num_rows > INLINE_ROWS:
            return await asyncio.to_thread(predict_table, self.family, loaded, table, method, kwargs)
        return predict_table(self.family, loaded, table, method, kwargs)

    async def answer_many(self, job: PredictJob, bodies: list[bytes]) -> list[bytes | MLServerError]:
        """The answers of several predict messages for the same model, version and arguments (`job`), in
        order: their rows predicted in one call and the answer split by position. A body that can't be read
        gets its own error; when the rows can't go together (an index of their own, other columns, an
        imported model, too many rows) or the call fails, each is answered alone, so one bad request fails alone."""
        answers: list[bytes | MLServerError] = []
        tables: list[pa.Table | None] = []
        for body in bodies:
            try:
                table = check_table(ParquetCodec.decode_table(body))
            except MLServerError as e:
                answers.append(e)
                tables.append(None)
            else:
                answers.append(b"")
                tables.append(table)
        good = [t for t in tables if t is not None]
        try:
            loaded = await self.loaded(job.model_key, job.version, job.alias)
        except MLServerError as e:
            return [a if isinstance(a, MLServerError) else e for a in answers]
        together = (
            len(good) > 1
            and not loaded.isolated
            and sum(t.num_rows for t in good) <= INLINE_ROWS
            and all(t.schema.remove_metadata() == good[0].schema.remove_metadata() and has_default_index(t) for t in good)
        )
        if together:
            kwargs = dict(job.kwargs)
            method = kwargs.pop("method", "predict")
            try:
                whole = ParquetCodec.decode_table(predict_table(self.family, loaded, pa.concat_tables(good, promote_options="none"), method, kwargs))
            except MLServerError:
                together = False  # answered one by one below: the bad request fails alone
            else:
                start = 0
                for i, table in enumerate(tables):
                    if table is not None:
                        metrics.PREDICT_ROWS.labels(self.family.name).observe(table.num_rows)
                        answers[i] = ParquetCodec.encode_table(whole.slice(start, table.num_rows))
                        start += table.num_rows
        if not together:
            for i, body in enumerate(bodies):
                if tables[i] is not None:
                    try:
                        answers[i] = await self.answer(job.headers(), body)
                    except MLServerError as e:
                        answers[i] = e
        return answers

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
            if self.isolation is not None and "imported" in art.meta:
                # Trained elsewhere: loaded and run in a predict process only, under the deadline.
                schema = InputSchema.from_list(art.meta["schema"]) if "schema" in art.meta else None
                loaded = Loaded(None, art.meta, where.version, art.backend, schema, artifact=art.data, session_id=where.session_id)
                self.cache.put(cache_key, loaded)
                return loaded
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

    async def _isolated(self, model_key: str, loaded: Loaded, body: bytes, method: str, kwargs: dict[str, Any]) -> bytes:
        """An imported model's predict, in a predict process under the deadline; a version that overruns
        it (or kills its process) `quarantine_after` times in a row is quarantined."""
        assert self.isolation is not None
        what = f"model {model_key!r} version {loaded.version}"
        try:
            answer = await self.isolation.predict(self.spec, (model_key, loaded.session_id), loaded, self.key, body, method, kwargs, what)
        except (DeadlineExceeded, ModelCrashed) as e:
            await self._overran(model_key, loaded, e)
            raise
        self.overruns.pop(loaded.session_id, None)
        return answer

    async def _overran(self, model_key: str, loaded: Loaded, error: DeadlineExceeded | ModelCrashed) -> None:
        if len(self.overruns) >= OVERRUN_MEMORY:
            self.overruns.clear()
        count = self.overruns[loaded.session_id] = self.overruns.get(loaded.session_id, 0) + 1
        if not self.quarantine_after or count < self.quarantine_after:
            return
        del self.overruns[loaded.session_id]
        reason = (
            f"quarantined: {count} predicts in a row overran the deadline or killed their process "
            f"(the last: {error.message}); predict another version, or import the model again once it is fixed"
        )
        try:
            quarantined = await self.records.quarantine(loaded.session_id, reason)
        except (SQLAlchemyError, OSError) as e:  # the caller still gets the overrun; the next one tries again
            log.warning("model=%s version=%d not quarantined, the store is unavailable: %s", model_key, loaded.version, e)
            self.overruns[loaded.session_id] = count
            return
        if quarantined:
            log.error("model=%s version=%d %s", model_key, loaded.version, reason)
            error.message = f"{error.message}; version {loaded.version} is now quarantined ({count} overruns in a row)"
            self.forget(model_key)
            if self.announce is not None:
                await self.announce(model_key, loaded.version)

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
