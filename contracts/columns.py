"""The recorded input schema of a model version: what each column of its training frame was.

At fit, `infer` records every column's kind (number, integer, boolean,
string, category, datetime), whether it had missing values, and for text
columns their levels. The schema is stored with the version (its metadata
`schema`) and every predict, whatever its wire format (seed JSON in any
orient, Parquet, CSV through the command line, direct AMQP), is read against
it by `conform`: the same rows give the same types, and a column that can't
be read as recorded is a 422 naming it and what was expected.

`conform` hands the model plain values: numbers (integers, booleans and
datetimes too, as float64; datetimes as seconds since the epoch, UTC) and
text (object arrays of str), missing values as NaN (numbers) or the empty
string (text). The model's own preprocessing (imputing, encoding) takes it
from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from .errors import InvalidInput

# A text column with more distinct values than this is refused at fit (one-hot encoding it would
# make a column per value): an identifier, a free text, not a category.
MAX_LEVELS = 1000


class Kind(StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"
    CATEGORY = "category"
    DATETIME = "datetime"

    @property
    def numeric(self) -> bool:
        return self not in (Kind.STRING, Kind.CATEGORY)

    @property
    def text(self) -> bool:
        return self in (Kind.STRING, Kind.CATEGORY)


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    missing: bool = False  # had missing values at fit
    levels: tuple[str, ...] | None = None  # a text column's values at fit, sorted

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["levels"] = list(self.levels) if self.levels is not None else None
        return d


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def numeric(self) -> bool:
        """Every column is a number (integers, booleans and datetimes count): the model's array path."""
        return all(c.kind.numeric for c in self.columns)

    @property
    def text(self) -> list[str]:
        return [c.name for c in self.columns if c.kind.text]

    @property
    def numbers(self) -> list[str]:
        return [c.name for c in self.columns if c.kind.numeric]

    def as_list(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.columns]

    @classmethod
    def from_list(cls, items: list[dict[str, Any]]) -> InputSchema:
        return cls(
            tuple(
                Column(
                    str(i["name"]),
                    Kind(i["kind"]),
                    bool(i.get("missing")),
                    tuple(i["levels"]) if i.get("levels") is not None else None,
                )
                for i in items
            )
        )


def _refuse(column: str, what: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{what}: column {column!r}: {problem}", fields={what: [f"column {column!r}: {problem}"]})


def kind_of(series: pd.Series) -> Kind | None:
    """The kind of a column from its dtype (None: values of several kinds, or none at all)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return Kind.CATEGORY
    if pd.api.types.is_bool_dtype(dtype):
        return Kind.BOOLEAN
    if pd.api.types.is_integer_dtype(dtype):
        return Kind.INTEGER
    if pd.api.types.is_float_dtype(dtype):
        return Kind.NUMBER
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return Kind.DATETIME
    present = series.dropna()
    if present.empty:
        return None
    inferred = pd.api.types.infer_dtype(present, skipna=True)
    if inferred in ("string", "unicode"):
        return Kind.DATETIME if _iso_dates(present) else Kind.STRING
    if inferred == "boolean":
        return Kind.BOOLEAN
    if inferred == "integer":
        return Kind.INTEGER
    if inferred in ("floating", "mixed-integer-float", "decimal"):
        return Kind.NUMBER
    if inferred in ("datetime", "datetime64", "date"):
        return Kind.DATETIME
    return None


_ISO_DATE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"


def _iso_dates(values: pd.Series) -> bool:
    """Text that is all ISO 8601 dates (`2007-11-11`, `2007-11-11T08:30:00Z`): JSON has no date type,
    so this is how dates arrive in it."""
    if not values.astype(str).str.match(_ISO_DATE).all():
        return False
    try:
        pd.to_datetime(values, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        return False
    return True


def infer(frame: pd.DataFrame, what: str = "x") -> InputSchema:
    """The schema of a training frame; InvalidInput for a column no model can learn from:
    all missing, values of several kinds, or text with more than MAX_LEVELS distinct values."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        missing = bool(series.isna().any())
        if missing and series.isna().all():
            raise _refuse(str(name), what, "every value is missing")
        kind = kind_of(series)
        if kind is None:
            raise _refuse(str(name), what, "values of several kinds (numbers and text, say) in one column")
        levels = None
        if kind.text:
            values = series.dropna().astype(str).unique()
            if len(values) > MAX_LEVELS:
                raise _refuse(
                    str(name), what, f"{len(values)} distinct values, more than the {MAX_LEVELS} a text column may have"
                )
            levels = tuple(sorted(values))
        columns.append(Column(str(name), kind, missing, levels))
    return InputSchema(tuple(columns))


def conform(frame: pd.DataFrame, schema: InputSchema, what: str = "x") -> pd.DataFrame:
    """`frame` as the model reads it: the recorded columns, in the recorded order, each as its kind
    (numbers float64, text object arrays of str, missing values NaN / None). InvalidInput naming the
    column when one is missing or can't be read as recorded."""
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise InvalidInput(
            f"{what} has columns {list(map(str, frame.columns))}; the model was trained on {schema.names} "
            f"(missing: {missing})",
            fields={what: [f"expected columns {schema.names}"]},
        )
    out: dict[str, Any] = {}
    for column in schema.columns:
        out[column.name] = _as(frame[column.name], column, what)
    return pd.DataFrame(out, index=frame.index)


def _as(series: pd.Series, column: Column, what: str) -> Any:
    name = column.name
    if column.kind.text:
        values = series.astype(object)
        mask = values.isna().to_numpy()
        text = values.map(_text).to_numpy(dtype=object)
        text[mask] = ""  # a missing text value is the empty string to the model (and to its ONNX graph)
        return text
    if column.kind is Kind.DATETIME:
        try:
            stamps = pd.to_datetime(series, utc=True)
        except (ValueError, TypeError) as e:
            raise _refuse(name, what, f"expected dates and times, got {_sample(series)} ({e})") from e
        # Whatever the resolution pandas parsed them at (seconds, micro-, nanoseconds): seconds since the epoch.
        return (stamps - _EPOCH).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
    if column.kind is Kind.BOOLEAN and not pd.api.types.is_numeric_dtype(series.dtype):
        mapped = series.map({True: 1.0, False: 0.0, "true": 1.0, "false": 0.0, "True": 1.0, "False": 0.0})
        bad = mapped.isna() & series.notna()
        if bad.any():
            raise _refuse(name, what, f"expected true or false, got {_sample(series[bad])}")
        return mapped.to_numpy(dtype=np.float64)
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError) as e:
        raise _refuse(name, what, f"expected numbers, got {_sample(series)}") from e


_EPOCH = pd.Timestamp(0, tz="UTC")


def _text(value: Any) -> str:
    """A value of a text column as text; a number that arrived where text was recorded (a code, a zip)
    reads as it was written: 7, not 7.0."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _sample(series: pd.Series) -> str:
    present = series.dropna()
    return repr(present.iloc[0]) if len(present) else "nothing"


def check_target(y: pd.DataFrame, what: str = "y") -> None:
    """A target a model can learn from: no missing values."""
    for name in y.columns:
        if y[name].isna().any():
            raise _refuse(str(name), what, f"{int(y[name].isna().sum())} missing values (a target must have none)")


def check_update(frame: pd.DataFrame, schema: InputSchema, what: str = "x") -> None:
    """An update (`partial_fit`) learns with the encoders of the first fit: the same columns, and no
    value a text column did not have then. InvalidInput naming what is new."""
    names = [str(c) for c in frame.columns]
    if sorted(names) != sorted(schema.names):
        raise InvalidInput(
            f"{what}: an update must have the columns of the first fit {schema.names}, got {names}",
            fields={what: [f"expected columns {schema.names}"]},
        )
    for column in schema.columns:
        if column.levels is None:
            continue
        values = set(frame[column.name].dropna().astype(str))
        new = sorted(values - set(column.levels))
        if new:
            raise _refuse(
                column.name, what, f"values {new[:10]} the first fit did not have; an update can't add categories (fit again)"
            )
