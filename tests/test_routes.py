"""The route table is the only home of the HTTP surface: paths are spelled in `contracts.paths` alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import requests

from contracts import paths
from contracts.settings import Settings
from gateway.app import make_app
from gateway.dashboard import PATHS_JS
from gateway.openapi import build
from gateway.routing import Scope
from gateway.table import ROUTES

from .stack import ROOT, Stack

API_ROOTS = sorted({"/" + p.strip("/").split("/")[0] for p in paths.constants().values() if p != paths.SEED})
# A string is a path literal when it is one of the API's first segments, alone or with more after a slash.
PATH_LITERAL = re.compile(r"^(%s)(/|$|\?)" % "|".join(re.escape(r) for r in API_ROOTS))
PACKAGES = ["gateway", "client", "consumers", "benchmarks"]


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def python_path_literals() -> list[str]:
    found = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            if any(part.startswith(".") for part in file.relative_to(ROOT).parts):
                continue  # a virtual environment of the benchmark's (MLServer's), not ours
            tree = ast.parse(file.read_text())
            skip = _docstrings(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                    if PATH_LITERAL.match(node.value):
                        found.append(f"{file.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    return found


def script_path_literals() -> list[str]:
    """Quoted API paths in the dashboard's scripts (app.js routes the page's own `#/models` views, not the API)."""
    quoted = re.compile(r"""["'`](/[A-Za-z_.]+[^"'`]*)["'`]""")
    found = []
    for file in sorted((ROOT / "gateway" / "ui").glob("*.js")):
        if file.name == "app.js":
            continue
        for n, line in enumerate(file.read_text().splitlines(), 1):
            found += [f"{file.relative_to(ROOT)}:{n}: {m}" for m in quoted.findall(line) if PATH_LITERAL.match(m)]
            found += [f"{file.relative_to(ROOT)}:{n}: {m}" for m in re.findall(r"\bpath\([^)]*\)", line)]  # a path built from its segments
    return found


def test_no_path_literal_outside_contracts() -> None:
    assert python_path_literals() == []
    assert script_path_literals() == []


def test_the_check_finds_a_literal(tmp_path: Path) -> None:
    """The scan above can fail: it sees a path in code, in an f-string, and in a script."""
    assert PATH_LITERAL.match("/models/{model_key}/versions") and PATH_LITERAL.match("/readyz")
    assert not PATH_LITERAL.match("/proc/1/status") and not PATH_LITERAL.match("/usr/bin/chromium")
    tree = ast.parse('x = f"/models/{key}/predict"')
    assert any(isinstance(n, ast.Constant) and PATH_LITERAL.match(str(n.value)) for n in ast.walk(tree))


def _app_routes() -> set[tuple[str, str]]:
    app = make_app(Settings(data_dir=Path("/nonexistent"), broker_url="amqp://127.0.0.1:1/", database_url="sqlite://"))
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path is not None:
            found.add((route.method, path))
    return found


def test_the_app_serves_exactly_the_table() -> None:
    assert _app_routes() == {(r.method, r.path) for r in ROUTES}
    documented = {(m.upper(), p) for p, ops in build()["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in ROUTES}


def test_scopes_are_what_the_routes_do() -> None:
    """Every change needs a write token; a read token reads and predicts; the open routes hold no data."""
    for r in ROUTES:
        if r.method in ("PUT", "PATCH", "DELETE"):
            assert r.scope is Scope.WRITE, r
        if r.scope is Scope.OPEN:
            assert r.method == "GET" and r.path != paths.METRICS, r
            assert r.tag == "operations" or r.path in (paths.V2_LIVE, paths.V2_READY), r  # probes, documents, pages
    reads = {r.path for r in ROUTES if r.method == "POST" and r.scope is Scope.READ}
    assert reads == {paths.MODEL_PREDICT, paths.SEED, paths.V2_INFER, paths.V2_VERSION_INFER, paths.V2_INDEX}


@pytest.mark.integration
def test_the_dashboard_reads_the_paths_from_the_gateway(stack: Stack) -> None:
    r = requests.get(f"{stack.url}{paths.UI}/paths.js", timeout=10)
    assert r.status_code == 200 and "javascript" in r.headers["Content-Type"]
    assert r.content == PATHS_JS
    for name, value in paths.constants().items():
        assert f'"{name}": "{value}"' in r.text
    scripts = " ".join(f.read_text() for f in (ROOT / "gateway" / "ui").glob("*.js"))
    assert 'from "./paths.js"' in scripts
