"""The OpenAPI 3 document (`GET /openapi.json`) and its docs page (`GET /docs`).

The document is generated from the marshmallow schemas in `contracts.schemas`
by apispec's MarshmallowPlugin, so it cannot drift from what the handlers
validate. The docs page is Swagger UI, served from the files of the installed
`swagger-ui-bundle` package: nothing is fetched from a CDN.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from contracts.frames import PARQUET
from contracts.schemas import (
    FAMILY_NAME,
    MODEL_KEY,
    DeleteResponse,
    EventsQuery,
    FitParams,
    FitRequest,
    Frame,
    JsonDict,
    KeyParams,
    ModelResponse,
    ModelsQuery,
    PredictParams,
    PredictRequest,
    StatusResponse,
    TrainResponse,
    UpdateParams,
    UpdateRequest,
    VersionResponse,
    VersionsQuery,
)

routes = web.RouteTableDef()

# ---- documentation-only schemas: bodies the handlers build without a contracts schema ----


class ErrorDetail(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable error code, e.g. `invalid_input`"})
    message = fields.String(required=True, metadata={"description": "what was wrong, naming the field"})
    fields_ = fields.Dict(
        data_key="fields", metadata={"description": "the offending fields and what was wrong with each"}
    )


class ErrorResponse(Schema):
    error = fields.Nested(ErrorDetail, required=True)


class HealthResponse(Schema):
    status = fields.String(required=True)


class ReadyResponse(Schema):
    status = fields.String(required=True, metadata={"description": "`ok` or `unavailable`"})
    broker = fields.String(required=True)
    store = fields.String(required=True)


class FamilyInfo(Schema):
    name = fields.String(required=True)
    supervised = fields.Boolean(required=True)
    supports_update = fields.Boolean(required=True)
    params = fields.List(fields.String(), required=True)
    methods = fields.List(fields.String(), required=True)


class FamiliesResponse(Schema):
    families = fields.List(fields.Nested(FamilyInfo), required=True)


class ModelsResponse(Schema):
    models = fields.List(fields.Nested(ModelResponse), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class VersionsResponse(Schema):
    model_key = fields.String(required=True)
    family = fields.String(required=True)
    name = fields.String(allow_none=True)
    versions = fields.List(fields.Nested(VersionResponse), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class PredictJsonResponse(Schema):
    data = fields.Raw(
        required=True,
        metadata={"description": "the prediction as pandas JSON text in `orient`, or a JSON array with `as_array`"},
    )
    orient = fields.String(required=True)


# ---- custom fields -----------------------------------------------------------------


def _custom_fields(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    if isinstance(field, Frame):
        return {
            "oneOf": [{"type": "string"}, {"type": "object"}, {"type": "array", "items": {}}],
            "description": "a DataFrame as pandas JSON in `orient`: the text of `DataFrame.to_json`, or the parsed object",
        }
    if isinstance(field, JsonDict):
        return {"description": "a JSON object (in a query string or header: as JSON text)"}
    return {}


def _query_parameters(plugin: MarshmallowPlugin, schema: type[Schema], *, only_parquet: bool = False) -> list[dict[str, Any]]:
    """Query parameters from a schema; JSON-object fields travel as JSON text."""
    assert plugin.converter is not None
    params = plugin.converter.schema2parameters(schema(), location="query")
    for p in params:
        if isinstance(schema._declared_fields.get(p["name"]), JsonDict):
            p["schema"] = {"type": "string", "description": "a JSON object as text, e.g. `{\"C\": 0.5}`"}
        if only_parquet:
            p["required"] = False
            note = "With a Parquet body only (a JSON body carries it as a field)."
            p["description"] = f"{p['description'].rstrip('.')}. {note}" if p.get("description") else note
    return params


# ---- the document --------------------------------------------------------------------

_ERRORS = {
    "401": ("Unauthorized", "a bearer token is needed (only when the gateway has ML_SERVER_TOKENS)"),
    "403": ("Forbidden", "a read token on a write operation"),
    "404": ("NotFound", "unknown family (no consumer registered it) or unknown model_key"),
    "409": ("Conflict", "not trained yet, training failed, or a stored model this server cannot load"),
    "413": ("PayloadTooLarge", "body over ML_SERVER_MAX_BODY"),
    "415": ("UnsupportedMediaType", "a body that is neither JSON nor Parquet"),
    "422": ("InvalidInput", "malformed input (including frames wider than ML_SERVER_MAX_COLUMNS); `fields` names the offending fields"),
    "503": ("Unavailable", "broker or store unreachable; nothing was accepted"),
    "504": ("DeadlineExceeded", "no consumer answered within ML_SERVER_PREDICT_TIMEOUT"),
}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: {"$ref": f"#/components/responses/{_ERRORS[s][0]}"} for s in statuses}


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_DATA_ERRORS = ("401", "403", "404", "413", "415", "422", "503")
_OPEN: list[dict[str, Any]] = []  # no security requirement


def _family_param() -> dict[str, Any]:
    return {
        "name": "family",
        "in": "path",
        "required": True,
        "description": "a model family a consumer serves (see GET /families)",
        "schema": {"type": "string", "pattern": FAMILY_NAME.regex.pattern},
    }


def _training_body(json_schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{json_schema}"}},
            PARQUET: {
                # One Parquet file holding x and y; schema metadata `ml_server.target` names y's columns.
                "schema": {"type": "string", "format": "binary"},
            },
        },
    }


def build() -> dict[str, Any]:
    """The OpenAPI 3.0 document of every route the gateway serves."""
    try:
        release = version("ml-server")
    except PackageNotFoundError:  # running from a source tree that was never installed
        release = "0.0.0"
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="ml-server",
        version=release,
        openapi_version="3.0.3",
        plugins=[plugin],
        info={
            "description": "Train and serve scikit-learn models: send a DataFrame (pandas JSON or Parquet), "
            "get a model_key, predict. Errors are always `{error: {code, message, fields?}}`."
        },
    )
    plugin.converter.add_attribute_function(_custom_fields)  # type: ignore[union-attr]
    spec.components.security_scheme(
        "bearer",
        {"type": "http", "scheme": "bearer", "description": "a token from `ml-server token`; needed only when ML_SERVER_TOKENS is set"},
    )
    for name, schema in (
        ("FitRequest", FitRequest),
        ("UpdateRequest", UpdateRequest),
        ("PredictRequest", PredictRequest),
        ("KeyRequest", KeyParams),
        ("TrainResponse", TrainResponse),
        ("StatusResponse", StatusResponse),
        ("PredictResponse", PredictJsonResponse),
        ("DeleteResponse", DeleteResponse),
        ("VersionResponse", VersionResponse),
        ("ModelsResponse", ModelsResponse),
        ("VersionsResponse", VersionsResponse),
        ("FamiliesResponse", FamiliesResponse),
        ("ErrorResponse", ErrorResponse),
        ("HealthResponse", HealthResponse),
        ("ReadyResponse", ReadyResponse),
    ):
        spec.components.schema(name, schema=schema)
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for status, (name, description) in _ERRORS.items():
        spec.components.response(name, {"description": description, "content": _json(error_ref)})

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    key_query = {
        "name": "model_key",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "pattern": MODEL_KEY.regex.pattern},
    }
    spec.path(
        "/{family}",
        parameters=[_family_param()],
        operations={
            "put": {
                "operationId": "fit",
                "summary": "fit: train a new version of a model",
                "description": "JSON body in the seed's format, or a Parquet body with the other fields in the query string.",
                "parameters": _query_parameters(plugin, FitParams, only_parquet=True),
                "requestBody": _training_body("FitRequest"),
                "responses": {
                    "200": {"description": "the model exists and no retrain: its latest version", "content": _json(ref("TrainResponse"))},
                    "202": {"description": "queued", "content": _json(ref("TrainResponse"))},
                    **_errors(*_DATA_ERRORS),
                },
            },
            "post": {
                "operationId": "predict",
                "summary": "predict (or another method through kwargs.method)",
                "description": "Answers Parquet when `Accept` names application/vnd.apache.parquet.",
                "parameters": _query_parameters(plugin, PredictParams, only_parquet=True),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref("PredictRequest")},
                        PARQUET: {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {
                    "200": {
                        "description": "the prediction, indexed like x",
                        "content": {**_json(ref("PredictResponse")), PARQUET: {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors(*_DATA_ERRORS, "409", "504"),
                },
            },
            "patch": {
                "operationId": "update",
                "summary": "update (partial_fit) the latest version, making a new one",
                "parameters": _query_parameters(plugin, UpdateParams, only_parquet=True),
                "requestBody": _training_body("UpdateRequest"),
                "responses": {
                    "202": {"description": "queued", "content": _json(ref("TrainResponse"))},
                    **_errors(*_DATA_ERRORS, "409"),
                },
            },
            "get": {
                "operationId": "status",
                "summary": "status of the model's latest version",
                "parameters": [key_query],
                "responses": {
                    "200": {"description": "the latest version's status", "content": _json(ref("StatusResponse"))},
                    **_errors("401", "404", "422", "503"),
                },
            },
            "delete": {
                "operationId": "delete",
                "summary": "delete the model and all its versions",
                "parameters": [key_query],
                "responses": {
                    "200": {"description": "deleted", "content": _json(ref("DeleteResponse"))},
                    **_errors("401", "403", "404", "422", "503"),
                },
            },
        },
    )
    spec.path(
        "/families",
        operations={
            "get": {
                "operationId": "families",
                "summary": "the families consumers serve, their parameters and methods",
                "responses": {"200": {"description": "families", "content": _json(ref("FamiliesResponse"))}, **_errors("401", "503")},
            }
        },
    )
    spec.path(
        "/models",
        operations={
            "get": {
                "operationId": "models",
                "summary": "models with their latest version, newest first",
                "parameters": _query_parameters(plugin, ModelsQuery),
                "responses": {"200": {"description": "a page of models", "content": _json(ref("ModelsResponse"))}, **_errors("401", "422", "503")},
            }
        },
    )
    spec.path(
        "/models/{model_key}/versions",
        parameters=[{"name": "model_key", "in": "path", "required": True, "schema": {"type": "string"}}],
        operations={
            "get": {
                "operationId": "versions",
                "summary": "every version of a model, newest first, with its metadata",
                "parameters": _query_parameters(plugin, VersionsQuery),
                "responses": {
                    "200": {"description": "a page of versions", "content": _json(ref("VersionsResponse"))},
                    **_errors("401", "404", "422", "503"),
                },
            }
        },
    )
    spec.path(
        "/models/{model_key}/events",
        parameters=[{"name": "model_key", "in": "path", "required": True, "schema": {"type": "string"}}],
        operations={
            "get": {
                "operationId": "events",
                "summary": "the model's status events as server-sent events",
                "parameters": _query_parameters(plugin, EventsQuery),
                "responses": {
                    "200": {
                        "description": "an event stream: one `data:` line of JSON per status change",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors("401", "404", "503"),
                },
            }
        },
    )
    open_ops: tuple[tuple[str, str, str, dict[str, Any], dict[str, Any]], ...] = (
        ("/healthz", "healthz", "the gateway process is up", _json(ref("HealthResponse")), {}),
        (
            "/readyz",
            "readyz",
            "broker and store reachable",
            _json(ref("ReadyResponse")),
            {"503": {"description": "broker or store unreachable (named)", "content": _json(ref("ReadyResponse"))}},
        ),
        ("/openapi.json", "openapi", "this document", _json({"type": "object"}), {}),
        ("/docs", "docs", "the API documentation page (Swagger UI, served by the gateway)", {"text/html": {"schema": {"type": "string"}}}, {}),
    )
    for path, op_id, summary, content, extra in open_ops:
        spec.path(
            path,
            operations={
                "get": {
                    "operationId": op_id,
                    "summary": summary,
                    "security": _OPEN,
                    "responses": {"200": {"description": summary, "content": content}, **extra},
                }
            },
        )
    spec.path(
        "/docs/{asset}",
        parameters=[{"name": "asset", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(_ASSETS)}}],
        operations={
            "get": {
                "operationId": "docs_asset",
                "summary": "a script, style sheet or icon of the docs page",
                "security": _OPEN,
                "responses": {"200": {"description": "the file"}, **_errors("404")},
            }
        },
    )
    spec.path(
        "/metrics",
        operations={
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "Prometheus text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors("401"),
                },
            }
        },
    )
    document = spec.to_dict()
    document["security"] = [{"bearer": []}]
    return document


@functools.cache
def document_bytes() -> bytes:
    return orjson.dumps(build())


# ---- routes ----------------------------------------------------------------------------

# The docs page's files: Swagger UI from the swagger-ui-bundle package, and our initializer.
_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",
    "favicon-32x32.png": "image/png",
    "init.js": "application/javascript",
}

_INIT_JS = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};
"""

_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ml-server API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""


def _swagger_ui_dir() -> Path:
    import swagger_ui_bundle  # the files of Swagger UI, shipped in a wheel

    return Path(swagger_ui_bundle.swagger_ui_path)


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(body=_PAGE, content_type="text/html")


@routes.get("/docs/{asset}")
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    if name not in _ASSETS:
        raise web.HTTPNotFound()
    headers = {"Cache-Control": "public, max-age=3600"}
    if name == "init.js":
        return web.Response(body=_INIT_JS, content_type=_ASSETS[name], headers=headers)
    return web.FileResponse(_swagger_ui_dir() / name, headers={**headers, "Content-Type": _ASSETS[name]})
