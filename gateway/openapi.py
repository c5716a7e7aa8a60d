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

from contracts import responses
from contracts.frames import PARQUET
from contracts.schemas import (
    ALIAS_PATTERN,
    FAMILY_NAME,
    MODEL_KEY,
    EventsQuery,
    FeedQuery,
    FitParams,
    FitRequest,
    Frame,
    HistoryQuery,
    ImportParams,
    JsonDict,
    JsonList,
    AliasRequest,
    KeyParams,
    ModelPatch,
    ModelsQuery,
    PredictParams,
    PredictRequest,
    UpdateParams,
    UpdateRequest,
    VersionPatch,
    VersionsQuery,
)

from . import dashboard

routes = web.RouteTableDef()

# ---- custom fields -----------------------------------------------------------------


def _custom_fields(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    if isinstance(field, Frame):
        return {
            "oneOf": [{"type": "string"}, {"type": "object"}, {"type": "array", "items": {}}],
            "description": "a DataFrame as pandas JSON in `orient`: the text of `DataFrame.to_json`, or the parsed object",
        }
    if isinstance(field, JsonDict):
        return {"description": "a JSON object (in a query string or header: as JSON text)"}
    if isinstance(field, JsonList):
        return {"description": "a JSON list (in a query string or header: as JSON text)"}
    return {}


def _query_parameters(plugin: MarshmallowPlugin, schema: type[Schema], *, only_parquet: bool = False) -> list[dict[str, Any]]:
    """Query parameters from a schema; JSON-object fields travel as JSON text."""
    assert plugin.converter is not None
    params = plugin.converter.schema2parameters(schema(), location="query")
    for p in params:
        if isinstance(schema._declared_fields.get(p["name"]), JsonDict):
            p["schema"] = {"type": "string", "description": "a JSON object as text, e.g. `{\"C\": 0.5}`"}
        elif isinstance(schema._declared_fields.get(p["name"]), JsonList):
            p["schema"] = {"type": "string", "description": "a JSON list as text, e.g. `[\"a\", \"b\"]`"}
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


def _parquet() -> dict[str, Any]:
    return {"schema": {"type": "string", "format": "binary"}}


def _key_path() -> dict[str, Any]:
    return {"name": "model_key", "in": "path", "required": True, "schema": {"type": "string", "pattern": MODEL_KEY.regex.pattern}}


def _response_schemas() -> list[tuple[str, type[Schema]]]:
    """Every schema of `contracts.responses`, under its class name."""
    return [(name, cls) for name, cls in vars(responses).items() if isinstance(cls, type) and issubclass(cls, Schema) and cls is not Schema]


def build() -> dict[str, Any]:
    """The OpenAPI 3.0 document of every route the gateway serves: the seed's `/{family}` and ml-server's own."""
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
            "get a model_key, predict. Two contracts: the seed's `/{family}` verbs (tag `seed`), answered "
            "exactly as the original project answered them, and ml-server's own resources under `/models` "
            "and `/families` (tag `ml-server`). Errors are always `{error: {code, message, fields?}}`."
        },
        tags=[
            {"name": "seed", "description": "the original project's API: its client works unchanged"},
            {"name": "ml-server", "description": "models, versions and families as resources, with everything there is to know"},
            {"name": "registry", "description": "aliases, the serving alias, tags, descriptions, history, imported models"},
            {"name": "operations", "description": "health, readiness, metrics, this document"},
        ],
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
        ("AliasRequest", AliasRequest),
        ("ModelPatch", ModelPatch),
        ("VersionPatch", VersionPatch),
        *_response_schemas(),
    ):
        spec.components.schema(name, schema=schema)
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for status, (name, description) in _ERRORS.items():
        spec.components.response(name, {"description": description, "content": _json(error_ref)})

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def ok(description: str, schema: str, status: str = "200") -> dict[str, Any]:
        return {status: {"description": description, "content": _json(ref(schema))}}

    predict_answer = {
        "200": {
            "description": "the prediction, one row per row of x, labelled like x: `{data, orient}`, or Parquet "
            "when `Accept` names application/vnd.apache.parquet",
            "content": {**_json(ref("PredictResponse")), PARQUET: _parquet()},
        }
    }
    predict_body = {"required": True, "content": {"application/json": {"schema": ref("PredictRequest")}, PARQUET: _parquet()}}
    key_query = {"name": "model_key", "in": "query", "required": True, "schema": {"type": "string", "pattern": MODEL_KEY.regex.pattern}}
    seed = ["seed"]
    own = ["ml-server"]
    registry = ["registry"]

    spec.path(
        "/{family}",
        parameters=[_family_param()],
        operations={
            "put": {
                "tags": seed,
                "operationId": "seed_fit",
                "summary": "fit: train a model (a new version with `retrain`)",
                "description": "JSON body in the seed's format, or a Parquet body with the other fields in the query string. "
                "Always `200 {status, model_key}`: the version just queued (`Queued`), or the model as it is when it "
                "exists and no retrain was asked for.",
                "parameters": _query_parameters(plugin, FitParams, only_parquet=True),
                "requestBody": _training_body("FitRequest"),
                "responses": {**ok("`{status, model_key}`, the seed's status names", "SeedTrainResponse"), **_errors(*_DATA_ERRORS)},
            },
            "post": {
                "tags": seed,
                "operationId": "seed_predict",
                "summary": "predict (or another method through kwargs.method)",
                "parameters": _query_parameters(plugin, PredictParams, only_parquet=True),
                "requestBody": predict_body,
                "responses": {**predict_answer, **_errors(*_DATA_ERRORS, "409", "504")},
            },
            "patch": {
                "tags": seed,
                "operationId": "seed_update",
                "summary": "update (partial_fit) the latest version, making a new one",
                "parameters": _query_parameters(plugin, UpdateParams, only_parquet=True),
                "requestBody": _training_body("UpdateRequest"),
                "responses": {**ok("`{status, model_key}` of the queued version", "SeedTrainResponse"), **_errors(*_DATA_ERRORS, "409")},
            },
            "get": {
                "tags": seed,
                "operationId": "seed_status",
                "summary": "status of the model's latest training session",
                "parameters": [key_query],
                "responses": {**ok("`{status}`, the seed's status names", "SeedStatusResponse"), **_errors("401", "404", "422", "503")},
            },
            "delete": {
                "tags": seed,
                "operationId": "seed_delete",
                "summary": "delete the model and all its versions",
                "parameters": [key_query],
                "responses": {**ok("deleted: `{}`", "SeedDeleteResponse"), **_errors("401", "403", "404", "422", "503")},
            },
        },
    )
    spec.path(
        "/families",
        operations={
            "get": {
                "tags": own,
                "operationId": "families",
                "summary": "the families consumers serve, their parameters and methods",
                "responses": {**ok("families", "FamiliesResponse"), **_errors("401", "503")},
            }
        },
    )
    spec.path(
        "/families/{family}/models",
        parameters=[_family_param()],
        operations={
            "post": {
                "tags": own,
                "operationId": "fit",
                "summary": "fit: train a model of this family (a new version with `retrain`)",
                "description": "JSON body in the seed's format, or a Parquet body with the other fields in the query string.",
                "parameters": _query_parameters(plugin, FitParams, only_parquet=True),
                "requestBody": _training_body("FitRequest"),
                "responses": {
                    **ok("queued: the new version", "TrainResponse", "202"),
                    **ok("the model exists and no retrain: its latest version", "TrainResponse"),
                    **_errors(*_DATA_ERRORS),
                },
            }
        },
    )
    spec.path(
        "/models",
        operations={
            "get": {
                "tags": own,
                "operationId": "models",
                "summary": "models with their latest version, newest first",
                "parameters": _query_parameters(plugin, ModelsQuery),
                "responses": {**ok("a page of models", "ModelsResponse"), **_errors("401", "422", "503")},
            }
        },
    )
    spec.path(
        "/models/{model_key}",
        parameters=[_key_path()],
        operations={
            "get": {
                "tags": own,
                "operationId": "model",
                "summary": "a model and its latest version",
                "responses": {**ok("the model", "ModelResponse"), **_errors("401", "404", "422", "503")},
            },
            "delete": {
                "tags": own,
                "operationId": "delete",
                "summary": "delete the model and all its versions",
                "responses": {**ok("deleted", "DeleteResponse"), **_errors("401", "403", "404", "422", "503")},
            },
            "patch": {
                "tags": registry,
                "operationId": "edit_model",
                "summary": "change the model's description, tags, or the alias predicts use by default (`serving`)",
                "description": "Only the fields given change. `serving: null`: predicts get the latest done version.",
                "requestBody": {"required": True, "content": _json(ref("ModelPatch"))},
                "responses": {**ok("the model", "ModelResponse"), **_errors("401", "403", "404", "422", "503")},
            },
        },
    )
    alias_path = {"name": "alias", "in": "path", "required": True, "schema": {"type": "string", "pattern": ALIAS_PATTERN}}
    spec.path(
        "/models/{model_key}/aliases/{alias}",
        parameters=[_key_path(), alias_path],
        operations={
            "put": {
                "tags": registry,
                "operationId": "set_alias",
                "summary": "point an alias at a done version (moving it back is a rollback)",
                "requestBody": {"required": True, "content": _json(ref("AliasRequest"))},
                "responses": {**ok("the alias", "AliasResponse"), **_errors("401", "403", "404", "409", "422", "503")},
            },
            "delete": {
                "tags": registry,
                "operationId": "remove_alias",
                "summary": "remove an alias (409 for the one the model serves)",
                "responses": {**ok("removed: `version` null", "AliasResponse"), **_errors("401", "403", "404", "409", "422", "503")},
            },
        },
    )
    spec.path(
        "/models/{model_key}/history",
        parameters=[_key_path()],
        operations={
            "get": {
                "tags": registry,
                "operationId": "history",
                "summary": "who did what to the model and its versions, newest first",
                "parameters": _query_parameters(plugin, HistoryQuery),
                "responses": {**ok("the history", "HistoryResponse"), **_errors("401", "404", "422", "503")},
            }
        },
    )
    import_body = {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "a skops file (`skops.io.dump`) or an ONNX model; pickle and joblib files are refused (415)",
    }
    import_answers = {
        **ok("imported: the done version", "TrainResponse", "201"),
        **_errors("401", "403", "404", "409", "413", "415", "422", "503", "504"),
    }
    spec.path(
        "/families/{family}/models/import",
        parameters=[_family_param()],
        operations={
            "post": {
                "tags": registry,
                "operationId": "import_model",
                "summary": "a model trained elsewhere as a new model: a skops file into the family of its estimator, "
                "an ONNX graph into `onnx`",
                "description": "Checked by a consumer before anything is stored: a skops file is read with the server's "
                "own list of trusted types, a graph is loaded by onnxruntime; both must answer a test predict. 200 "
                "(not 201) when the same file was imported before without a name.",
                "parameters": _query_parameters(plugin, ImportParams),
                "requestBody": import_body,
                "responses": {**import_answers, **ok("the same file, imported before", "TrainResponse")},
            }
        },
    )
    spec.path(
        "/models/{model_key}/import",
        parameters=[_key_path()],
        operations={
            "post": {
                "tags": registry,
                "operationId": "import_version",
                "summary": "a model file as the next version of this model (same family)",
                "parameters": [p for p in _query_parameters(plugin, ImportParams) if p["name"] != "name"],
                "requestBody": import_body,
                "responses": import_answers,
            }
        },
    )
    predict_params = [p for p in _query_parameters(plugin, PredictParams, only_parquet=True) if p["name"] != "model_key"]
    spec.path(
        "/models/{model_key}/predict",
        parameters=[_key_path()],
        operations={
            "post": {
                "tags": own,
                "operationId": "predict",
                "summary": "predict with the latest done version (or `version`); another method through kwargs.method",
                "parameters": predict_params,
                "requestBody": predict_body,
                "responses": {**predict_answer, **_errors(*_DATA_ERRORS, "409", "504")},
            }
        },
    )
    spec.path(
        "/models/{model_key}/update",
        parameters=[_key_path()],
        operations={
            "post": {
                "tags": own,
                "operationId": "update",
                "summary": "update (partial_fit) the latest done version, making a new one",
                "parameters": [p for p in _query_parameters(plugin, UpdateParams, only_parquet=True) if p["name"] != "model_key"],
                "requestBody": _training_body("UpdateRequest"),
                "responses": {**ok("queued: the new version", "TrainResponse", "202"), **_errors(*_DATA_ERRORS, "409")},
            }
        },
    )
    spec.path(
        "/models/{model_key}/versions",
        parameters=[_key_path()],
        operations={
            "get": {
                "tags": own,
                "operationId": "versions",
                "summary": "every version of a model, newest first, with its metadata",
                "parameters": _query_parameters(plugin, VersionsQuery),
                "responses": {**ok("a page of versions", "VersionsResponse"), **_errors("401", "404", "422", "503")},
            }
        },
    )
    spec.path(
        "/models/{model_key}/versions/{version}",
        parameters=[_key_path(), {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}],
        operations={
            "get": {
                "tags": own,
                "operationId": "version",
                "summary": "one version of a model, with its metadata",
                "responses": {**ok("the version", "VersionResponse"), **_errors("401", "404", "422", "503")},
            },
            "patch": {
                "tags": registry,
                "operationId": "edit_version",
                "summary": "change a version's description or tags",
                "requestBody": {"required": True, "content": _json(ref("VersionPatch"))},
                "responses": {**ok("the version", "VersionResponse"), **_errors("401", "403", "404", "422", "503")},
            },
        },
    )
    spec.path(
        "/models/{model_key}/events",
        parameters=[_key_path()],
        operations={
            "get": {
                "tags": own,
                "operationId": "events",
                "summary": "the model's status events as server-sent events",
                "parameters": _query_parameters(plugin, EventsQuery),
                "responses": {
                    "200": {
                        "description": "an event stream: one `data:` line of JSON (StatusResponse) per status change",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors("401", "404", "503"),
                },
            }
        },
    )
    spec.path(
        "/events",
        operations={
            "get": {
                "tags": own,
                "operationId": "feed",
                "summary": "every model's status changes: server-sent events with `Accept: text/event-stream`, "
                "else the versions queued or running now",
                "parameters": _query_parameters(plugin, FeedQuery),
                "responses": {
                    "200": {
                        "description": "an event stream (`event: status` with a StatusResponse, `event: alias`) that lasts "
                        "until the client goes away; or, without `Accept: text/event-stream`, `{versions: [StatusResponse]}`",
                        "content": {
                            "text/event-stream": {"schema": {"type": "string"}},
                            **_json({"type": "object", "properties": {"versions": {"type": "array", "items": ref("StatusResponse")}}}),
                        },
                    },
                    **_errors("401", "422", "503"),
                },
            }
        },
    )
    open_ops: tuple[tuple[str, str, str, dict[str, Any], dict[str, Any]], ...] = (
        ("/healthz", "healthz", "the gateway process is up", _json(ref("HealthResponse")), {}),
        (
            "/readyz",
            "readyz",
            "broker and store reachable, and a consumer for every family in ML_SERVER_FAMILIES",
            _json(ref("ReadyResponse")),
            {"503": {"description": "not ready: what is missing is named", "content": _json(ref("ReadyResponse"))}},
        ),
        ("/openapi.json", "openapi", "this document", _json({"type": "object"}), {}),
        ("/docs", "docs", "the API documentation page (Swagger UI, served by the gateway)", {"text/html": {"schema": {"type": "string"}}}, {}),
        ("/ui", "dashboard", "the dashboard (it asks the API with the token typed into it)", {"text/html": {"schema": {"type": "string"}}}, {}),
    )
    for path, op_id, summary, content, extra in open_ops:
        spec.path(
            path,
            operations={
                "get": {
                    "tags": ["operations"],
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
                "tags": ["operations"],
                "operationId": "docs_asset",
                "summary": "a script, style sheet or icon of the docs page",
                "security": _OPEN,
                "responses": {"200": {"description": "the file"}, **_errors("404")},
            }
        },
    )
    spec.path(
        "/ui/",
        operations={
            "get": {
                "tags": ["operations"],
                "operationId": "dashboard_slash",
                "summary": "a permanent redirect to the dashboard at /ui",
                "security": _OPEN,
                "responses": {"308": {"description": "to /ui", "headers": {"Location": {"schema": {"type": "string"}}}}},
            }
        },
    )
    spec.path(
        "/ui/{asset}",
        parameters=[{"name": "asset", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(dashboard.ASSETS)}}],
        operations={
            "get": {
                "tags": ["operations"],
                "operationId": "dashboard_asset",
                "summary": "a script, style sheet or icon of the dashboard",
                "security": _OPEN,
                "responses": {"200": {"description": "the file"}, **_errors("404")},
            }
        },
    )
    spec.path(
        "/metrics",
        operations={
            "get": {
                "tags": ["operations"],
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
    # The dashboard's headers: this gateway's files only, no frames, no sniffing, no referrer.
    return web.Response(body=_PAGE, content_type="text/html", headers=dashboard.HEADERS)


@routes.get("/docs/{asset}")
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    if name not in _ASSETS:
        raise web.HTTPNotFound()
    headers = {**dashboard.HEADERS, "Cache-Control": "public, max-age=3600"}
    if name == "init.js":
        return web.Response(body=_INIT_JS, content_type=_ASSETS[name], headers=headers)
    return web.FileResponse(_swagger_ui_dir() / name, headers={**headers, "Content-Type": _ASSETS[name]})
