"""The benchmark's data, and exactly what each kind of request sends and gets back.

One model serves every predict: a LogisticRegression on 10 features named
"0".."9", the names pandas gives a frame built without column labels (the
seed's example), so the seed's JSON (`DataFrame.to_json` of such a frame:
keys "0".."9"), Parquet (string column names "0".."9") and MLServer's V2
tensors (no names) all reach the same model. Both load generators (wrk and
the Python one) send the bytes built here.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from contracts import paths

from .common import FAMILY, FEATURES, JSON, PARQUET

# The orients the seed's predict accepted; `columns` is what its client sends.
SEED_ORIENTS = ("columns", "split", "records", "index", "values")
COLUMNS = [str(i) for i in range(FEATURES)]


def make_data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training data: x (columns "0".."9") and y (one column, `label`)."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, FEATURES)), columns=COLUMNS)
    y = (x.sum(axis=1) + rng.normal(scale=0.5, size=rows) > 0).astype(np.int64).to_frame("label")
    return x, y


def predict_frame(rows: int) -> pd.DataFrame:
    """Rows to predict on, with the model's column names."""
    x, _ = make_data(rows, seed=1)
    return x


def seed_frame(rows: int) -> pd.DataFrame:
    """The same rows as the seed's users build them: default integer column labels 0..9 and index 0..n-1."""
    return pd.DataFrame(predict_frame(rows).to_numpy())


def fit_body(rows: int) -> bytes:
    """The Parquet body of a fit of `rows` x 10, as the project's client writes it (x and the `label` target)."""
    from contracts.frames import encode_training

    x, y = make_data(rows)
    return encode_training(x, y)


def parquet_body(rows: int) -> bytes:
    """A predict's Parquet body, as the project's client writes it."""
    from contracts.frames import ParquetCodec

    return ParquetCodec.encode(predict_frame(rows))


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request, replayed as it is by the load generators."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def seed_json(gateway: str, model_key: str, rows: int, orient: str = "columns") -> HttpRequest:
    """A predict as the seed's client sends it: `POST /{family}` with `x` as `to_json`'s text and its orient."""
    text = seed_frame(rows).to_json(orient=orient)  # type: ignore[call-overload]
    body = json.dumps({"model_key": model_key, "x": text, "orient": orient}).encode()
    return HttpRequest(f"{gateway}/{FAMILY}", body, {"Content-Type": JSON})


def rest_parquet(gateway: str, model_key: str, rows: int) -> HttpRequest:
    """A Parquet predict on the seed-compatible route: model_key in the query string, Parquet back."""
    return HttpRequest(
        gateway + paths.fill(paths.SEED, family=FAMILY) + f"?model_key={quote(model_key)}", parquet_body(rows), {"Content-Type": PARQUET, "Accept": PARQUET}
    )


def mlserver_v2(mlserver: str, rows: int) -> HttpRequest:
    """MLServer's V2 inference protocol, JSON: one FP64 tensor of rows x 10."""
    frame = predict_frame(rows)
    tensor = {"name": "predict", "shape": list(frame.shape), "datatype": "FP64", "data": frame.to_numpy().ravel().tolist()}
    return HttpRequest(mlserver + paths.fill(paths.V2_INFER, model=FAMILY), json.dumps({"inputs": [tensor]}).encode(), {"Content-Type": JSON})


def v2_json(gateway: str, model_key: str, rows: int) -> HttpRequest:
    """ml-server's V2 route, JSON both ways: the same FP64 tensor of rows x 10 as MLServer gets."""
    frame = predict_frame(rows)
    tensor = {"name": "x", "shape": list(frame.shape), "datatype": "FP64", "data": frame.to_numpy().ravel().tolist()}
    return HttpRequest(gateway + paths.fill(paths.V2_INFER, model=model_key), json.dumps({"inputs": [tensor]}).encode(), {"Content-Type": JSON})


def v2_binary(gateway: str, model_key: str, rows: int) -> HttpRequest:
    """ml-server's V2 route with Triton's binary tensors both ways, as tritonclient sends them by default."""
    from contracts.v2 import BINARY_CONTENT_TYPE, HEADER_LENGTH

    frame = predict_frame(rows)
    data = np.ascontiguousarray(frame.to_numpy(), dtype="<f8").tobytes()
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": list(frame.shape), "datatype": "FP64", "parameters": {"binary_data_size": len(data)}}],
         "parameters": {"binary_data_output": True}}
    ).encode()
    return HttpRequest(
        gateway + paths.fill(paths.V2_INFER, model=model_key), header + data, {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(header))}
    )


def http_request(spec: dict[str, Any], sc: dict[str, Any]) -> HttpRequest:
    """The request of an HTTP scenario (`kind` seed_json, rest_parquet, v2_json, v2_binary or mlserver)."""
    kind, rows = sc["kind"], sc["rows"]
    if kind == "v2_json":
        return v2_json(spec["gateway"], spec["model_key"], rows)
    if kind == "v2_binary":
        return v2_binary(spec["gateway"], spec["model_key"], rows)
    if kind == "seed_json":  # a scenario may name a gateway of its own (benchmarks/gateways.py)
        return seed_json(sc.get("gateway") or spec["gateway"], spec["model_key"], rows, sc.get("orient", "columns"))
    if kind == "rest_parquet":
        return rest_parquet(spec["gateway"], spec["model_key"], rows)
    if kind == "mlserver":
        return mlserver_v2(spec["mlserver"], rows)
    raise ValueError(f"not an HTTP scenario: {kind!r}")


def _json_rows(value: Any, orient: str) -> int:
    """Rows of a frame in pandas JSON, counted as `read_json` would make them."""
    if orient == "columns" and isinstance(value, dict):
        first: Any = next(iter(value.values()), {})
        return len(first) if isinstance(first, dict) else -1
    if orient == "split" and isinstance(value, dict):
        return len(value.get("data") or [])
    if orient in ("records", "values") and isinstance(value, list):
        return len(value)
    if orient == "index" and isinstance(value, dict):
        return len(value)
    return -1


def answer_problem(sc: dict[str, Any], status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an answer to a scenario's request (None: the answer the users of that route expect)."""
    kind, rows = sc["kind"], sc["rows"]
    if status != 200:
        return f"HTTP {status}: {body[:300]!r}"
    try:
        if kind == "seed_json":
            answer = json.loads(body)
            orient = sc.get("orient", "columns")
            if not isinstance(answer, dict) or set(answer) != {"data", "orient"} or answer["orient"] != orient:
                return f"not the seed's answer {{data, orient={orient!r}}}: {body[:300]!r}"
            n = _json_rows(json.loads(answer["data"]), orient)
        elif kind == "rest_parquet":
            import pyarrow.parquet as pq

            if content_type != PARQUET:
                return f"Content-Type {content_type!r}, not Parquet"
            n = pq.read_table(io.BytesIO(body)).num_rows
        elif kind in ("mlserver", "v2_json"):
            n = int(json.loads(body)["outputs"][0]["shape"][0])
        elif kind == "v2_binary":
            answer, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))  # one character per byte: `end` counts bytes
            output = answer["outputs"][0]
            n = int(output["shape"][0])
            if len(body) - end != output["parameters"]["binary_data_size"] or content_type != "application/octet-stream":
                return f"not a binary answer: {output}"
        else:
            raise ValueError(kind)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return f"unreadable answer ({type(e).__name__}: {e}): {body[:300]!r}"
    return None if n == rows else f"{n} predictions for {rows} rows"
