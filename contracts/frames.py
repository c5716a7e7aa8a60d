"""DataFrames as Parquet, the rows a predict carries, and the checks every frame passes.

`ParquetCodec` turns a `pandas.DataFrame` (or an Arrow table) into Parquet
bytes and back; `pandas_json.JsonCodec` is its JSON twin. Column names are
always strings on the server side (Parquet requires it, and JSON object keys
are strings anyway), so `normalize()` is applied to every frame that enters
the system.

`Rows` is what a predict hands to the broker: positional columns without an
index or pandas metadata, so rows of several requests can travel in one
message; the request's own row labels stay with it in the gateway and label
its answer.

Training data (x and y together) travels as one Parquet file whose schema
metadata key `ml_server.target` holds the JSON list of target column names;
everything else is x. That is the format of a Parquet PUT/PATCH body and of
the body of a fit/update message on the broker.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from typing import Any, Literal, cast

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DecodeError, PayloadTooLarge

PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
TARGET_METADATA_KEY = b"ml_server.target"
TARGET_NAMES_METADATA_KEY = b"ml_server.target_names"
Orient = Literal["split", "records", "index", "columns", "values", "table"]
ORIENTS: tuple[Orient, ...] = ("split", "records", "index", "columns", "values", "table")

# Small frames are written uncompressed and without statistics: for a few rows
# the codec's fixed cost dominates and compression buys nothing.
_COMPRESS_ABOVE_CELLS = 200_000

# Frames wider than this are refused before pandas sees them (a million columns would
# take minutes and gigabytes to build). Set once per process from ML_SERVER_MAX_COLUMNS.
MAX_COLUMNS = 10_000


# What a Parquet body may declare in its footer before a byte of it is decoded: rows, and bytes once
# decoded (its row groups' uncompressed sizes, and its rows times the widths of its fixed-width columns).
# Set once per process from ML_SERVER_MAX_ROWS and ML_SERVER_MAX_FRAME_BYTES (`set_limits`).
MAX_ROWS = 10_000_000
MAX_FRAME_BYTES = 2**30
# Bytes assumed per row of a column whose values have no fixed width (its offsets, at least).
_VARIABLE_WIDTH = 8
# The widest cell of a fixed-width column counted (a decimal128): below rows × columns × this, widths can't pass the cap.
_WIDEST_CELL = 16


# Longest JSON text of a frame inside a JSON body (the seed's `x`), checked before it is parsed
# (ML_SERVER_MAX_JSON_FRAME).
MAX_JSON_FRAME = 64 * 2**20


def set_limits(*, columns: int, rows: int, frame_bytes: int, json_frame: int) -> None:
    """The caps every frame is checked against before it is decoded, for this process."""
    global MAX_COLUMNS, MAX_ROWS, MAX_FRAME_BYTES, MAX_JSON_FRAME
    MAX_COLUMNS, MAX_ROWS, MAX_FRAME_BYTES, MAX_JSON_FRAME = columns, rows, frame_bytes, json_frame


def check_json_frame(text: str, what: str = "x") -> None:
    """Refuse the JSON text of a frame longer than the cap, before it is parsed (413)."""
    if len(text) > MAX_JSON_FRAME:
        raise PayloadTooLarge(
            f"{what}: the frame's JSON text is {len(text)} characters, more than the {MAX_JSON_FRAME} this server "
            "parses (ML_SERVER_MAX_JSON_FRAME; send Parquet, or fewer rows per request)",
            fields={what: [f"JSON text longer than {MAX_JSON_FRAME}"]},
        )


def check_footer(file: pq.ParquetFile, what: str = "x") -> None:
    """Refuse a Parquet file from its footer alone, before any column is read: too many columns (422),
    more rows or more decoded bytes than this server decodes (413). A file's declared sizes are what
    a reader allocates by, so a small file that inflates to gigabytes is refused here, not in memory."""
    meta = file.metadata
    check_columns(meta.num_columns, what)
    rows = meta.num_rows
    if rows > MAX_ROWS:
        raise PayloadTooLarge(
            f"{what}: the Parquet body declares {rows} rows, more than the {MAX_ROWS} this server decodes (ML_SERVER_MAX_ROWS)",
            fields={what: [f"more than {MAX_ROWS} rows"]},
        )
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    size = declared
    if rows * meta.num_columns * _WIDEST_CELL > MAX_FRAME_BYTES:  # else no column's width can matter (every predict)
        widths = 0
        for field in file.schema_arrow:
            try:
                widths += max(1, field.type.bit_width // 8)
            except ValueError:  # no fixed width: text, bytes
                widths += _VARIABLE_WIDTH
        size = max(declared, rows * widths)
    if size > MAX_FRAME_BYTES:
        raise PayloadTooLarge(
            f"{what}: the Parquet body would decode to {size} bytes, more than the {MAX_FRAME_BYTES} this server "
            "decodes at once (ML_SERVER_MAX_FRAME_BYTES; send fewer rows per request)",
            fields={what: [f"decodes to more than {MAX_FRAME_BYTES} bytes"]},
        )


def _footer(data: bytes) -> pq.ParquetFile:
    """The file's footer, read and checked against the caps; no column is read."""
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DecodeError(f"body is not a readable Parquet file: {e}") from e
    try:
        check_footer(file)
    except (pa.ArrowException, ValueError) as e:  # a schema Arrow can't read
        raise DecodeError(f"body is not a readable Parquet file: {e}") from e
    return file


def max_columns() -> int:
    return MAX_COLUMNS


def check_columns(count: int, what: str = "x") -> None:
    if count > MAX_COLUMNS:
        raise DecodeError(
            f"{what}: {count} columns is more than the {MAX_COLUMNS} this server takes (ML_SERVER_MAX_COLUMNS)",
            fields={what: [f"more than {MAX_COLUMNS} columns"]},
        )
_THREADED_READ_BYTES = 1 << 20


def has_default_index(table: pa.Table) -> bool:
    """True when the table carries no index of its own: no pandas metadata, or a
    RangeIndex starting at 0 with step 1 (what `to_pandas()` gives anyway).
    Such rows can be concatenated with other tables' rows and split again by position."""
    raw = (table.schema.metadata or {}).get(b"pandas")
    if raw is None:
        return True
    meta = orjson.loads(raw)
    index = meta.get("index_columns") or []
    if not index:
        return True
    if len(index) != 1 or not isinstance(index[0], dict):
        return False
    r = index[0]
    return r.get("kind") == "range" and r.get("start") == 0 and r.get("step") == 1 and r.get("name") is None


def check_table(table: pa.Table, what: str = "x", rows: int | None = None) -> pa.Table:
    """What `normalize` refuses, checked on the Arrow table before any pandas: duplicate
    or missing columns, no rows, and cells that are lists or records instead of values.
    (`rows`: the row count when `table` is only the schema.)"""
    rows = table.num_rows if rows is None else rows
    names = table.column_names
    dupes = sorted(c for c, n in Counter(names).items() if n > 1)
    if dupes:
        raise DecodeError(f"{what}: duplicate column names {dupes}", fields={what: [f"duplicate column names: {dupes}"]})
    if not table.num_columns or not rows:
        raise DecodeError(
            f"{what}: the frame is empty ({rows} rows, {table.num_columns} columns)",
            fields={what: ["empty frame"]},
        )
    nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
    if nested:
        problem = "lists or objects in cells (every cell must be a single value)"
        raise DecodeError(
            f"{what}: " + "; ".join(f"column {c!r}: {problem}" for c in nested),
            fields={what: [f"column {c!r}: {problem}" for c in nested]},
        )
    return table


def numeric_matrix(table: pa.Table) -> np.ndarray | None:
    """The table as one 2-D float/int array when every column is numeric, else None."""
    types = table.schema.types
    if not types or not all(pa.types.is_floating(t) or pa.types.is_integer(t) for t in types):
        return None
    if table.num_columns == 1:
        return cast("np.ndarray | None", table.column(0).to_numpy().reshape(-1, 1))
    return np.column_stack([column.to_numpy() for column in table.columns])


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
    check_columns(frame.shape[1], what)
    columns = [str(c) for c in frame.columns]
    dupes = sorted(c for c, n in Counter(columns).items() if n > 1)
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


def _write(table: pa.Table, sink: pa.BufferOutputStream, big: bool) -> None:
    """Small frames (every predict message) are written for speed: no compression, no statistics, no
    dictionary encoding (trying it costs 6x the write of a 10,000-row float frame); big ones for size."""
    pq.write_table(table, sink, compression="snappy" if big else "none", write_statistics=big, use_dictionary=big)


class ParquetCodec:
    content_type = PARQUET

    @staticmethod
    def encode(frame: pd.DataFrame, metadata: dict[bytes, bytes] | None = None, index: bool | None = None) -> bytes:
        """`index`: pyarrow's `preserve_index` (None: stored unless it is a plain RangeIndex; False: dropped)."""
        table = pa.Table.from_pandas(frame, preserve_index=index)
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        sink = pa.BufferOutputStream()
        _write(table, sink, big=frame.size > _COMPRESS_ABOVE_CELLS)
        return cast("bytes", sink.getvalue().to_pybytes())

    @staticmethod
    def decode_table(data: bytes) -> pa.Table:
        file = _footer(data)  # checked from the footer, before a column is read
        try:
            # Reader threads cost more than they save on small files (~100 µs against ~270 µs for one row).
            table = file.read(use_threads=len(data) > _THREADED_READ_BYTES)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise DecodeError(f"body is not a readable Parquet file: {e}") from e
        _check_pandas_metadata(table)
        return table

    @staticmethod
    def footer(data: bytes) -> tuple[pa.Schema, int]:
        """Schema and row count of a Parquet file, from its footer alone (no column is read)."""
        file = _footer(data)
        return file.schema_arrow, file.metadata.num_rows

    @staticmethod
    def encode_table(table: pa.Table) -> bytes:
        """An Arrow table as Parquet, without going through pandas."""
        sink = pa.BufferOutputStream()
        _write(table, sink, big=table.num_rows * table.num_columns > _COMPRESS_ABOVE_CELLS)
        return cast("bytes", sink.getvalue().to_pybytes())

    @classmethod
    def decode(cls, data: bytes, what: str = "x") -> pd.DataFrame:
        return normalize(cls.decode_table(data).to_pandas(), what)


class Rows:
    """The rows of a predict: positional columns (no index, no pandas metadata) and the labels to answer
    them with (`labels`: None for 0..n-1, `label_names`: the index's names). `parquet`: the same rows as
    Parquet, when the request's own body is exactly that, to be sent on as it came; then the table
    is only read if needed. `columns`: numbers read from JSON, one float64 row per column (columns ×
    rows), named by `schema`; the table is built from them when needed, and the coalescer builds one
    table for a whole message of such rows instead of one per request."""

    def __init__(
        self,
        table: pa.Table | None = None,
        labels: list[Any] | None = None,
        *,
        label_names: list[str | None] | None = None,
        parquet: bytes | None = None,
        schema: pa.Schema | None = None,
        num_rows: int | None = None,
        columns: np.ndarray | None = None,
    ) -> None:
        if columns is not None and schema is not None:
            num_rows = columns.shape[1]
        elif table is None and (parquet is None or schema is None or num_rows is None):
            raise ValueError("Rows need a table, numbers with their schema, or Parquet with its schema and row count")
        self._table = table
        self.labels = labels
        self.label_names = label_names
        self.parquet = parquet
        self.columns = columns
        given: pa.Schema = table.schema if table is not None else schema
        self.schema: pa.Schema = given.remove_metadata() if given.metadata else given
        self.num_rows: int = table.num_rows if table is not None else num_rows  # type: ignore[assignment]

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            if self.columns is not None:
                self._table = numbers_table(self.columns, self.schema)
            else:
                assert self.parquet is not None
                self._table = ParquetCodec.decode_table(self.parquet).replace_schema_metadata(None)
        return self._table


@functools.lru_cache(maxsize=256)
def float_schema(names: tuple[str, ...]) -> pa.Schema:
    """The schema of numbers read from JSON: every column float64."""
    return pa.schema([(n, pa.float64()) for n in names])


def numbers_table(columns: np.ndarray, schema: pa.Schema) -> pa.Table:
    """A table of float64 columns from a columns × rows matrix."""
    return pa.Table.from_arrays([pa.array(c, type=pa.float64()) for c in columns], schema=schema)


def concat_rows(rows: list[Rows]) -> pa.Table:
    """One table of several requests' rows (the same schema), in order."""
    if all(r.columns is not None for r in rows):
        return numbers_table(np.concatenate([r.columns for r in rows], axis=1), rows[0].schema)
    return pa.concat_tables([r.table for r in rows])


def rows_from_frame(frame: pd.DataFrame) -> Rows:
    """A frame's rows: its columns, and its index as labels unless it is 0..n-1."""
    default = frame.index.equals(pd.RangeIndex(len(frame)))
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    if default:
        return Rows(table)
    return Rows(table, frame.index.tolist(), label_names=[None if n is None else str(n) for n in frame.index.names])


def rows_from_parquet(data: bytes, alone_from: int = 0) -> Rows:
    """The rows of a Parquet body. One of `alone_from` rows or more with no index of its own is
    checked from its footer only: it travels alone, as it came."""
    file = _footer(data)  # the footer, read once and checked against the caps
    schema, n = file.schema_arrow, file.metadata.num_rows
    index = _index_of(schema.metadata or {})
    if alone_from and n >= alone_from and index is None:
        check_table(schema.empty_table(), rows=n)
        return Rows(parquet=data, schema=schema, num_rows=n)
    try:
        table = check_table(file.read(use_threads=len(data) > _THREADED_READ_BYTES))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DecodeError(f"body is not a readable Parquet file: {e}") from e
    _check_pandas_metadata(table)  # refused here as the consumer would refuse it, whatever the size
    if index is None:
        return Rows(table.replace_schema_metadata(None), parquet=data)
    if isinstance(index, dict):  # a RangeIndex of its own (start, stop, step)
        labels: list[Any] = list(range(index["start"], index["stop"], index["step"]))
        return Rows(table.replace_schema_metadata(None), labels, label_names=[index.get("name")])
    names, label_names = index
    columns = [table.column(c).to_pylist() for c in names]
    labels = columns[0] if len(columns) == 1 else list(zip(*columns))
    return Rows(table.drop_columns(names).replace_schema_metadata(None), labels, label_names=label_names)


_Index = dict[str, Any] | tuple[list[str], list[str | None]] | None


def _index_of(metadata: dict[bytes, bytes]) -> _Index:
    """What a Parquet file's pandas metadata says of its rows' labels: None (0..n-1, or no metadata),
    a range of its own, or (index columns, their names). DecodeError when it can't be followed."""
    raw = metadata.get(b"pandas")
    return None if raw is None else _index_in(raw)


@functools.lru_cache(maxsize=1024)  # a client sends the same metadata again and again
def _index_in(raw: bytes) -> _Index:
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _metadata_error(f"not valid JSON: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("index_columns", []), list):
        raise _metadata_error("'index_columns' is not a list")
    index = meta.get("index_columns") or []
    if not index:
        return None
    if len(index) == 1 and isinstance(index[0], dict):
        r = index[0]
        if r.get("kind") != "range" or not all(type(r.get(k)) is int for k in ("start", "stop", "step")) or r["step"] == 0:
            raise _metadata_error("'index_columns' holds something that is neither a column name nor a range")
        if r["start"] == 0 and r["step"] == 1 and r.get("name") is None:
            return None
        return dict(r)
    if not all(isinstance(c, str) for c in index):
        raise _metadata_error("'index_columns' holds something that is neither a column name nor a range")
    described = {c.get("field_name"): c.get("name") for c in meta.get("columns") or [] if isinstance(c, dict)}
    return list(index), [None if described.get(c) is None else str(described.get(c)) for c in index]


def _metadata_error(problem: str) -> DecodeError:
    return DecodeError(
        f"x: the Parquet file's `pandas` schema metadata is malformed ({problem})",
        fields={"x": [f"malformed `pandas` schema metadata: {problem}"]},
    )


def labelled(table: pa.Table, labels: list[Any], names: list[str | None] | None) -> pd.DataFrame:
    """An answer's rows as a frame indexed by the request's labels."""
    frame = table.to_pandas()
    if labels and isinstance(labels[0], tuple):
        frame.index = pd.MultiIndex.from_tuples(labels, names=names)
    else:
        frame.index = pd.Index(labels, name=(names or [None])[0])
    return cast("pd.DataFrame", frame)


def _check_pandas_metadata(table: pa.Table) -> None:
    """The `pandas` schema metadata (written by pandas, and by anyone else) is one pyarrow can follow:
    a client controls it, and `to_pandas()` trusts it."""
    raw = (table.schema.metadata or {}).get(b"pandas")
    if raw is None:
        return
    schema = table.schema
    key = (raw, tuple(schema.names), tuple(map(str, schema.types)))
    if key not in _PANDAS_CHECKED:  # a client sends the same schema again and again
        if len(_PANDAS_CHECKED) > 1024:
            _PANDAS_CHECKED.clear()
        _PANDAS_CHECKED[key] = _pandas_problem(raw, key[1], schema)
    problem = _PANDAS_CHECKED[key]
    if problem:
        raise _metadata_error(problem)


_PANDAS_CHECKED: dict[tuple[bytes, tuple[str, ...], tuple[str, ...]], str | None] = {}


def _pandas_problem(raw: bytes, names: tuple[str, ...], schema: pa.Schema) -> str | None:
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return f"not valid JSON: {e}"
    problem = _pandas_metadata_problem(meta, names)
    if problem:
        return problem
    try:  # what is left to go wrong, pandas finds on a table without rows as well
        schema.empty_table().to_pandas()
    except Exception as e:  # anything pyarrow or pandas raise on metadata they can't follow
        return f"{type(e).__name__}: {e}"
    return None


def _pandas_metadata_problem(meta: Any, names: tuple[str, ...]) -> str | None:
    if not isinstance(meta, dict):
        return "not a JSON object"
    for key in ("index_columns", "columns"):
        if not isinstance(meta.get(key), list):
            return f"{key!r} is not a list"
    if not isinstance(meta.get("column_indexes", []), list):
        return "'column_indexes' is not a list"
    for index in meta["index_columns"]:
        ranged = isinstance(index, dict) and index.get("kind") == "range"
        if not (isinstance(index, str) or (ranged and all(type(index.get(k)) is int for k in ("start", "stop", "step")))):
            return "'index_columns' holds something that is neither a column name nor a range"
        if isinstance(index, str) and index not in names:
            return f"index column {index!r} is not in the file"
    for column in meta["columns"] + meta.get("column_indexes", []):
        if not (
            isinstance(column, dict)
            and isinstance(column.get("pandas_type"), str)
            and isinstance(column.get("numpy_type"), str)
            and isinstance(column.get("metadata") or {}, dict)
            and isinstance(column.get("field_name", ""), (str, type(None)))
        ):
            return "a column description is not an object with pandas_type, numpy_type and metadata"
    return None


def _infinite(frame: pd.DataFrame, what: str) -> None:
    """Training data with ±inf: no estimator can learn from it; say which columns."""
    numeric = frame.select_dtypes(include="number")
    if numeric.shape[1] == 0:
        return
    flags = np.isinf(numeric.to_numpy(dtype="float64", na_value=np.nan)).any(axis=0)
    bad = [str(c) for c, flag in zip(numeric.columns, flags) if flag]
    if bad:
        raise DecodeError(
            f"{what}: infinite values in columns {bad[:20]}", fields={what: [f"infinite values in column {c!r}" for c in bad[:20]]}
        )


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
    try:
        frame = table.to_pandas()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, pa.ArrowException) as e:
        raise DecodeError(f"x: the Parquet file can't be read as a DataFrame: {type(e).__name__}: {e}", fields={"x": ["not a DataFrame"]}) from e
    frame = normalize(frame, "x")
    missing = [t for t in targets if t not in frame.columns]
    if missing:
        raise DecodeError(f"target columns {missing} named in the metadata are not in the file", fields={"y": missing})
    if not targets:
        _infinite(frame, "x")
        return frame, None
    x = normalize(frame.drop(columns=targets), "x")
    y = frame[targets].set_axis(original, axis=1)
    _infinite(x, "x")
    _infinite(y, "y")
    return x, y


def _names(metadata: dict[bytes, bytes], key: bytes) -> list[str]:
    try:
        names = json.loads(metadata.get(key, b"[]"))
        if not isinstance(names, list) or not all(isinstance(t, str) for t in names):
            raise ValueError("not a list of column names")
    except (ValueError, RecursionError) as e:
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
