"""What V2 tensors are to a model version: its rows in, its inputs and outputs described.

A version's recorded input schema (`contracts.columns`) decides both. A model
fitted on numbers takes one tensor `[rows, features]`, its columns in the
recorded order; any model takes one input per column (MLServer's `pd`
content type: `BYTES` for text and dates, numbers and booleans as their
datatypes). The rows go on as every other predict's do: positional columns
that the consumer reads against the schema (`conform`), so unseen categories
and missing values are answered alike whichever wire they came by.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from .columns import InputSchema, Kind
from .frames import Rows, check_columns, float_schema
from .v2 import BYTES, InferenceRequest, Tensor, bad

# The datatype each kind of column is described with (and sent in by MLServer's PandasCodec).
KIND_DATATYPES = {
    Kind.NUMBER: "FP64",
    Kind.INTEGER: "INT64",
    Kind.BOOLEAN: "BOOL",
    Kind.STRING: BYTES,
    Kind.CATEGORY: BYTES,
    Kind.DATETIME: BYTES,  # ISO 8601 text
}
# The one input of a model fitted on numbers, in its metadata (any name is taken for a lone 2-D tensor).
TENSOR_INPUT = "x"
PANDAS = "pd"


def _schema(meta: dict[str, Any]) -> InputSchema | None:
    raw = meta.get("schema")
    return InputSchema.from_list(raw) if isinstance(raw, list) else None


def _features(meta: dict[str, Any]) -> list[str]:
    features = meta.get("features")
    if isinstance(features, list) and features:
        return [str(f) for f in features]
    schema = _schema(meta)
    return schema.names if schema is not None else []


def takes_tensor(meta: dict[str, Any]) -> bool:
    """Whether the version takes one numeric tensor: every recorded column is a number."""
    schema = _schema(meta)
    return schema is None or schema.numeric


def inputs_metadata(meta: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the inputs, the model's parameters) a version's metadata describes."""
    features = _features(meta)
    schema = _schema(meta)
    if takes_tensor(meta):
        tensor = {"name": TENSOR_INPUT, "datatype": "FP64", "shape": [-1, len(features)], "parameters": {"columns": features}}
        return [tensor], {}
    assert schema is not None
    inputs = []
    for column in schema.columns:
        datatype = KIND_DATATYPES[column.kind]
        item: dict[str, Any] = {"name": column.name, "datatype": datatype, "shape": [-1]}
        if datatype == BYTES:
            item["parameters"] = {"content_type": "str"}
        inputs.append(item)
    return inputs, {"content_type": PANDAS}


def outputs_metadata(meta: dict[str, Any], methods: tuple[str, ...]) -> list[dict[str, Any]]:
    """An output per method the family offers: `predict`'s datatype from the targets, the probabilities'
    class columns in their parameters."""
    out = []
    classes = meta.get("classes")
    targets = meta.get("targets") or []
    for method in methods:
        if method == "predict":
            text = str(meta.get("classes_dtype", "")) in ("object", "str") or str(meta.get("classes_dtype", "")).startswith("<U")
            integer = str(meta.get("classes_dtype", "")).startswith(("int", "uint"))
            datatype = BYTES if text else "INT64" if integer else "FP64"
            shape = [-1] if len(targets) <= 1 else [-1, len(targets)]
            item: dict[str, Any] = {"name": method, "datatype": datatype, "shape": shape}
            if targets:
                item["parameters"] = {"columns": list(targets)}
        elif method.startswith("predict_") and isinstance(classes, list):
            item = {"name": method, "datatype": "FP64", "shape": [-1, len(classes)], "parameters": {"columns": list(classes)}}
        else:
            item = {"name": method, "datatype": "FP64", "shape": [-1, -1]}
        out.append(item)
    return out


def rows(request: InferenceRequest, meta: dict[str, Any]) -> Rows:
    """The rows the request's inputs are, for the version described by `meta`: one tensor `[rows, features]`,
    or one input per column (`parameters.content_type: "pd"`, or several inputs named after columns)."""
    features = _features(meta)
    inputs = request.inputs
    if not features:
        raise bad("this version records no input columns: it can't be asked through the V2 protocol", "inputs")
    if len(inputs) == 1 and request.content_type != PANDAS and (len(inputs[0].shape) == 2 or len(features) > 1):
        return _tensor(inputs[0], features, meta)
    if len(inputs) == 1 and len(features) == 1 and len(inputs[0].shape) == 1:
        return _columns([replace(inputs[0], name=features[0])], features)  # one column: whatever its input's name
    return _columns(inputs, features)


def _tensor(tensor: Tensor, features: list[str], meta: dict[str, Any]) -> Rows:
    name = tensor.name
    if len(tensor.shape) != 2:
        raise bad(f"input {name!r}: shape {list(tensor.shape)}: one input is a tensor [rows, {len(features)}] (columns {features[:20]})", name)
    n, width = tensor.shape
    check_columns(width, name)
    if width != len(features):
        raise bad(f"input {name!r}: shape {list(tensor.shape)}: the model takes {len(features)} columns {features[:20]}", name)
    if tensor.text:
        raise bad(f"input {name!r}: a BYTES tensor; send one input per column (parameters.content_type \"pd\") for text", name)
    if not takes_tensor(meta):
        text = [c.name for c in (_schema(meta) or InputSchema(())).columns if c.kind.text][:20]
        raise bad(f"input {name!r}: the model has text columns {text}: send one input per column (parameters.content_type \"pd\")", name)
    if n == 0:
        raise bad(f"input {name!r}: no rows", name)
    assert isinstance(tensor.values, np.ndarray)
    matrix = tensor.values.astype(np.float64, copy=False).reshape(n, width)
    return Rows(columns=np.ascontiguousarray(matrix.T), schema=float_schema(tuple(features)))


def _columns(inputs: list[Tensor], features: list[str]) -> Rows:
    by_name = {t.name: t for t in inputs}
    unknown = [n for n in by_name if n not in features]
    if unknown:
        raise bad(f"inputs {unknown[:20]} are not columns of the model; it takes {features[:50]}", unknown[0])
    missing = [f for f in features if f not in by_name]
    if missing:
        raise bad(f"inputs for columns {missing[:20]} are missing; the model takes {features[:50]}", missing[0])
    counts = set()
    for t in inputs:
        if len(t.shape) == 2 and t.shape[1] != 1 or len(t.shape) not in (1, 2):
            raise bad(f"input {t.name!r}: shape {list(t.shape)}: one column is a tensor [rows] (or [rows, 1])", t.name)
        counts.add(t.shape[0])
    if len(counts) != 1:
        raise bad(f"inputs have different numbers of rows: {sorted(counts)[:10]}", inputs[0].name)
    if counts == {0}:
        raise bad("the inputs have no rows", inputs[0].name)
    ordered = [by_name[f] for f in features]
    if all(isinstance(t.values, np.ndarray) and t.values.dtype.kind in "fiu" for t in ordered):
        matrix = np.vstack([np.asarray(t.values, dtype=np.float64) for t in ordered])  # numbers: the JSON predicts' shape
        return Rows(columns=matrix, schema=float_schema(tuple(features)))
    arrays = [t.values if isinstance(t.values, pa.Array) else pa.array(t.values) for t in ordered]
    return Rows(pa.Table.from_arrays(arrays, names=features))
