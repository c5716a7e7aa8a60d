"""What the clients send and how they read answers, with no I/O (sans-IO).

Each verb is a `Call`: method, path, query, body, headers, and how to read a
successful answer. `GenericModelInterface`, `ModelClient` and
`AsyncModelClient` only differ in how they carry a `Call` (requests or
aiohttp), so the wire format, the error mapping and the waiting rules live
here once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from contracts import paths
from contracts.errors import (
    DeadlineExceeded,
    InvalidInput,
    MLServerError,
    NotFound,
    NotTrained,
    PayloadTooLarge,
    TrainingFailed,
    Unavailable,
    from_wire,
)
from contracts.frames import JSON, PARQUET, ParquetCodec, encode_training
from contracts.pandas_json import JsonCodec
from contracts.status import Status
from contracts.topology import EventKind

Format = Literal["parquet", "json"]
FORMATS = ("parquet", "json")
_JSON_ORIENT: Literal["split"] = "split"


def _frame(data: pd.DataFrame | pd.Series | np.ndarray | None) -> pd.DataFrame | None:
    if data is None:
        return None
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, pd.DataFrame):
        return data
    return pd.DataFrame(np.asarray(data))


def _strings(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


def as_frame(data: pd.DataFrame | pd.Series | np.ndarray) -> pd.DataFrame:
    """A DataFrame with string column names, as the server sees it."""
    frame = _frame(data)
    assert frame is not None
    return _strings(frame)


_V2_ERRORS: dict[int, type[MLServerError]] = {
    400: InvalidInput, 404: NotFound, 409: NotTrained, 413: PayloadTooLarge, 503: Unavailable, 504: DeadlineExceeded,
}


def error_from(status: int, body: bytes) -> MLServerError:
    """The typed error for an error answer `{"error": {code, message, fields?}}`."""
    try:
        err = json.loads(body)["error"]
        if isinstance(err, str):  # the Open Inference Protocol's `{"error": message}` (/v2 routes)
            error = _V2_ERRORS.get(status, MLServerError)(err)
            error.status = status
            return error
        error = from_wire(err.get("code", ""), err.get("message", ""), err.get("fields"))
    except (ValueError, KeyError, TypeError, AttributeError):
        error = MLServerError(f"HTTP {status}: {body[:500].decode(errors='replace')}")
    error.status = status
    return error


# ---- waiting ------------------------------------------------------------------


def backoff(first: float = 0.02, factor: float = 1.5, cap: float = 0.5) -> Iterator[float]:
    """Delays between status polls: 20 ms, growing to at most 0.5 s."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)


def settled(state: Mapping[str, Any], key: str | None, version: int | None = None) -> bool:
    """True when the latest version (at least `version`) is done; TrainingFailed when it failed."""
    if version is not None and state["version"] < version:
        return False
    if state["status"] == Status.DONE:
        return True
    if state["status"] == Status.FAILED:
        raise TrainingFailed(f"training of {key} version {state['version']} failed: {state.get('error')}")
    return False


def still_running(key: str | None, state: Mapping[str, Any], timeout: float | None) -> TimeoutError:
    return TimeoutError(f"model {key} still {state['status']} after {timeout}s")


# ---- the event stream (server-sent events) -----------------------------------

# Read at call time, so a test can point it at a route the gateway doesn't have.
EVENTS_PATH = paths.MODEL_EVENTS
EVENT_STREAM = "text/event-stream"
DELETED = EventKind.DELETED.value


def events(model_key: str, version: int | None) -> Call:
    return Call("GET", paths.fill(EVENTS_PATH, model_key=model_key), _query({"version": version}), headers={"Accept": EVENT_STREAM})


class EventStream:
    """Reads server-sent events line by line; `feed` returns each complete `status` event's data."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        line = line.rstrip("\r")
        if not line:  # a blank line ends the event
            event, data = self._event, self._data
            self._event, self._data = "message", []
            if event == "status" and data:
                state: dict[str, Any] = json.loads("\n".join(data))
                return state
            return None
        if line.startswith(":"):  # a comment: keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def finished(state: Mapping[str, Any], key: str | None, version: int) -> bool:
    """True when the streamed `state` is `version` done; TrainingFailed when it failed, NotFound when deleted."""
    if state["version"] != version:
        return False
    if state["status"] == DELETED:
        raise NotFound(f"model {key} was deleted while waiting for version {version}")
    return settled(state, key, version)


# ---- calls --------------------------------------------------------------------


def _json(body: bytes) -> Any:
    return json.loads(body)


@dataclass(frozen=True)
class Call:
    """One HTTP exchange: what to send and how to read a 2xx answer's body."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    read: Callable[[bytes], Any] = _json


def _query(values: Mapping[str, Any]) -> dict[str, str]:
    """Query-string values as text (JSON for dicts, lowercase for booleans); None is left out."""
    out: dict[str, str] = {}
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = str(v).lower()
        elif isinstance(v, (dict, list)):
            out[k] = json.dumps(v)
        else:
            out[k] = str(getattr(v, "value", v))
    return out


def _json_frame(frame: pd.DataFrame) -> str:
    return frame.to_json(orient=_JSON_ORIENT, double_precision=15)


def _body(data: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode(), {"Content-Type": JSON}


def _training(fmt: Format, path: str, x: Any, y: Any, fields: dict[str, Any]) -> Call:
    xf = as_frame(x)
    yf = as_frame(y) if y is not None else None
    if fmt == "parquet":
        return Call("POST", path, _query(fields), encode_training(xf, yf), {"Content-Type": PARQUET})
    body, headers = _body(
        {**fields, "x": _json_frame(xf), "y": _json_frame(yf) if yf is not None else None, "orient": _JSON_ORIENT}
    )
    return Call("POST", path, {}, body, headers)


def fit(
    fmt: Format,
    family: str,
    x: Any,
    y: Any,
    *,
    name: str | None,
    modkwargs: dict[str, Any] | None,
    algkwargs: dict[str, Any] | None,
    retrain: bool,
    backend: str | None,
) -> Call:
    fields = {
        "name": name,
        "modkwargs": modkwargs or {},
        "algkwargs": algkwargs or {},
        "retrain": bool(retrain),
        "backend": backend,
    }
    return _training(fmt, paths.fill(paths.FAMILY_MODELS, family=family), x, y, fields)


def search(fmt: Format, family: str, x: Any, y: Any, fields: dict[str, Any]) -> Call:
    return _training(fmt, paths.fill(paths.FAMILY_SEARCHES, family=family), x, y, fields)


def search_status(search_id: int) -> Call:
    return Call("GET", paths.fill(paths.SEARCH, id=int(search_id)))


def cancel_search(search_id: int) -> Call:
    return Call("DELETE", paths.fill(paths.SEARCH, id=int(search_id)))


def leaderboard_frame(body: Mapping[str, Any]) -> pd.DataFrame:
    """`GET /searches/{id}`'s leaderboard as `GridSearchCV.cv_results_` lays it out: one row per candidate,
    best first, `param_<name>` columns, `split<i>_test_score`, `mean_test_score`, `std_test_score`,
    `rank_test_score`, `mean_fit_time`, and the candidate's `version`, `status` and `worker`. The search
    itself is in `frame.attrs["search"]`."""
    rows = []
    for c in body["leaderboard"]:
        row: dict[str, Any] = {"rank_test_score": c["rank"], "params": c["params"]}
        row.update({f"param_{k}": v for k, v in c["params"].items()})
        row.update({f"split{i}_test_score": v for i, v in enumerate(c["split_test_scores"])})
        row.update({k: c[k] for k in ("mean_test_score", "std_test_score", "mean_fit_time", "version", "status", "worker", "error")})
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["search"] = {k: v for k, v in body.items() if k != "leaderboard"}
    return frame


def update(fmt: Format, model_key: str, x: Any, y: Any) -> Call:
    return _training(fmt, paths.fill(paths.MODEL_UPDATE, model_key=model_key), x, y, {})


def _read_json_prediction(body: bytes) -> pd.DataFrame:
    answer = json.loads(body)
    return JsonCodec.decode(answer["data"], answer["orient"], what="prediction")


def _read_parquet_prediction(body: bytes) -> pd.DataFrame:
    return ParquetCodec.decode(body, what="prediction")


def predict(
    fmt: Format, model_key: str, x: Any, *, version: int | None, kwargs: dict[str, Any], alias: str | None = None
) -> Call:
    xf = as_frame(x)
    fields: dict[str, Any] = {"version": version, "alias": alias, "kwargs": kwargs or None}
    path = paths.fill(paths.MODEL_PREDICT, model_key=model_key)
    if fmt == "parquet":
        headers = {"Content-Type": PARQUET, "Accept": PARQUET}
        return Call("POST", path, _query(fields), ParquetCodec.encode(xf), headers, _read_parquet_prediction)
    body, headers = _body({**fields, "x": _json_frame(xf), "orient": _JSON_ORIENT})
    return Call("POST", path, {}, body, headers, _read_json_prediction)


def state(model: Mapping[str, Any]) -> dict[str, Any]:
    """A model's latest version, flat (`GET /models/{model_key}` nests it), as the event stream sends states."""
    latest = model.get("latest") or {"status": "unknown", "version": None}
    return {"model_key": model["model_key"], "family": model["family"], "name": model.get("name"), **latest}


def status(model_key: str, family: str | None = None) -> Call:
    """The model's latest version, flat; NotFound when `family` is given and the model is of another."""

    def read(body: bytes) -> dict[str, Any]:
        found = state(json.loads(body))
        if family is not None and found["family"] != family:
            raise NotFound(f"no {family} model with model_key {model_key!r} (it is a {found['family']} model)", fields={"model_key": ["unknown"]})
        return found

    return Call("GET", paths.fill(paths.MODEL, model_key=model_key), read=read)


def delete(model_key: str) -> Call:
    return Call("DELETE", paths.fill(paths.MODEL, model_key=model_key))


def versions(model_key: str, filters: Mapping[str, Any]) -> Call:
    return Call("GET", paths.fill(paths.MODEL_VERSIONS, model_key=model_key), _query(filters))


def scores_frame(body: Mapping[str, Any]) -> pd.DataFrame:
    """`GET /models/{key}/versions`' answer as a table of held-out scores, one row per version."""
    rows = []
    for v in body["versions"]:
        scores = v.get("scores") or {}
        row: dict[str, Any] = {"version": v["version"], "status": v["status"], "method": scores.get("method")}
        row.update(scores.get("metrics") or {})
        row.update({f"{name}_std": std for name, std in (scores.get("std") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["version", "status", "method"]).set_index("version")


def models(filters: Mapping[str, Any]) -> Call:
    return Call("GET", paths.MODELS, _query(filters))


def families() -> Call:
    return Call("GET", paths.FAMILIES, read=lambda body: json.loads(body)["families"])


# ---- the registry -------------------------------------------------------------


def model(model_key: str) -> Call:
    return Call("GET", paths.fill(paths.MODEL, model_key=model_key))


def set_alias(model_key: str, alias: str, version: int) -> Call:
    body, headers = _body({"version": version})
    return Call("PUT", paths.fill(paths.MODEL_ALIAS, model_key=model_key, alias=alias), body=body, headers=headers)


def remove_alias(model_key: str, alias: str) -> Call:
    return Call("DELETE", paths.fill(paths.MODEL_ALIAS, model_key=model_key, alias=alias))


def edit_model(model_key: str, changes: Mapping[str, Any]) -> Call:
    """`PATCH /models/{model_key}`: only the fields given (`serving=None` clears the serving alias)."""
    body = json.dumps(dict(changes)).encode()
    return Call("PATCH", paths.fill(paths.MODEL, model_key=model_key), body=body, headers={"Content-Type": JSON})


def edit_version(model_key: str, version: int, changes: Mapping[str, Any]) -> Call:
    body = json.dumps(dict(changes)).encode()
    return Call("PATCH", paths.fill(paths.MODEL_VERSION, model_key=model_key, version=version), body=body, headers={"Content-Type": JSON})


def history(model_key: str, version: int | None) -> Call:
    return Call("GET", paths.fill(paths.MODEL_HISTORY, model_key=model_key), _query({"version": version}), read=lambda body: json.loads(body)["history"])


def import_model(
    file: bytes,
    *,
    family: str | None = None,
    model_key: str | None = None,
    name: str | None = None,
    features: list[str] | None = None,
    types: dict[str, str] | None = None,
) -> Call:
    """A skops file or an ONNX graph as a new model of `family`, or as the next version of `model_key`."""
    path = paths.fill(paths.MODEL_IMPORT, model_key=model_key) if model_key is not None else paths.fill(paths.FAMILY_IMPORT, family=family)
    params = _query({"name": name, "features": features, "types": types})
    return Call("POST", path, params, file, {"Content-Type": "application/octet-stream"})
