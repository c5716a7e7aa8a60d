"""The Open Inference Protocol's routes in the OpenAPI document (`openapi.build` calls `add`).

The protocol's bodies are its own (KServe's `rest_predict_v2.yaml` and Triton's
binary extension), not ml-server's marshmallow schemas, so they are written
here as JSON Schema, next to nothing else.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from contracts.schemas import ALIAS_PATTERN
from contracts.v2 import DATATYPES, HEADER_LENGTH, V2

TAG = "v2"


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

_MODEL = {"name": "model", "in": "path", "required": True, "description": "a model_key, or a model's name", "schema": {"type": "string"}}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "a version number or an alias",
    "schema": {"type": "string", "pattern": f"^([0-9]+|{ALIAS_PATTERN[1:-1]})$"},
}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: {"description": "`{\"error\": message}`", "content": _json(_ref("V2Error"))} for s in statuses}


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": _json(_ref(schema))}}


def add(spec: APISpec) -> None:
    """The V2 paths, their schemas and their tag."""
    spec.tag({"name": TAG, "description": "the Open Inference Protocol (KServe V2, Triton's binary tensors): see docs/v2.md"})
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    open_ops: dict[str, Any] = {"security": []}

    def get(path: str, op_id: str, summary: str, responses: dict[str, Any], *, params: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        spec.path(path, parameters=params or [], operations={"get": {"tags": [TAG], "operationId": op_id, "summary": summary, "responses": responses, **extra}})

    get(V2.SERVER, "v2_server", "the server's name, version and protocol extensions", {**_ok("V2ServerMetadata", "the server"), **_errors("401")})
    get(V2.LIVE, "v2_live", "the process is up", _ok("V2Live", "live"), **open_ops)
    get(V2.READY, "v2_ready", "ready as /readyz is (400 when not)", {**_ok("V2Ready", "ready"), "400": {"description": "not ready", "content": _json(_ref("V2Ready"))}}, **open_ops)
    ready_answers = {**_ok("V2ModelReady", "ready"), "400": {"description": "not ready", "content": _json(_ref("V2ModelReady"))}, **_errors("401", "404", "503")}
    meta_answers = {**_ok("V2ModelMetadata", "inputs and outputs from the version's recorded input schema"), **_errors("400", "401", "404", "409", "503")}
    get(V2.MODEL, "v2_model", "a model's metadata (its default version's)", meta_answers, params=[_MODEL])
    get(V2.MODEL_VERSION, "v2_model_version", "a version's metadata", meta_answers, params=[_MODEL, _VERSION])
    get(V2.MODEL_READY, "v2_model_ready", "whether the default version can answer", ready_answers, params=[_MODEL])
    get(V2.MODEL_VERSION_READY, "v2_model_version_ready", "whether the version can answer", ready_answers, params=[_MODEL, _VERSION])
    infer = {
        "tags": [TAG],
        "summary": "predict: JSON tensors, or JSON and binary tensors (Triton's extension); outputs named after methods",
        "parameters": [{"name": HEADER_LENGTH, "in": "header", "required": False, "schema": {"type": "integer", "minimum": 0},
                        "description": "binary tensors follow the JSON: its length in bytes"}],
        "requestBody": {
            "required": True,
            "content": {**_json(_ref("V2InferenceRequest")), "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
        "responses": {
            "200": {
                "description": "the outputs; with binary outputs, the JSON's length in `Inference-Header-Content-Length`",
                "content": {**_json(_ref("V2InferenceResponse")), "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            },
            **_errors("400", "401", "404", "409", "413", "503", "504"),
        },
    }
    spec.path(V2.INFER, parameters=[_MODEL], operations={"post": {**infer, "operationId": "v2_infer"}})
    spec.path(V2.VERSION_INFER, parameters=[_MODEL, _VERSION], operations={"post": {**infer, "operationId": "v2_version_infer"}})
    repository_body = {"required": False, "content": _json({"type": "object", "properties": {"ready": {"type": "boolean"}}})}
    spec.path(V2.INDEX, operations={"post": {
        "tags": [TAG], "operationId": "v2_index", "summary": "every model's versions, READY or UNAVAILABLE (and why)",
        "requestBody": repository_body, "responses": {**_ok("V2RepositoryIndex", "the index"), **_errors("400", "401", "503")},
    }})
    for path, op_id, summary in (
        (V2.LOAD, "v2_load", "load the model's default version into its consumers' caches (write scope)"),
        (V2.UNLOAD, "v2_unload", "drop the model from its consumers' caches; nothing is deleted (write scope)"),
    ):
        spec.path(path, parameters=[_MODEL], operations={"post": {
            "tags": [TAG], "operationId": op_id, "summary": summary,
            "requestBody": {"required": False, "content": _json({"type": "object", "properties": {"parameters": _PARAMETERS}})},
            "responses": {**_ok("V2RepositoryChange", "asked of the consumers"), **_errors("400", "401", "403", "404", "409", "503")},
        }})
