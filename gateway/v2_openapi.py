"""The Open Inference Protocol's bodies in the OpenAPI document (the routes are rows of `table.ROUTES`).

The protocol's bodies are its own (KServe's `rest_predict_v2.yaml` and Triton's
binary extension), not ml-server's marshmallow schemas, so they are written
here as JSON Schema, next to nothing else.
"""

from __future__ import annotations

from typing import Any

from contracts.schemas import ALIAS_PATTERN
from contracts.v2 import DATATYPES, HEADER_LENGTH

def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_PARAMETERS = {"type": "object", "additionalProperties": True}
_TENSOR_FIELDS: dict[str, Any] = {
    "name": {"type": "string"},
    "datatype": {"type": "string", "enum": list(DATATYPES)},
    "shape": {"type": "array", "items": {"type": "integer"}},
    "parameters": _PARAMETERS,
}
_TENSOR_META = {"type": "object", "required": ["name", "datatype", "shape"], "properties": _TENSOR_FIELDS}
_DATA = {"description": "the tensor's elements, row-major, flat or nested (BYTES: strings)", "type": "array", "items": {}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "V2ServerMetadata": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "extensions": {"type": "array", "items": {"type": "string"}}},
    },
    "V2Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "V2Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "V2ModelReady": {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
    "V2TensorMetadata": _TENSOR_META,
    "V2ModelMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            "parameters": _PARAMETERS,
        },
    },
    "V2InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "description": "`content_type: \"pd\"`: one input per column; `binary_data_output`: every output in binary",
                "additionalProperties": True,
            },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {
                        **_TENSOR_FIELDS,
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "data": _DATA,
                    },
                },
            },
            "outputs": {
                "type": "array",
                "description": "named after the model's methods (`predict`, `predict_proba`, ...); default: `predict`",
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS}},
            },
        },
    },
    "V2InferenceResponse": {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {**_TENSOR_FIELDS, "data": _DATA},
                    "description": "`parameters.columns`: the answer's columns (predict_proba's: the classes); "
                    "`parameters.binary_data_size`: the output's bytes after the JSON",
                },
            },
        },
    },
    "V2RepositoryChange": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "model_key": {"type": "string"}, "version": {"type": "string"}},
    },
    "V2RepositoryIndex": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "state": {"type": "string", "enum": ["READY", "UNAVAILABLE"]},
                "reason": {"type": "string"},
            },
        },
    },
}

# The path parameters of the protocol's routes: a model by key or name, a version by number or alias.
PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    "model": ("a model_key, or a model's name", {"type": "string"}),
    "version": ("a version number or an alias", {"type": "string", "pattern": f"^([0-9]+|{ALIAS_PATTERN[1:-1]})$"}),
}
BINARY_LENGTH = {
    "name": HEADER_LENGTH, "in": "header", "required": False, "schema": {"type": "integer", "minimum": 0},
    "description": "binary tensors follow the JSON: its length in bytes",
}
