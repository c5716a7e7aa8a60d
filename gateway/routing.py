"""What a row of the route table says about a route, and how the gateway finds the row of a request.

The table itself is `gateway.table.ROUTES`. The app registers its routes
from it, the auth middleware reads a route's scope from it, the metrics
middleware its label, and `openapi.build` generates the document from it.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from marshmallow import Schema

from contracts.frames import PARQUET

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Scope(str, enum.Enum):
    """Who may call a route when the gateway has tokens: anyone, a read token, or a write token."""

    OPEN = "open"
    READ = "read"
    WRITE = "write"


# Content of a body or an answer, by media type: what the OpenAPI document says of it.
Content = dict[str, dict[str, Any]]
BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
TEXT: dict[str, Any] = {"schema": {"type": "string"}}


def ref(schema: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{schema}"}


def json(schema: str | dict[str, Any]) -> Content:
    return {"application/json": {"schema": ref(schema) if isinstance(schema, str) else schema}}


def frames(schema: str) -> Content:
    """A JSON body in the seed's format, or a Parquet body with the other fields in the query string."""
    return {**json(schema), PARQUET: BINARY}


@dataclass(frozen=True)
class Answer:
    description: str
    content: Content = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """One route: what serves it, who may call it, what it is counted as, and what it takes and answers."""

    method: str
    path: str  # from contracts.paths
    handler: Handler
    scope: Scope
    tag: str
    summary: str
    answers: dict[int, Answer]
    errors: Sequence[int] = ()
    label: str = "other"  # the `verb` of the request metrics: fit, predict, update, status, delete, other
    description: str | None = None
    query: type[Schema] | None = None  # query parameters
    parquet_query: bool = False  # the query carries the fields only with a Parquet body
    body: Content | None = None
    body_description: str | None = None
    body_required: bool = True
    operation_id: str | None = None
    enums: dict[str, list[str]] = field(default_factory=dict)  # path parameters with a fixed set of values
    parameters: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # path parameters of its own: (description, schema)
    headers: Sequence[dict[str, Any]] = ()  # header parameters, as OpenAPI spells them
    error_answer: Answer | None = None  # errors in a protocol's own shape, instead of ml-server's error body

    @property
    def name(self) -> str:
        return self.operation_id or self.handler.__name__


class Table:
    """The rows, and the lookup of a matched request's row (by its resource's path and method)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self._rows = {(r.method, r.path): r for r in self.routes}
        assert len(self._rows) == len(self.routes), "a route is in the table twice"

    def __iter__(self) -> Any:
        return iter(self.routes)

    def register(self, app: web.Application) -> None:
        for r in self.routes:
            if r.method == "GET":
                app.router.add_get(r.path, r.handler)  # and HEAD
            else:
                app.router.add_route(r.method, r.path, r.handler)

    def row(self, request: web.Request) -> Route | None:
        """The row of the route that matched the request; None when none did (a 404)."""
        resource = request.match_info.route.resource
        if resource is None:
            return None
        method = "GET" if request.method == "HEAD" else request.method
        return self._rows.get((method, resource.canonical))


# The app's table, for the middlewares (auth's scopes, metrics' labels) and the OpenAPI handler.
ROUTES = web.AppKey("routes", Table)


def scope_of(request: web.Request) -> Scope:
    """The scope the request's route asks for; a request no route matched needs a read token (then gets its 404)."""
    row = request.app[ROUTES].row(request)
    return row.scope if row is not None else Scope.READ
