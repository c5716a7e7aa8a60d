"""DataFrames as pandas writes them to JSON (`DataFrame.to_json(orient=...)`), the seed's format.

`JsonCodec` reads and writes whole frames through pandas (fits, where the
frame is needed anyway). The predict path does without pandas: `read_rows`
parses a frame of plain numbers straight into Arrow columns (and its row
labels), and `write_answer` writes an answer's columns as `to_json` would.
Anything the fast path can't be sure of (strings, booleans, missing values,
ragged rows, the `table` orient) takes pandas' own reader, so both paths
give the same frame.

Row labels: pandas writes a default index as 0..n-1 (numbers in `split`, the
keys "0".."n-1" in `columns` and `index`); such labels count as no labels of
the frame's own, so those rows can share a broker message with other
requests' rows.
"""

from __future__ import annotations

import functools
import io
from collections import Counter
from typing import Any, cast

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from .errors import DecodeError
from .frames import JSON, ORIENTS, Orient, Rows, check_columns, check_json_frame, float_schema, max_columns, normalize, rows_from_frame

__all__ = ["ORIENTS", "JsonCodec", "parse", "read_rows", "write_answer", "write_array"]

# Values are taken as JSON typed them: no guessing that a column named like a
# date holds dates (pandas 3 does no such guessing with dtype=False; pandas 2
# needs to be told explicitly).
_NO_DATE_GUESSING: dict[str, Any] = (
    {"dtype": False}
    if int(pd.__version__.split(".")[0]) >= 3
    else {"dtype": False, "convert_dates": False, "keep_default_dates": False}
)


def parse(value: Any, what: str = "x") -> Any:
    """The JSON text of a frame parsed (the seed sends `to_json`'s text inside its JSON body), or `value` as it is."""
    if not isinstance(value, str):
        return value
    check_json_frame(value, what)  # JSON inside JSON: its size is known before the second parse
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as e:  # also: nested too deep, numbers out of range
        raise DecodeError(f"{what}: not valid JSON: {e}", fields={what: [f"not valid JSON: {e}"]}) from e


class JsonCodec:
    """pandas JSON with an `orient`, as `DataFrame.to_json(orient=...)` writes it."""

    content_type = JSON

    @staticmethod
    def encode(frame: pd.DataFrame, orient: str = "columns") -> str:
        text: str = frame.to_json(orient=cast(Orient, orient))
        return text

    @staticmethod
    def decode(value: Any, orient: str = "columns", what: str = "x") -> pd.DataFrame:
        """`value` is the JSON text (the seed's format) or the already parsed JSON."""
        parsed = parse(value, what)
        _check_shape(parsed, orient, what)
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        try:
            frame = pd.read_json(io.StringIO(text), orient=cast(Orient, orient), typ="frame", **_NO_DATE_GUESSING)
        except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError) as e:
            raise DecodeError(
                f"{what}: not a DataFrame in orient {orient!r}: {e}", fields={what: [f"not a DataFrame in orient {orient!r}"]}
            ) from e
        return normalize(frame, what)


def read_rows(value: Any, orient: str, what: str = "x") -> Rows:
    """Rows to predict on, from a frame in pandas JSON (text or parsed)."""
    parsed = parse(value, what)
    _check_shape(parsed, orient, what)
    fast = _FAST.get(orient)
    rows = fast(parsed) if fast is not None else None
    if rows is not None:
        if not rows.num_rows or not len(rows.schema):
            raise DecodeError(
                f"{what}: the frame is empty ({rows.num_rows} rows, {len(rows.schema)} columns)",
                fields={what: ["empty frame"]},
            )
        return rows
    return rows_from_frame(JsonCodec.decode(parsed, orient, what))


def write_answer(table: pa.Table, labels: list[Any] | None, orient: str) -> str:
    """The answer `table` (its rows labelled `labels`, or 0..n-1) as `DataFrame.to_json(orient=orient)` writes it."""
    columns = [str(c) for c in table.column_names]
    values = [column.to_pylist() for column in table.columns]
    n = table.num_rows
    index: list[Any] = list(range(n)) if labels is None else labels
    if orient == "columns":
        keys = [str(i) for i in index]
        return orjson.dumps({c: dict(zip(keys, v)) for c, v in zip(columns, values)}).decode()
    if orient == "split":
        return orjson.dumps({"columns": columns, "index": index, "data": list(zip(*values))}).decode()
    if orient == "records":
        return orjson.dumps([dict(zip(columns, row)) for row in zip(*values)]).decode()
    if orient == "index":
        return orjson.dumps({str(i): dict(zip(columns, row)) for i, row in zip(index, zip(*values))}).decode()
    if orient == "values":
        return orjson.dumps(list(zip(*values))).decode()
    frame = table.to_pandas()
    if labels is not None:
        frame.index = pd.Index(labels)
    return JsonCodec.encode(frame, orient)


def write_array(table: pa.Table) -> str:
    """The answer as a JSON array (the seed's `as_array`): a list of values for one column, of rows for more."""
    if table.num_columns == 1:
        return orjson.dumps(table.column(0).to_pylist()).decode()
    return orjson.dumps(list(zip(*(c.to_pylist() for c in table.columns)))).decode()


# ---- checks done before any frame is built ----------------------------------------------


def _check_shape(parsed: Any, orient: str, what: str) -> None:
    check_columns(_json_columns(parsed, orient), what)
    declared = _declared_columns(parsed, orient)
    dupes = sorted(c for c, n in Counter(declared).items() if n > 1)
    if dupes:  # pandas would quietly rename them (a, a.1)
        raise DecodeError(f"{what}: duplicate column names {dupes}", fields={what: [f"duplicate column names: {dupes}"]})


def _json_columns(value: Any, orient: str) -> int:
    """How many columns pandas would make of this JSON, counted without building the frame."""
    if orient == "columns" and isinstance(value, dict):
        return len(value)
    if orient == "split" and isinstance(value, dict):
        rows = value.get("data")
        widest = max((len(r) for r in rows if isinstance(r, list)), default=0) if isinstance(rows, list) else 0
        columns = value.get("columns")
        return max(len(columns) if isinstance(columns, list) else 0, widest)
    if orient == "values" and isinstance(value, list):
        return max((len(r) for r in value if isinstance(r, list)), default=0)
    if orient == "table" and isinstance(value, dict):
        schema = value.get("schema")
        return len(schema.get("fields") or []) if isinstance(schema, dict) and isinstance(schema.get("fields"), list) else 0
    rows = value.values() if orient == "index" and isinstance(value, dict) else value if isinstance(value, list) else ()
    names: set[str] = set()
    limit = max_columns()
    for row in rows:  # records and index: the union of every row's keys
        if isinstance(row, dict):
            names.update(row)
            if len(names) > limit:
                break
    return len(names)


def _declared_columns(value: Any, orient: str) -> list[str]:
    """Column names a `split` or `table` frame spells out (other orients key columns by name)."""
    if orient == "split" and isinstance(value, dict) and isinstance(value.get("columns"), list):
        return [str(c) for c in value["columns"]]
    if orient == "table" and isinstance(value, dict) and isinstance(value.get("schema"), dict):
        fields = value["schema"].get("fields")
        if isinstance(fields, list):
            return [str(f.get("name")) for f in fields if isinstance(f, dict)]
    return []


# ---- the fast path: plain numbers straight into Arrow ------------------------------------


def _matrix(rows: list[Any], width: int) -> np.ndarray | None:
    """Rows of JSON numbers as one float64 matrix, None for anything else."""
    array = np.array(rows)
    if array.ndim != 2 or array.shape[1] != width or array.dtype.kind not in "if":
        return None
    return array.astype(np.float64, copy=False)


def _name_ok(name: Any) -> bool:
    """A column name pandas keeps as it is (it turns names that look like numbers or dates into those;
    "0", "1", ... come back the same, as text, once frames are normalized)."""
    if not isinstance(name, str):
        return False
    return name[:1].isalpha() or name[:1] == "_" or (name.isdigit() and (name == "0" or name[0] != "0"))


@functools.lru_cache(maxsize=64)
def _range_keys(n: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(n))


def _labels(keys: list[Any]) -> list[Any] | None:
    """Row labels, or None for pandas' default 0..n-1 (as numbers or as the keys "0".."n-1")."""
    n = len(keys)
    if keys == list(range(n)) or tuple(keys) == _range_keys(n):
        return None
    return keys


def _rows(names: list[str], columns: np.ndarray, labels: list[Any] | None) -> Rows:
    """Rows of numbers, `columns` × rows (the table is built later, once per broker message)."""
    return Rows(labels=labels, columns=columns, schema=float_schema(tuple(names)))


def _columns(parsed: Any) -> Rows | None:
    """{column: {label: value}}."""
    if not isinstance(parsed, dict) or not parsed:
        return None
    names = list(parsed)
    first = parsed[names[0]]
    if not isinstance(first, dict) or not all(_name_ok(n) for n in names):
        return None
    keys = list(first)
    values = []
    for name in names:
        column = parsed[name]
        if not isinstance(column, dict) or list(column) != keys:
            return None
        values.append(list(column.values()))
    columns = _matrix(values, len(keys))  # columns × rows
    if columns is None:
        return None
    labels = _labels(keys)
    if labels is not None and not all(k.lstrip("-").isdigit() for k in labels):
        return None  # labels pandas would read as something else than numbers: let it
    return _rows(names, columns, [int(k) for k in labels] if labels is not None else None)


def _split(parsed: Any) -> Rows | None:
    """{"columns": [...], "index": [...], "data": [[...], ...]}."""
    if not isinstance(parsed, dict) or not set(parsed) <= {"columns", "index", "data"}:
        return None
    names, data = parsed.get("columns"), parsed.get("data")
    index = parsed.get("index")
    if not isinstance(names, list) or not isinstance(data, list) or not names:
        return None
    names = [str(n) if type(n) is int and n >= 0 else n for n in names]  # pandas writes a default column index as 0, 1, ...
    if not all(_name_ok(n) for n in names):
        return None
    if index is not None and (not isinstance(index, list) or len(index) != len(data) or not all(type(i) is int for i in index)):
        return None
    matrix = _matrix(data, len(names))
    if matrix is None:
        return None
    return _rows(names, matrix.T, _labels(index) if index is not None else None)


def _records(parsed: Any) -> Rows | None:
    """[{column: value}, ...]."""
    if not isinstance(parsed, list) or not parsed or not isinstance(parsed[0], dict):
        return None
    names = list(parsed[0])
    if not names or not all(_name_ok(n) for n in names):
        return None
    if not all(isinstance(r, dict) and list(r) == names for r in parsed):
        return None
    matrix = _matrix([list(r.values()) for r in parsed], len(names))
    return None if matrix is None else _rows(names, matrix.T, None)


def _index(parsed: Any) -> Rows | None:
    """{label: {column: value}}."""
    if not isinstance(parsed, dict) or not parsed:
        return None
    keys = list(parsed)
    rows = list(parsed.values())
    if not isinstance(rows[0], dict):
        return None
    names = list(rows[0])
    if not names or not all(_name_ok(n) for n in names) or not all(isinstance(r, dict) and list(r) == names for r in rows):
        return None
    if not all(k.lstrip("-").isdigit() for k in keys):
        return None
    matrix = _matrix([list(r.values()) for r in rows], len(names))
    if matrix is None:
        return None
    labels = _labels(keys)
    return _rows(names, matrix.T, [int(k) for k in labels] if labels is not None else None)


def _values(parsed: Any) -> Rows | None:
    """[[...], ...]: columns named 0..k-1."""
    if not isinstance(parsed, list) or not parsed or not isinstance(parsed[0], list) or not parsed[0]:
        return None
    width = len(parsed[0])
    matrix = _matrix(parsed, width)
    return None if matrix is None else _rows([str(i) for i in range(width)], matrix.T, None)


_FAST = {"columns": _columns, "split": _split, "records": _records, "index": _index, "values": _values}
