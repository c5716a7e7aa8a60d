"""The V2 wire codec on its own (pure logic): what tritonclient writes, read back exactly; refusals named."""

from __future__ import annotations

import json
import struct

import numpy as np
import pyarrow as pa
import pytest
import tritonclient.http as triton
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from contracts.errors import InvalidInput
from contracts.frames import float_schema
from contracts.v2 import HEADER_LENGTH, Answer, decode_bytes, encode_bytes, encode_response, parse_request
from contracts.v2_rows import inputs_metadata, rows


def texts(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    alphabet = list("ab z-é中\U0001f600")
    return ["".join(rng.choice(alphabet, size=int(rng.integers(0, 40)))) for _ in range(int(rng.integers(1, 60)))]


@pytest.mark.parametrize("seed", range(30))
def test_bytes_tensors_read_and_write_as_tritonclient_does(seed: int) -> None:
    values = texts(seed)
    wire = serialize_byte_tensor(np.array([v.encode() for v in values], dtype=object)).item()
    assert decode_bytes(wire, len(values)).to_pylist() == values
    assert encode_bytes(pa.array(values)) == wire
    assert [v.decode() for v in deserialize_bytes_tensor(encode_bytes(pa.array(values)[1:]))] == values[1:]


@pytest.mark.parametrize(
    "wire, count, words",
    [
        (b"\x01\x00\x00\x00ab", 1, "not 1 length-prefixed"),
        (b"\x01\x00\x00\x00a", 2, "can't hold 2"),
        (b"\x09\x00\x00\x00abc", 1, "not 1 length-prefixed"),
        (b"\x02\x00\x00\x00\xff\xfe", 1, "UTF-8"),
        (b"\x00", 0, "for no elements"),
    ],
)
def test_broken_bytes_tensors_are_refused(wire: bytes, count: int, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        decode_bytes(wire, count)


def test_a_tritonclient_request_decodes_to_the_rows_it_holds() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = triton.InferInput("anything", [3, 4], "FP32")
    tensor.set_data_from_numpy(x)
    body, json_length = triton.InferenceServerClient.generate_request_body([tensor], request_id="7")
    request = parse_request(body, str(json_length))
    assert request.id == "7" and request.binary_output and request.outputs == []
    got = rows(request, {"features": ["a", "b", "c", "d"]})
    assert got.schema == float_schema(("a", "b", "c", "d")) and got.num_rows == 3
    np.testing.assert_array_equal(got.table.to_pandas().to_numpy(), x)


def test_pd_inputs_become_a_table_in_the_schemas_order() -> None:
    meta = {
        "features": ["n", "t"],
        "schema": [{"name": "n", "kind": "number", "missing": True}, {"name": "t", "kind": "string", "missing": True, "levels": ["a"]}],
    }
    inputs, parameters = inputs_metadata(meta)
    assert [(i["name"], i["datatype"]) for i in inputs] == [("n", "FP64"), ("t", "BYTES")] and parameters == {"content_type": "pd"}
    body = {"parameters": {"content_type": "pd"}, "inputs": [
        {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a", None]},
        {"name": "n", "shape": [2, 1], "datatype": "FP64", "data": [[1.5], [None]]},
    ]}
    table = rows(parse_request(json.dumps(body).encode(), None), meta).table
    numbers = table.column("n").to_numpy(zero_copy_only=False)
    assert table.column_names == ["n", "t"] and numbers[0] == 1.5 and np.isnan(numbers[1])  # a missing number: NaN
    assert table.column("t").to_pylist() == ["a", None]
    with pytest.raises(InvalidInput, match="a BYTES tensor|text columns"):
        rows(parse_request(json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}).encode(), None), meta)


def test_answers_in_json_and_in_binary() -> None:
    labels = pa.table({"species": ["Adelie", "Gentoo"]})
    proba = pa.table({"Adelie": [0.9, 0.2], "Gentoo": [0.1, 0.8]})
    body, length = encode_response("m", 3, "id-1", [Answer("predict", labels, False), Answer("predict_proba", proba, False, {"columns": ["Adelie", "Gentoo"]})])
    assert length is None
    answer = json.loads(body)
    assert answer["model_version"] == "3" and answer["id"] == "id-1"
    assert answer["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [2], "data": ["Adelie", "Gentoo"]}
    assert answer["outputs"][1]["shape"] == [2, 2] and answer["outputs"][1]["data"] == [0.9, 0.1, 0.2, 0.8]
    body, length = encode_response("m", 3, None, [Answer("predict", labels, True), Answer("predict_proba", proba, True)])
    result = triton.InferenceServerClient.parse_response_body(body, header_length=length)
    assert [v.decode() for v in result.as_numpy("predict")] == ["Adelie", "Gentoo"]
    np.testing.assert_array_equal(result.as_numpy("predict_proba"), [[0.9, 0.1], [0.2, 0.8]])


def test_the_header_length_and_binary_sizes_must_add_up() -> None:
    header = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}}]}).encode()
    data = struct.pack("<2i", 1, 2)
    assert list(parse_request(header + data, str(len(header))).inputs[0].values) == [1, 2]
    for body, length, words in (
        (header + data + b"x", str(len(header)), "not claimed"),
        (header + data[:4], str(len(header)), "binary_data_size 8"),
        (header + data, "x", HEADER_LENGTH),
        (header + data, str(len(header) + 100), HEADER_LENGTH),
    ):
        with pytest.raises(InvalidInput, match=words):
            parse_request(body, length)
