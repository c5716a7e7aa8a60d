"""The clients' V2 mode: a predict over the Open Inference Protocol (sans-IO, like `_wire`).

A frame goes as one input per column (`content_type: "pd"`), each in binary
(Triton's extension: numbers as their bytes, text as length-prefixed UTF-8),
which every model takes whatever its columns; the answer comes back as JSON.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa

from contracts.v2 import BINARY_CONTENT_TYPE, DTYPES, HEADER_LENGTH, V2, encode_bytes

from ._wire import Call, as_frame


def _column(name: str, values: pd.Series) -> tuple[dict[str, Any], bytes]:
    """A column as a binary input: numbers and booleans as their datatype, anything else as text."""
    kind = values.dtype.kind
    if kind == "b":
        datatype, blob = "BOOL", values.to_numpy(dtype=np.bool_).tobytes()
    elif kind in "iu" and not values.isna().any():
        datatype, blob = "INT64", values.to_numpy(dtype=DTYPES["INT64"]).tobytes()
    elif kind in "fiu":
        datatype, blob = "FP64", values.to_numpy(dtype=DTYPES["FP64"], na_value=np.nan).tobytes()
    else:
        if kind == "M":
            text = values.dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
        else:
            text = values.astype(object).map(str)
        datatype, blob = "BYTES", encode_bytes(pa.array(text.where(values.notna(), ""), type=pa.string()))
    return {"name": name, "shape": [len(values)], "datatype": datatype, "parameters": {"binary_data_size": len(blob)}}, blob


def infer(model: str, x: Any, *, version: int | str | None = None, method: str = "predict") -> Call:
    """`POST /v2/models/{model}[/versions/{version}]/infer` with `x`'s columns; the answer as a frame indexed like x."""
    frame = as_frame(x)
    inputs, blobs = zip(*(_column(str(c), frame[c]) for c in frame.columns))
    header = json.dumps(
        {"parameters": {"content_type": "pd"}, "inputs": list(inputs), "outputs": [{"name": method, "parameters": {"binary_data": False}}]}
    ).encode()
    path = (V2.VERSION_INFER if version is not None else V2.INFER).format(model=quote(model, safe=""), version=version)
    headers = {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(header))}

    def read(body: bytes) -> pd.DataFrame:
        output = json.loads(body)["outputs"][0]
        columns = (output.get("parameters") or {}).get("columns") or [method]
        values = np.asarray(output["data"], dtype=object if output["datatype"] == "BYTES" else None).reshape(len(frame), -1)
        return pd.DataFrame(values, index=frame.index, columns=columns)

    return Call("POST", path, body=b"".join([header, *blobs]), headers=headers, read=read)
