"""Which columns of an imported scikit-learn model hold text, read from the model itself.

An import takes the kinds of its columns from the upload (`types`); without them
every column would be a number, and a pipeline that one-hot encodes a text
column would then fail its first predict deep inside scikit-learn
(`TypeError: ufunc 'isnan' not supported`). The model often says which columns
are text: an encoder (`OneHotEncoder`, `OrdinalEncoder`) whose categories are
strings, or an imputer whose fill values are, applied to columns a
`ColumnTransformer` selects (by name or position) or to the model's input as a
whole. `read` collects those; when the model still can't predict on the sample
row, `needing_text` finds the columns it only takes as text, so the answer names
them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from contracts.columns import InputSchema, Kind

__all__ = ["needing_text", "read"]

# Beyond this many columns `needing_text` does not try them one by one.
MAX_PROBED = 200


def read(model: Any, names: list[str]) -> dict[str, str]:
    """{column: "string"} for the columns of `names` that the model's own encoders or imputers say are text."""
    return {name: Kind.STRING.value for name in known_text(model, names)}


def known_text(model: Any, names: list[str]) -> dict[str, str]:
    """{column: a value the model knows for it} for the text columns its encoders or imputers name: an
    encoder's first category (a sample row of it is then not an unknown category), or an imputer's fill."""
    steps = _steps(model)
    found: dict[str, str] = {}
    first = steps[0] if steps else None
    if first is not None and not _is_column_transformer(first):
        for i, value in _text_positions(first, len(names)).items():
            found.setdefault(names[i], value)
    for step in steps:
        if not _is_column_transformer(step):
            continue
        for _, transformer, columns in getattr(step, "transformers_", ()):
            selected = _columns(columns, names)
            if selected is None or isinstance(transformer, str):
                continue
            inner = _steps(transformer)
            for inner_step in inner[:2]:  # an imputer, then the encoder
                for i, value in _text_positions(inner_step, len(selected)).items():
                    found.setdefault(selected[i], value)
    return found


def needing_text(model: Any, schema: InputSchema) -> list[str]:
    """The columns of `schema` the model only takes as text: from a row where every column is the text "0"
    (which numeric steps still read as a number), each column in turn is made the number 0 again and
    stays a number if the model still predicts. [] when even that row fails, or past MAX_PROBED columns."""
    names = schema.names
    if len(names) > MAX_PROBED:
        return []
    text = set(names)
    if not _works(model, names, text):
        return []
    for name in names:
        if _works(model, names, text - {name}):
            text.discard(name)
    return [n for n in names if n in text and not schema.columns[names.index(n)].kind.text]


def _works(model: Any, names: list[str], text: set[str]) -> bool:
    row = pd.DataFrame({n: pd.Series(["0"], dtype=object) if n in text else pd.Series([0.0]) for n in names})
    try:
        model.predict(row)
    except Exception:
        return False
    return True


def _steps(model: Any) -> list[Any]:
    steps = getattr(model, "steps", None)
    if steps:
        return [step for _, step in steps if not isinstance(step, str)]
    return [model]


def _is_column_transformer(step: Any) -> bool:
    return hasattr(step, "transformers_")


def _columns(columns: Any, names: list[str]) -> list[str] | None:
    """The column names a ColumnTransformer entry selects, or None when it selects by a callable or nothing known."""
    if isinstance(columns, str):
        columns = [columns]
    if isinstance(columns, slice):
        return names[columns]
    try:
        values = list(np.asarray(columns).ravel())
    except Exception:
        return None
    if all(isinstance(v, (bool, np.bool_)) for v in values) and len(values) == len(names):
        return [n for n, keep in zip(names, values) if keep]
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return [names[int(v)] for v in values if -len(names) <= int(v) < len(names)]
    if all(isinstance(v, str) for v in values):
        return [v for v in values if v in names]
    return None


def _text_positions(step: Any, width: int) -> dict[int, str]:
    """{position: a value it knows} for the step's input columns its fitted state says are text."""
    categories = getattr(step, "categories_", None)
    if isinstance(categories, list) and len(categories) == width:
        out = {}
        for i, known in enumerate(categories):
            strings = [v for v in np.asarray(known).ravel() if isinstance(v, str)]
            if strings:
                out[i] = strings[0]
        return out
    statistics = getattr(step, "statistics_", None)
    if isinstance(statistics, np.ndarray) and statistics.shape == (width,) and statistics.dtype.kind in "OUS":
        return {i: v for i, v in enumerate(statistics) if isinstance(v, str)}
    return {}
