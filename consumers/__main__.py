"""`ml-server-consumer FAMILY` / `python -m consumers FAMILY`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from contracts import schema
from contracts.settings import Settings, SettingsError

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
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve(settings, family, args.family))


async def _serve(settings: Settings, family, spec: str) -> int:  # type: ignore[no-untyped-def]
    worker = Worker(settings, family, spec)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)
    await worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
