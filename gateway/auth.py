"""Bearer-token auth: a `read` scope (status, predict, listings) and a `write` scope (also fit, update, delete).

Tokens are configured as SHA-256 hashes (`ML_SERVER_TOKENS=write:<hex>,read:<hex>`),
so the settings never hold a usable secret. Without tokens the gateway is open,
which it only allows on a loopback address unless told otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from contracts.errors import Forbidden, Unauthorized
from contracts.settings import Settings

from .routing import Scope, scope_of

def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(scope: str, name: str | None = None) -> tuple[str, str]:
    """A fresh token and the `scope:hash[:name]` entry that makes the gateway accept it."""
    token = secrets.token_urlsafe(32)
    return token, f"{scope}:{digest(token)}" + (f":{name}" if name else "")


def holder_of(settings: Settings, token: str) -> tuple[str, str] | None:
    """(scope, holder's name) of a presented token; None when it is not one of the configured tokens."""
    presented = digest(token)
    for scope, expected, holder in settings.tokens:
        if hmac.compare_digest(presented, expected):
            return scope, holder
    return None


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def middleware(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        needed = scope_of(request)
        if not settings.tokens or needed is Scope.OPEN:
            return await handler(request)
        kind, _, token = request.headers.get("Authorization", "").partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Unauthorized("this gateway needs `Authorization: Bearer <token>`")
        found = holder_of(settings, token.strip())
        if found is None:
            raise Unauthorized("the bearer token is not valid")
        scope, request["actor"] = found
        if scope != "write" and needed is Scope.WRITE:
            raise Forbidden(f"a {scope} token may not {request.method} {request.path} (fit, update and delete need a write token)")
        return await handler(request)

    return auth
