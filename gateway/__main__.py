"""`ml-server-gateway` / `python -m gateway`: the REST gateway."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from contracts import logs, schema
from contracts.loops import event_loop
from contracts.settings import Settings, SettingsError

from . import auth
from .app import make_app


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(
        prog="ml-server-gateway",
        description="The REST gateway: turns HTTP requests into RabbitMQ jobs. "
        "Settings come from ML_SERVER_* environment variables (see the README).",
    ).parse_args(argv)
    try:
        settings = Settings.from_env()
        if settings.database_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        schema.check(settings.database_url)
    except (SettingsError, schema.SchemaError) as e:
        print(f"ml-server-gateway: {e}", file=sys.stderr)
        return 2
    if not settings.tokens and not auth.is_loopback(settings.host) and not settings.allow_unauthenticated:
        print(
            f"ml-server-gateway: refusing to serve {settings.host} without authentication: set ML_SERVER_TOKENS "
            "(see `ml-server token`), or ML_SERVER_ALLOW_UNAUTHENTICATED=true if something in front of it checks access",
            file=sys.stderr,
        )
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if not settings.tokens:
        logging.getLogger(__name__).warning(
            "no ML_SERVER_TOKENS: anyone who can reach %s:%s may fit, predict and delete", settings.host, settings.port
        )
    web.run_app(
        make_app(settings), host=settings.host, port=settings.port, print=None, shutdown_timeout=10, loop=event_loop()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
