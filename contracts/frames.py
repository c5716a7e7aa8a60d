"""DataFrame codecs: two methods keyed by content type.

`ParquetCodec` and `JsonCodec` turn a `pandas.DataFrame` into bytes/text and
back. Column names are always strings on the server side (Parquet requires it,
and JSON object keys are strings anyway), so `normalize()` is applied to every
frame that enters the system.

Training data (x and y together) travels as one Parquet file whose schema
metadata key `ml_server.target` holds the JSON list of target column names;
everything else is x. That is the format of a Parquet PUT/PATCH body and of
the body of a fit/update message on the broker.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DecodeError

PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
TARGET_METADATA_KEY = b"ml_server.target"
TARGET_NAMES_METADATA_KEY = b"ml_server.target_names"
ORIENTS = ("split", "records", "index", "columns", "values", "table")

# Values are taken as JSON typed them: no guessing that a column named like a
# date holds dates (pandas 3 does no such guessing with dtype=False; pandas 2
# needs to be told explicitly).
_NO_DATE_GUESSING: dict[str, Any] = (
    {"dtype": False}
    if int(pd.__version__.split(".")[0]) >= 3
    else {"dtype": False, "convert_dates": False, "keep_default_dates": False}
)

# Small frames are written uncompressed and without statistics: for a few rows
# the codec's fixed cost dominates and compression buys nothing.
_COMPRESS_ABOVE_CELLS = 200_000


def _cell_problems(frame: pd.DataFrame) -> dict[str, str]:
    """Columns no model (and no Parquet file) can take: containers in cells, or values of clashing types."""
    problems: dict[str, str] = {}
    for name, column in frame.items():
        # Only object columns pandas can't type as one scalar kind can hold these; scan just those.
        if column.dtype != object or not pd.api.types.infer_dtype(column, skipna=True).startswith("mixed"):
            continue
        if any(isinstance(v, (list, tuple, dict, set, np.ndarray)) for v in column):
            problems[str(name)] = "lists or objects in cells (every cell must be a single value)"
            continue
        try:
            pa.array(column, from_pandas=True)
        except pa.ArrowException as e:  # e.g. numbers and strings in one column
            problems[str(name)] = f"values of clashing types ({e})"
    return problems


def normalize(frame: pd.DataFrame, what: str = "x") -> pd.DataFrame:
    """String column names, no duplicates, at least one column and one row, one scalar per cell."""
    if not isinstance(frame, pd.DataFrame):
        raise DecodeError(f"{what}: expected a table, got {type(frame).__name__}", fields={what: ["not a table"]})
    columns = [str(c) for c in frame.columns]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise DecodeError(
            f"{what}: duplicate column names {dupes}", fields={what: [f"duplicate column names: {dupes}"]}
        )
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise DecodeError(
            f"{what}: the frame is empty ({frame.shape[0]} rows, {frame.shape[1]} columns)",
            fields={what: ["empty frame"]},
        )
    if list(frame.columns) != columns:
        frame = frame.set_axis(columns, axis=1)
    problems = _cell_problems(frame)
    if problems:
        detail = "; ".join(f"column {c!r}: {p}" for c, p in problems.items())
        raise DecodeError(f"{what}: {detail}", fields={what: [f"column {c!r}: {p}" for c, p in problems.items()]})
    return frame


class ParquetCodec:
    content_type = PARQUET

    @staticmethod
    def encode(frame: pd.DataFrame, metadata: dict[bytes, bytes] | None = None) -> bytes:
        table = pa.Table.from_pandas(frame, preserve_index=None)
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        sink = pa.BufferOutputStream()
        big = frame.size > _COMPRESS_ABOVE_CELLS
        pq.write_table(table, sink, compression="snappy" if big else "none", write_statistics=big)
        return sink.getvalue().to_pybytes()

    @staticmethod
    def decode_table(data: bytes) -> pa.Table:
        try:
            return pq.ParquetFile(pa.BufferReader(data)).read()
        except (pa.ArrowException, OSError, ValueError) as e:
            raise DecodeError(f"body is not a readable Parquet file: {e}") from e

    @classmethod
    def decode(cls, data: bytes, what: str = "x") -> pd.DataFrame:
        return normalize(cls.decode_table(data).to_pandas(), what)


class JsonCodec:
    """pandas JSON with an `orient`, as `DataFrame.to_json(orient=...)` writes it."""

    content_type = JSON

    @staticmethod
    def encode(frame: pd.DataFrame, orient: str = "columns") -> str:
        return frame.to_json(orient=orient)

    @staticmethod
    def decode(value: Any, orient: str = "columns", what: str = "x") -> pd.DataFrame:
        """`value` is the JSON text (the seed's format) or the already parsed JSON."""
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        try:
            frame = pd.read_json(io.StringIO(text), orient=orient, typ="frame", **_NO_DATE_GUESSING)
        except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError) as e:
            raise DecodeError(
                f"{what}: not a DataFrame in orient {orient!r}: {e}", fields={what: [f"not a DataFrame in orient {orient!r}"]}
            ) from e
        return normalize(frame, what)


def encode_training(x: pd.DataFrame, y: pd.DataFrame | None) -> bytes:
    """x and y in one Parquet file; y's columns named in the schema metadata.

    A target column whose name is also an x column is stored under another
    name (the seed's example fits x with columns 0..9 and y with column 0);
    `ml_server.target_names` then holds the original names, which
    `decode_training` restores.
    """
    if y is None:
        return ParquetCodec.encode(x, {TARGET_METADATA_KEY: b"[]"})
    if len(y) != len(x):
        raise DecodeError(
            f"y has {len(y)} rows but x has {len(x)}", fields={"y": [f"{len(y)} rows, x has {len(x)}"]}
        )
    names: list[str] = []
    taken = set(x.columns)
    for name in y.columns:
        while name in taken:
            name = f"{name}_y"
        taken.add(name)
        names.append(name)
    metadata = {TARGET_METADATA_KEY: json.dumps(names).encode()}
    if names != list(y.columns):
        metadata[TARGET_NAMES_METADATA_KEY] = json.dumps(list(y.columns)).encode()
    y = y.set_axis(names, axis=1)
    y.index = x.index
    frame = pd.concat([x, y], axis=1)
    return ParquetCodec.encode(frame, metadata)


def decode_training(data: bytes) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Inverse of `encode_training`; a file without the metadata key is all x."""
    table = ParquetCodec.decode_table(data)
    metadata = table.schema.metadata or {}
    targets = _names(metadata, TARGET_METADATA_KEY)
    original = _names(metadata, TARGET_NAMES_METADATA_KEY) if TARGET_NAMES_METADATA_KEY in metadata else targets
    if len(original) != len(targets):
        raise DecodeError(f"schema metadata {TARGET_NAMES_METADATA_KEY.decode()!r} must name every target column")
    frame = normalize(table.to_pandas(), "x")
    missing = [t for t in targets if t not in frame.columns]
    if missing:
        raise DecodeError(f"target columns {missing} named in the metadata are not in the file", fields={"y": missing})
    if not targets:
        return frame, None
    x = frame.drop(columns=targets)
    return normalize(x, "x"), frame[targets].set_axis(original, axis=1)


def _names(metadata: dict[bytes, bytes], key: bytes) -> list[str]:
    try:
        names = json.loads(metadata.get(key, b"[]"))
        if not isinstance(names, list) or not all(isinstance(t, str) for t in names):
            raise ValueError("not a list of column names")
    except ValueError as e:
        raise DecodeError(f"schema metadata {key.decode()!r} must be a JSON list of column names") from e
    return names


def digest_frames(*frames: pd.DataFrame | None) -> str:
    """A content hash of frames (values, index and column names)."""
    h = hashlib.sha256()
    for frame in frames:
        if frame is None:
            h.update(b"\0none")
            continue
        h.update(json.dumps(list(map(str, frame.columns))).encode())
        h.update(np.ascontiguousarray(pd.util.hash_pandas_object(frame, index=True).to_numpy()).tobytes())
    return h.hexdigest()
