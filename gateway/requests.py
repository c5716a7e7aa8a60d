"""Reading requests: bodies within their limits, JSON or Parquet, fields through the contracts' schemas.

Every handler gets its input from here, in the same two shapes whichever
route it came by: a `Training` (fit, update) or a `Predicting` (parameters
and `Rows`). A JSON body is the seed's format (`x`, `y` as pandas JSON with
an `orient`); a Parquet body carries the frame and the other fields ride in
the query string.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
from aiohttp import web
from marshmallow import Schema, ValidationError

from contracts.errors import DecodeError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from contracts.frames import (
    JSON,
    PARQUET,
    Rows,
    decode_training,
    encode_training,
    rows_from_parquet,
)
from contracts.pandas_json import read_rows
from contracts.schemas import PredictParams, PredictRequest

from .budget import BUDGET
from .state import SETTINGS

# Bodies bigger than this are parsed in a worker thread, off the event loop (smaller ones parse
# faster than a thread hand-off costs).
THREAD_PARSE_BYTES = 1 << 20
# A status or delete body holds a model key (the seed's client sends one with GET).
KEY_BODY_LIMIT = 1 << 20


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """`data` through `schema`; InvalidInput (422) naming every field that is wrong."""
    try:
        loaded: dict[str, Any] = schema.load(data)
        return loaded
    except ValidationError as e:
        messages = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
        names = ", ".join(sorted(map(str, messages)))
        raise InvalidInput(f"invalid fields: {names}: {messages}", fields=messages) from e


@functools.lru_cache(maxsize=4096)
def _query(schema: type[Schema], items: tuple[tuple[str, str], ...]) -> Mapping[str, Any]:
    return load(_instance(schema), dict(items))


@functools.cache
def _instance(schema: type[Schema]) -> Schema:
    return schema()


def query(schema: type[Schema], request: web.Request, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The query string through `schema`. A client sends the same query string again and again
    (a model key and its options), so loads are remembered by the query's items."""
    items = tuple(request.query.items()) + tuple((extra or {}).items())
    loaded = _query(schema, items)
    # A fresh copy for the caller: nested values (modkwargs, kwargs) included.
    return {k: copy.deepcopy(v) if isinstance(v, (dict, list)) else v for k, v in loaded.items()}


def kind(request: web.Request) -> str:
    """JSON or Parquet, from the Content-Type (415 for anything else; a request without a body is JSON)."""
    ctype = request.content_type
    if ctype in (PARQUET, JSON):
        return ctype
    if not request.can_read_body:
        return JSON
    raise UnsupportedMediaType(f"Content-Type must be {JSON} or {PARQUET}, not {ctype!r}")


def limit(request: web.Request, what: str) -> int:
    """The largest body a `what` (fit, update, predict, status, delete) takes."""
    settings = request.app[SETTINGS]
    if what == "predict":
        return min(settings.max_predict_body, settings.max_body)
    if what in ("fit", "update", "import"):
        return settings.max_body
    return KEY_BODY_LIMIT


async def body(request: web.Request, what: str) -> bytes:
    """The body, refused with 413 past its limit: from Content-Length before reading, or while reading a chunked body."""
    most = limit(request, what)
    budget = request.app[BUDGET]  # the bytes this process reads and decodes at once (`budget`)
    if request.content_length is not None:
        if request.content_length > most:
            raise PayloadTooLarge(f"{what} body of {request.content_length} bytes is over the {most}-byte limit")
        budget.take(request, request.content_length, what)
        return await request.read()
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > most:
            raise PayloadTooLarge(f"{what} body is over the {most}-byte limit")
        budget.take(request, len(chunk), what)
    return bytes(data)


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object")
    return data


async def json_fields(request: web.Request, schema: Schema, what: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON body through `schema` (`extra`: fields from the path or the query, which the body can't override)."""
    raw = await body(request, what)
    data = json_object(raw)
    if extra:
        data = {**data, **extra}
    if len(raw) > THREAD_PARSE_BYTES:
        return await asyncio.to_thread(load, schema, data)
    return load(schema, data)


# ---- fit and update ------------------------------------------------------------------------


@dataclass
class Training:
    """A fit or update request: its parameters, and its data as frames or as the Parquet to queue."""

    params: dict[str, Any]
    has_y: bool
    x: pd.DataFrame | None = None
    y: pd.DataFrame | None = None
    parquet: bytes | None = None

    async def encoded(self) -> bytes:
        if self.parquet is None:
            assert self.x is not None
            self.parquet = await asyncio.to_thread(encode_training, self.x, self.y)
        return self.parquet


async def training(
    request: web.Request,
    what: str,
    json_schema: Schema,
    params_schema: type[Schema],
    extra: Mapping[str, str] | None = None,
) -> Training:
    """Parameters and frames of a fit or update. A Parquet body is read (to check what is in it) and
    queued as it came."""
    if kind(request) == PARQUET:
        params = query(params_schema, request, extra)
        raw = await body(request, what)
        x, y = await asyncio.to_thread(decode_training, raw)
        return Training(params, y is not None, x, y, parquet=raw)
    data = await json_fields(request, json_schema, what, extra)
    x, y = data.pop("x"), data.pop("y", None)
    return Training(data, y is not None, x, y)


# ---- predict ---------------------------------------------------------------------------------

PREDICT_REQUEST = PredictRequest()  # the same fields, and x as pandas JSON (read by `read_rows`)


@dataclass
class Predicting:
    """A predict request: its parameters (`PredictParams`), its rows, and how it wants its answer."""

    params: dict[str, Any]
    rows: Rows
    parquet_answer: bool


async def predicting(request: web.Request, extra: Mapping[str, str] | None = None) -> Predicting:
    """Parameters and rows of a predict, JSON or Parquet. Parquet of a batch's size or more is
    checked from its footer only: it will travel alone and as it came."""
    wants_parquet = PARQUET in request.headers.get("Accept", "")
    if kind(request) == PARQUET:
        params = query(PredictParams, request, extra)
        raw = await body(request, "predict")
        big = request.app[SETTINGS].batch_max_rows
        if len(raw) > THREAD_PARSE_BYTES:
            rows = await asyncio.to_thread(rows_from_parquet, raw, big)
        else:
            rows = rows_from_parquet(raw, big)
        return Predicting(params, rows, wants_parquet)
    raw = await body(request, "predict")
    data = json_object(raw)
    if extra:
        data = {**data, **extra}
    params = load(PREDICT_REQUEST, data)
    x = params.pop("x")
    try:
        if len(raw) > THREAD_PARSE_BYTES:
            rows = await asyncio.to_thread(read_rows, x, params["orient"])
        else:
            rows = read_rows(x, params["orient"])
    except DecodeError as e:  # as a fit's frames are refused: a field that is wrong
        messages = {"x": [e.message]}
        raise InvalidInput(f"invalid fields: x: {messages}", fields=messages) from e
    return Predicting(params, rows, wants_parquet)

