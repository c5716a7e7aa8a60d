"""`ml-server-consumer FAMILY` / `python -m consumers FAMILY`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from contracts import frames, logs, schema
from contracts.settings import Settings, SettingsError

from . import metrics
from .families import FamilyError, load_family
from .worker import Worker


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ml-server-consumer",
        description="Serve one model family: fit and update jobs from its train queue, predicts from its predict queue. "
        "Run as many processes per family as you like; RabbitMQ spreads the work. "
        "Settings come from ML_SERVER_* environment variables (see the README).",
    )
    p.add_argument("family", help="built-in family name (logreg, linreg, nn, ...), an entry point name, or module:attribute")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        settings.signing_key()
        family = load_family(args.family)
        schema.check(settings.database_url)
    except (SettingsError, FamilyError, schema.SchemaError) as e:
        print(f"ml-server-consumer: {e}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    return asyncio.run(_serve(settings, family, args.family))


async def _serve(settings: Settings, family, spec: str) -> int:  # type: ignore[no-untyped-def]
    frames.set_max_columns(settings.max_columns)
    worker = Worker(settings, family, spec)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)
    exporter = await metrics.serve(settings.metrics_host, settings.metrics_port)
    try:
        await worker.run()
    finally:
        if exporter is not None:
            await exporter.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
