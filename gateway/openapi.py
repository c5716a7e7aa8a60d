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
from collections.abc import Iterable
from typing import Any, cast

import orjson
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from contracts import paths, responses
from contracts.searches import SearchAccepted, SearchRequest, SearchResponse
from contracts.schemas import (
    ALIAS_PATTERN,
    FAMILY_NAME,
    MODEL_KEY,
    AliasRequest,
    FitRequest,
    Frame,
    JsonDict,
    JsonList,
    ModelPatch,
    PredictRequest,
    UpdateRequest,
    VersionPatch,
)

from . import dashboard, v2_openapi
from .routing import ROUTES, Route, Scope

TAGS = [
    {"name": "seed", "description": "the original project's API: its client works unchanged"},
    {"name": "ml-server", "description": "models, versions and families as resources, with everything there is to know"},
    {"name": "registry", "description": "aliases, the serving alias, tags, descriptions, history, imported models"},
    {"name": "v2", "description": "the Open Inference Protocol (KServe V2, Triton's binary tensors): see docs/v2.md"},
    {"name": "operations", "description": "health, readiness, metrics, this document"},
]

# ---- custom fields -----------------------------------------------------------------


def _custom_fields(self: Any, field: fields.Field[Any], **kwargs: Any) -> dict[str, Any]:
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
    return cast("list[dict[str, Any]]", params)


# ---- the document --------------------------------------------------------------------

ERRORS = {
    401: ("Unauthorized", "a bearer token is needed (only when the gateway has ML_SERVER_TOKENS)"),
    403: ("Forbidden", "a read token on a write operation"),
    400: ("BadRequest", "a request the protocol's error answers as 400 (the Open Inference Protocol's routes)"),
    404: ("NotFound", "unknown family (no consumer registered it) or unknown model_key"),
    409: ("Conflict", "not trained yet, training failed, a stored model this server cannot load, or a state the change contradicts"),
    413: ("PayloadTooLarge", "body over its size limit"),
    415: ("UnsupportedMediaType", "a body that is neither JSON nor Parquet (or, for imports, neither skops nor ONNX)"),
    422: ("InvalidInput", "malformed input; `fields` names the offending fields"),
    503: ("Unavailable", "broker or store unreachable, or the gateway is at a limit; nothing was accepted"),
    504: ("DeadlineExceeded", "no consumer answered within ML_SERVER_PREDICT_TIMEOUT"),
}
PATH_PARAMETERS = {
    "family": ("a model family a consumer serves (see GET /families)", {"type": "string", "pattern": FAMILY_NAME.regex.pattern}),
    "model_key": ("the model's key", {"type": "string", "pattern": MODEL_KEY.regex.pattern}),
    "alias": ("an alias of the model", {"type": "string", "pattern": ALIAS_PATTERN}),
    "version": ("a version number", {"type": "integer", "minimum": 1}),
    "id": ("a search's id", {"type": "integer", "minimum": 1}),
    "asset": ("a file's name", {"type": "string"}),
}
REQUEST_SCHEMAS: tuple[type[Schema], ...] = (
    FitRequest, UpdateRequest, PredictRequest, AliasRequest, ModelPatch, VersionPatch, SearchRequest, SearchResponse, SearchAccepted
)
DESCRIPTION = (
    "Train and serve scikit-learn models: send a DataFrame (pandas JSON or Parquet), get a model_key, predict. Two "
    "contracts: the seed's `/{family}` verbs (tag `seed`), answered exactly as the original project answered them, and "
    "ml-server's own resources under `/models` and `/families` (tag `ml-server`). Errors are always "
    "`{error: {code, message, fields?}}`."
)


def _response_schemas() -> list[type[Schema]]:
    """Every schema of `contracts.responses`."""
    return [cls for cls in vars(responses).values() if isinstance(cls, type) and issubclass(cls, Schema) and cls is not Schema]


def _error(route: Route, status: int) -> dict[str, Any]:
    if route.error_answer is not None:
        return {"description": route.error_answer.description, "content": route.error_answer.content}
    return {"$ref": f"#/components/responses/{ERRORS[status][0]}"}


def _operation(plugin: MarshmallowPlugin, route: Route) -> dict[str, Any]:
    names = paths.placeholders(route.path)
    known = {**PATH_PARAMETERS, **route.parameters}
    parameters = [
        {"name": n, "in": "path", "required": True, "description": known[n][0],
         "schema": {"type": "string", "enum": route.enums[n]} if n in route.enums else known[n][1]}
        for n in names
    ] + list(route.headers)
    if route.query is not None:
        parameters += [p for p in _query_parameters(plugin, route.query, only_parquet=route.parquet_query) if p["name"] not in names]
    answers = {
        str(status): {"description": a.description, **({"content": a.content} if a.content else {}), **({"headers": a.headers} if a.headers else {})}
        for status, a in route.answers.items()
    }
    operation: dict[str, Any] = {
        "tags": [route.tag],
        "operationId": route.name,
        "summary": route.summary,
        "parameters": parameters,
        "responses": {**answers, **{str(s): _error(route, s) for s in route.errors}},
    }
    if route.description:
        operation["description"] = route.description
    if route.body is not None:
        operation["requestBody"] = {"required": route.body_required, "content": route.body, **({"description": route.body_description} if route.body_description else {})}
    if route.scope is Scope.OPEN:
        operation["security"] = []
    return operation


def build(table: Iterable[Route] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the route table (by default, the gateway's)."""
    if table is None:
        from .table import ROUTES as GATEWAY  # the table names this module's handlers

        table = GATEWAY
    try:
        release = version("ml-server")
    except PackageNotFoundError:  # running from a source tree that was never installed
        release = "0.0.0"
    plugin = MarshmallowPlugin()
    spec = APISpec(title="ml-server", version=release, openapi_version="3.0.3", plugins=[plugin], info={"description": DESCRIPTION}, tags=TAGS)
    plugin.converter.add_attribute_function(_custom_fields)  # type: ignore[union-attr]
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "a token from `ml-server token`; needed only when ML_SERVER_TOKENS is set"}
    )
    for schema in (*REQUEST_SCHEMAS, *_response_schemas()):
        spec.components.schema(schema.__name__, schema=schema)
    for name, json_schema in v2_openapi.SCHEMAS.items():  # the protocol's own bodies, as JSON Schema
        spec.components.schema(name, json_schema)
    for name, description in ERRORS.values():
        spec.components.response(name, {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}})
    operations: dict[str, dict[str, Any]] = {}
    for route in table:
        operations.setdefault(route.path, {})[route.method.lower()] = _operation(plugin, route)
    for path, ops in operations.items():
        spec.path(path, operations=ops)
    document = spec.to_dict()
    document["security"] = [{"bearer": []}]
    return document


@functools.cache
def document_bytes(table: Iterable[Route]) -> bytes:
    return orjson.dumps(build(table))


# ---- routes ----------------------------------------------------------------------------

# The docs page's files: Swagger UI from the swagger-ui-bundle package, and our initializer.
ASSETS = {
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
  <p style="font-family: sans-serif; margin: 1em 2em">The REST API below; the AMQP message contract (publishing
  straight to RabbitMQ) is the AsyncAPI document <a href="asyncapi.json">asyncapi.json</a>.</p>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""


def _swagger_ui_dir() -> Path:
    import swagger_ui_bundle  # the files of Swagger UI, shipped in a wheel

    return Path(swagger_ui_bundle.swagger_ui_path)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(request.app[ROUTES]), content_type="application/json")


async def docs(request: web.Request) -> web.Response:
    # The dashboard's headers: this gateway's files only, no frames, no sniffing, no referrer.
    return web.Response(body=_PAGE, content_type="text/html", headers=dashboard.HEADERS)


async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    headers = {**dashboard.HEADERS, "Cache-Control": "public, max-age=3600"}
    if name == "init.js":
        return web.Response(body=_INIT_JS, content_type=ASSETS[name], headers=headers)
    return web.FileResponse(_swagger_ui_dir() / name, headers={**headers, "Content-Type": ASSETS[name]})
