"""GET /openapi.json and GET /docs: a valid OpenAPI 3 document of every route, and a docs page served locally."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from openapi_spec_validator import validate

from contracts.settings import Settings
from gateway.app import make_app
from gateway.openapi import build

from .stack import Stack

# What would make a style sheet fetch from elsewhere (fonts, images, other sheets).
CSS_EXTERNAL = re.compile(rb"""url\(\s*["']?\s*(?:https?:)?//|@import\s+(?:url\()?["']?(?:https?:)?//""", re.I)


def _router_routes() -> set[tuple[str, str]]:
    app = make_app(Settings(data_dir=Path("/nonexistent"), broker_url="amqp://127.0.0.1:1/", database_url="sqlite://"))
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method in ("HEAD", "OPTIONS") or path is None:
            continue
        found.add((route.method.lower(), path))
    return found


def test_document_is_valid_openapi_3() -> None:
    document = build()
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_route_of_the_router_is_documented() -> None:
    document = build()
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops if method != "parameters"}
    routes = _router_routes()
    assert ("put", "/{family}") in routes and ("get", "/openapi.json") in routes  # the router was read
    assert routes - documented == set()


def test_document_describes_bodies_errors_and_security() -> None:
    document = build()
    fit = document["paths"]["/{family}"]["put"]
    assert set(fit["requestBody"]["content"]) == {"application/json", "application/vnd.apache.parquet"}
    assert fit["requestBody"]["content"]["application/vnd.apache.parquet"]["schema"] == {"type": "string", "format": "binary"}
    assert {p["name"] for p in fit["parameters"]} >= {"name", "modkwargs", "algkwargs", "retrain", "backend", "orient"}
    assert fit["responses"]["422"] == {"$ref": "#/components/responses/InvalidInput"}
    fit_schema = document["components"]["schemas"]["FitRequest"]
    assert set(fit_schema["required"]) == {"x"} and fit_schema["additionalProperties"] is False
    error = document["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert document["security"] == [{"bearer": []}]
    for public in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert document["paths"][public]["get"]["security"] == []
    assert "text/event-stream" in document["paths"]["/models/{model_key}/events"]["get"]["responses"]["200"]["content"]
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.mark.integration
def test_live_document_is_the_valid_one(stack: Stack) -> None:
    r = requests.get(f"{stack.url}/openapi.json", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    validate(r.json())
    assert r.json()["paths"].keys() == build()["paths"].keys()


@pytest.mark.integration
def test_docs_page_and_its_assets_load_from_the_gateway(stack: Stack) -> None:
    page_url = f"{stack.url}/docs"
    r = requests.get(page_url, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert not re.search(rb"https?://", r.content), "the docs page names an external URL"
    parser = _Links()
    parser.feed(r.text)
    kinds = {url.rsplit(".", 1)[-1] for url in parser.urls}
    assert {"css", "js"} <= kinds, parser.urls
    for url in parser.urls:
        absolute = urljoin(page_url, url)
        assert absolute.startswith(stack.url + "/"), absolute
        asset = requests.get(absolute, timeout=10)
        assert asset.status_code == 200, (url, asset.status_code)
        assert len(asset.content) > 0
        if url.endswith(".css"):  # the style sheet pulls in nothing from elsewhere
            assert not CSS_EXTERNAL.search(asset.content), f"{url} loads something from an external URL"
        if url.endswith(".js"):
            assert "javascript" in asset.headers["Content-Type"]
        if url.endswith(".css"):
            assert asset.headers["Content-Type"].startswith("text/css")
    init = requests.get(urljoin(page_url, "docs/init.js"), timeout=10)
    # Our initializer points Swagger UI at this gateway's document and turns off its online validator badge.
    assert b'url: "openapi.json"' in init.content and b"validatorUrl: null" in init.content
    assert not re.search(rb"https?://", init.content)
    assert requests.get(f"{stack.url}/docs/../../etc/passwd", timeout=10).status_code == 404
    assert requests.get(f"{stack.url}/docs/index.html", timeout=10).status_code == 404
