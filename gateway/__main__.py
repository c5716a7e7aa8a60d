"""`ml-server-gateway` / `python -m gateway`: the REST gateway."""

from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

from service import logs, schema
from service.loops import event_loop
from contracts.settings import Settings, SettingsError

from . import auth, metrics, workers
from .app import make_app


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="ml-server-gateway",
        description="The REST gateway: turns HTTP requests into RabbitMQ jobs. "
        "Settings come from ML_SERVER_* environment variables (see the README).",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N gateway processes on the port (SO_REUSEPORT), their /metrics summed (default 1)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of the --workers processes
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
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
    if not settings.tokens and not args.worker:
        logging.getLogger(__name__).warning(
            "no ML_SERVER_TOKENS: anyone who can reach %s:%s may fit, predict and delete", settings.host, settings.port
        )
    if args.workers > 1:
        return workers.supervise(args.workers, dict(os.environ))
    metrics.configure(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    web.run_app(
        make_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=10,
        loop=event_loop(),
        reuse_port=args.worker or None,  # the port is shared with the other workers
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
