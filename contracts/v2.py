"""The Open Inference Protocol (KServe V2) on the wire: its paths, datatypes and tensors.

Requests are JSON, or JSON followed by raw tensors (Triton's binary tensor
extension: the `Inference-Header-Content-Length` header says where the JSON
ends, each binary input says its size in `parameters.binary_data_size`, in
order). Tensors decode straight to NumPy arrays (numbers, booleans) or Arrow
string arrays (`BYTES`: each element a 4-byte little-endian length and its
bytes), never to one Python object per value; answers encode the same way
back. What the tensors mean to a model (`rows`) is in `contracts.v2_rows`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from . import paths
from .errors import InvalidInput


class V2:
    """The protocol's HTTP paths (spelled once, in `contracts.paths`), by their names in the protocol."""

    SERVER = paths.V2_SERVER
    LIVE = paths.V2_LIVE
    READY = paths.V2_READY
    MODEL = paths.V2_MODEL
    MODEL_VERSION = paths.V2_MODEL_VERSION
    MODEL_READY = paths.V2_MODEL_READY
    MODEL_VERSION_READY = paths.V2_MODEL_VERSION_READY
    INFER = paths.V2_INFER
    VERSION_INFER = paths.V2_VERSION_INFER
    INDEX = paths.V2_INDEX
    LOAD = paths.V2_LOAD
    UNLOAD = paths.V2_UNLOAD

    PREFIX = paths.V2_SERVER


# The request (and answer) header that says how many bytes of the body are JSON.
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
EXTENSIONS = ("binary_tensor_data", "model_repository")

# The protocol's datatypes and the NumPy types their elements are (little-endian on the wire).
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
BYTES = "BYTES"
DATATYPES = (*DTYPES, BYTES)

# Elements of one request at most (all its tensors): checked from the declared shapes, before any is built.
MAX_ELEMENTS = 50_000_000


def bad(message: str, name: str | None = None) -> InvalidInput:
    """A request the protocol's error answers as 400 (`{"error": message}`), naming the input."""
    return InvalidInput(message, fields={name or "inputs": [message]})


@dataclass
class Tensor:
    """One decoded input: NumPy values (numbers, booleans) or an Arrow string array (BYTES), flat, row-major."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | pa.Array
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> bool:
        return self.datatype == BYTES


@dataclass
class Output:
    """An output the request asks for: the method it is named after, and whether it wants binary data."""

    name: str
    binary: bool
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferenceRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[Output]
    binary_output: bool  # `binary_data_output`: the default of every output

    @property
    def content_type(self) -> str | None:
        value = self.parameters.get("content_type")
        return value if isinstance(value, str) else None


# ---- reading a request ---------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON object of a request and the binary data after it."""
    view = memoryview(body)
    if header_length is None:
        json_part, binary = view, view[:0]
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise bad(f"{HEADER_LENGTH}: {header_length[:40]!r} is not a number of bytes", "header") from None
        if not 0 <= n <= len(body):
            raise bad(f"{HEADER_LENGTH}: {n} is not within the body's {len(body)} bytes", "header")
        json_part, binary = view[:n], view[n:]
    try:
        header = orjson.loads(json_part)
    except orjson.JSONDecodeError as e:
        raise bad(f"the request is not valid JSON: {e}", "body") from e
    if not isinstance(header, dict):
        raise bad("the request must be a JSON object", "body")
    return header, binary


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"{where}.parameters must be an object", where)
    return value


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(d) is int and d >= 0 for d in value):
        raise bad(f"input {name!r}: shape must be a list of non-negative integers, got {str(value)[:80]}", name)
    return tuple(value)


def parse_request(body: bytes, header_length: str | None) -> InferenceRequest:
    """An inference request, its inputs decoded (JSON `data` or binary data), its outputs listed."""
    header, binary = split_body(body, header_length)
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad("id must be a string", "id")
    parameters = _parameters(header.get("parameters"), "request")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise bad("inputs must be a non-empty list of tensors", "inputs")
    inputs: list[Tensor] = []
    offset, elements = 0, 0
    seen: set[str] = set()
    for raw in raw_inputs:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise bad("every input must be an object with a name", "inputs")
        name = raw["name"]
        if name in seen:
            raise bad(f"input {name!r} is given twice", name)
        seen.add(name)
        datatype = raw.get("datatype")
        if datatype not in DATATYPES:
            raise bad(f"input {name!r}: datatype {str(datatype)[:20]!r} is not one of {', '.join(DATATYPES)}", name)
        shape = _shape(raw.get("shape"), name)
        count = math.prod(shape)
        elements += count
        if elements > MAX_ELEMENTS:
            raise bad(f"input {name!r}: the request holds more than {MAX_ELEMENTS:,} elements", name)
        params = _parameters(raw.get("parameters"), f"input {name!r}")
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise bad(f"input {name!r}: binary_data_size {str(size)[:20]} is beyond the {len(binary) - offset} binary bytes left", name)
            values = _from_binary(binary[offset : offset + size], datatype, count, name)
            offset += size
        elif "data" in raw:
            values = _from_json(raw["data"], datatype, count, name)
        else:
            raise bad(f"input {name!r} has neither data nor parameters.binary_data_size", name)
        inputs.append(Tensor(name, datatype, shape, values, params))
    if offset != len(binary):
        raise bad(f"{len(binary) - offset} bytes of binary data are not claimed by any input's binary_data_size", "body")
    binary_output = parameters.get("binary_data_output") is True
    outputs = [_output(o, binary_output) for o in _list(header.get("outputs"), "outputs")]
    return InferenceRequest(request_id, parameters, inputs, outputs, binary_output)


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(f"{what} must be a list", what)
    return value


def _output(raw: Any, binary_default: bool) -> Output:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise bad("every requested output must be an object with a name", "outputs")
    params = _parameters(raw.get("parameters"), f"output {raw['name']!r}")
    if "class_count" in params:
        raise bad(f"output {raw['name']!r}: the classification extension (class_count) is not supported", raw["name"])
    binary = params.get("binary_data", binary_default)
    return Output(raw["name"], binary is True, params)


def _from_binary(data: memoryview, datatype: str, count: int, name: str) -> np.ndarray | pa.Array:
    if datatype == BYTES:
        return decode_bytes(data, count, name)
    dtype = DTYPES[datatype]
    if len(data) != count * dtype.itemsize:
        raise bad(f"input {name!r}: {len(data)} bytes of binary data for {count} {datatype} elements ({count * dtype.itemsize} bytes)", name)
    return np.frombuffer(data, dtype=dtype)


def _flat(data: Any) -> list[Any]:
    """Nested JSON lists (the protocol allows them) made flat, row-major."""
    if data and isinstance(data[0], list):
        out: list[Any] = []
        for item in data:
            if not isinstance(item, list):
                raise ValueError("ragged nesting")
            out.extend(_flat(item))
        return out
    return list(data)


def _from_json(data: Any, datatype: str, count: int, name: str) -> np.ndarray | pa.Array:
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == BYTES:
            flat = _flat(data)
            array = pa.array(flat, type=pa.string())
        else:
            if data and isinstance(data[0], list):
                array = np.asarray(data, dtype=DTYPES[datatype]).reshape(-1)
            else:
                array = np.asarray(data, dtype=DTYPES[datatype])
    except (ValueError, TypeError, OverflowError, RecursionError, pa.ArrowException) as e:
        raise bad(f"input {name!r}: data are not {datatype} values ({str(e)[:120]})", name) from e
    if len(array) != count:
        raise bad(f"input {name!r}: {len(array)} values for shape of {count} elements", name)
    return array


# ---- BYTES: 4-byte little-endian lengths, each followed by its bytes ------------------------------


def decode_bytes(data: memoryview | bytes, count: int, name: str = "input") -> pa.Array:
    """`count` length-prefixed elements as an Arrow string array, found without a Python loop: the start of
    every element is reached from the first by doubling jumps over the table of next starts."""
    buf = np.frombuffer(data, dtype=np.uint8)
    n = len(buf)
    if count == 0:
        if n:
            raise bad(f"input {name!r}: {n} bytes of BYTES data for no elements", name)
        return pa.array([], type=pa.string())
    if n < 4 * count:
        raise bad(f"input {name!r}: {n} bytes can't hold {count} BYTES elements (4 bytes of length each)", name)
    b = buf.astype(np.int64)
    lengths = b[:-3] | (b[1:-2] << 8) | (b[2:-1] << 16) | (b[3:] << 24)  # a length read at every position
    end, broken = n, n + 1
    jump = np.full(n + 2, broken, dtype=np.int64)
    jump[: n - 3] = np.minimum(np.arange(n - 3, dtype=np.int64) + 4 + lengths, broken)
    jump[end], jump[broken] = end, broken
    reached = np.zeros(n + 2, dtype=bool)
    reached[0] = True
    steps = 1
    while steps <= count:  # after k rounds every start within 2**k elements of the first is reached
        reached[jump[reached]] = True
        jump = jump[jump]
        steps *= 2
    starts = np.flatnonzero(reached[:n])
    if reached[broken] or len(starts) != count or not reached[end]:
        raise bad(f"input {name!r}: the BYTES data are not {count} length-prefixed elements", name)
    sizes = lengths[starts]
    keep = np.ones(n, dtype=bool)
    keep[(starts[:, None] + np.arange(4)).ravel()] = False
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    array = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(buf[keep].tobytes()))
    try:
        array.validate(full=True)  # UTF-8
    except pa.ArrowInvalid as e:
        raise bad(f"input {name!r}: BYTES elements must be UTF-8 text here ({e})", name) from e
    return array.cast(pa.string())


def encode_bytes(array: pa.Array) -> bytes:
    """Arrow strings as length-prefixed elements (missing values as empty ones)."""
    array = array.cast(pa.large_string()).fill_null("")
    if len(array) == 0:
        return b""
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    sizes = np.diff(offsets)
    n = len(sizes)
    out = np.empty(4 * n + len(data), dtype=np.uint8)
    starts = np.arange(n, dtype=np.int64) * 4 + (offsets[:-1] - offsets[0])
    out[(starts[:, None] + np.arange(4)).ravel()] = sizes.astype("<u4").view(np.uint8)
    owner = np.repeat(np.arange(n, dtype=np.int64), sizes)
    out[np.arange(len(data), dtype=np.int64) + 4 * (owner + 1)] = data
    return out.tobytes()


# ---- writing an answer ---------------------------------------------------------------------------


def datatype_of(arrow_type: pa.DataType) -> str:
    """The protocol's datatype of an answer column."""
    if pa.types.is_boolean(arrow_type):
        return "BOOL"
    if pa.types.is_integer(arrow_type):
        return "INT64"
    if pa.types.is_floating(arrow_type):
        return "FP64"
    return BYTES


@dataclass
class Answer:
    """One output of an answer: its name, the method's answer columns, and how to send it."""

    name: str
    table: pa.Table
    binary: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def _numbers(table: pa.Table, datatype: str) -> np.ndarray:
    dtype = DTYPES[datatype]
    columns = [c.to_numpy(zero_copy_only=False) for c in table.columns]
    if datatype == "FP64":
        columns = [np.asarray(c, dtype=np.float64) for c in columns]  # nulls (None) become NaN
    matrix = columns[0] if len(columns) == 1 else np.column_stack(columns)
    return np.ascontiguousarray(matrix, dtype=dtype).reshape(-1)


def _texts(table: pa.Table) -> pa.Array:
    """Every cell as text, row-major."""
    columns = [c.combine_chunks().cast(pa.string()) if not pa.types.is_string(c.type) else c.combine_chunks() for c in table.columns]
    if len(columns) == 1:
        return columns[0]
    rows, width = table.num_rows, len(columns)
    order = (np.arange(width)[None, :] * rows + np.arange(rows)[:, None]).ravel()
    return pa.concat_arrays(columns).take(pa.array(order))


def encode_response(model_name: str, version: int | None, request_id: str | None, answers: list[Answer]) -> tuple[bytes, int | None]:
    """The answer's body, and the length of its JSON when binary data follows it (else None)."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for a in answers:
        types = {datatype_of(t) for t in a.table.schema.types}
        datatype = types.pop() if len(types) == 1 else BYTES
        rows, width = a.table.num_rows, a.table.num_columns
        shape = [rows] if width == 1 else [rows, width]
        out: dict[str, Any] = {"name": a.name, "datatype": datatype, "shape": shape}
        params = dict(a.parameters)
        if a.binary:
            blob = encode_bytes(_texts(a.table)) if datatype == BYTES else _numbers(a.table, datatype).tobytes()
            params["binary_data_size"] = len(blob)
            blobs.append(blob)
        elif datatype == BYTES:
            out["data"] = _texts(a.table).fill_null("").to_pylist()
        else:
            out["data"] = _numbers(a.table, datatype)
        if params:
            out["parameters"] = params
        outputs.append(out)
    body: dict[str, Any] = {"model_name": model_name, "outputs": outputs}
    if version is not None:
        body["model_version"] = str(version)
    if request_id is not None:
        body["id"] = request_id
    text = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return text, None
    return b"".join([text, *blobs]), len(text)

