"""`ml-server-gateway` / `python -m gateway`: the REST gateway."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from contracts import schema
from contracts.settings import Settings, SettingsError

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
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    web.run_app(make_app(settings), host=settings.host, port=settings.port, print=None, shutdown_timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
