"""The dashboard at `GET /ui`: a page and its files, served from the package (`gateway/ui/`).

The page is plain HTML, CSS and JavaScript modules (no build step, nothing
loaded from elsewhere: its Content-Security-Policy allows this gateway only).
It holds no data of its own: everything it shows it asks of the JSON API,
with the bearer token typed into it (kept in the browser tab's
sessionStorage), so the files are public like `/docs` and every answer is
behind the same scopes as for any other client. Its list follows `GET
/events`, the feed of every model's status changes (`events.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from contracts import paths


UI = Path(__file__).with_name("ui")
PAGE = UI / "index.html"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page's files, by name: what `GET /ui/{asset}` serves, and nothing else; `paths.js` is made from
# `contracts.paths`, so the page calls the API by the same paths as every other client.
GENERATED = "paths.js"
ASSETS: dict[str, str] = {p.name: _TYPES[p.suffix] for p in sorted(UI.iterdir()) if p.suffix in _TYPES} | {GENERATED: _TYPES[".js"]}
PATHS_JS = (
    "// Made by the gateway from contracts/paths.py: every path of the API, spelled once.\n"
    f"export const PATHS = Object.freeze({json.dumps(paths.constants(), indent=2, sort_keys=True)});\n\n"
    "/** The path with each {name} replaced by its value, quoted for a URL. */\n"
    "export const fill = (path, values) =>\n"
    "  path.replace(/\\{(\\w+)\\}/g, (_, name) => encodeURIComponent(String(values[name])));\n"
).encode()

# Only this gateway's own files and API; no frames, no plug-ins, no inline script.
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Revalidated on every load (a 304 when unchanged): files without a build step have no versioned names.
HEADERS = {
    "Content-Security-Policy": _POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

async def page(request: web.Request) -> web.StreamResponse:
    """The dashboard."""
    return web.FileResponse(PAGE, headers={**HEADERS, "Content-Type": "text/html; charset=utf-8"})


async def slash(request: web.Request) -> web.StreamResponse:
    """`/ui/`, as people type it: the page is `/ui` (its files are named relative to it)."""
    raise web.HTTPPermanentRedirect(paths.UI)


async def asset(request: web.Request) -> web.StreamResponse:
    """A script, style sheet or icon of the dashboard."""
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    if name == GENERATED:
        return web.Response(body=PATHS_JS, headers={**HEADERS, "Content-Type": ASSETS[name]})
    return web.FileResponse(UI / name, headers={**HEADERS, "Content-Type": ASSETS[name]})
