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

from pathlib import Path

from aiohttp import web

from . import events

UI = Path(__file__).with_name("ui")
PAGE = UI / "index.html"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page's files, by name: what `GET /ui/{asset}` serves, and nothing else.
ASSETS: dict[str, str] = {p.name: _TYPES[p.suffix] for p in sorted(UI.iterdir()) if p.suffix in _TYPES}

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

routes = web.RouteTableDef()


@routes.get("/ui")
async def page(request: web.Request) -> web.StreamResponse:
    """The dashboard."""
    return web.FileResponse(PAGE, headers={**HEADERS, "Content-Type": "text/html; charset=utf-8"})


@routes.get("/ui/")
async def slash(request: web.Request) -> web.StreamResponse:
    """`/ui/`, as people type it: the page is `/ui` (its files are named relative to it)."""
    raise web.HTTPPermanentRedirect("/ui")


@routes.get("/ui/{asset}")
async def asset(request: web.Request) -> web.StreamResponse:
    """A script, style sheet or icon of the dashboard."""
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(UI / name, headers={**HEADERS, "Content-Type": ASSETS[name]})


def setup(app: web.Application) -> None:
    """Serve the dashboard and the feed it follows; call before the seed's `/{family}` routes are added."""
    app.add_routes(routes)
    app.add_routes(events.feed)
