"""The REST gateway: aiohttp in front of RabbitMQ and the SQL store.

`make_app` is loaded on first use, so the `ml-server` command line starts without the gateway's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["make_app"]

if TYPE_CHECKING:
    from .app import make_app


def __getattr__(name: str) -> Any:
    if name == "make_app":
        from .app import make_app

        return make_app
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
