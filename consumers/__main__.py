"""`ml-server-consumer FAMILY [FAMILY ...]` / `ml-server-consumer --all` / `python -m consumers ...`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from contracts import frames
from service import logs, schema
from service.loops import event_loop
from contracts.settings import Settings, SettingsError

from . import metrics, pool
from .families import BUILTIN, Family, FamilyError, load_family, registered
from .worker import Consumer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ml-server-consumer",
        description="Serve model families from one process: fit and update jobs from each family's train queue, "
        "predicts from its predict queue; fits run in processes of their own. Run as many processes per "
        "family as you like; RabbitMQ spreads the work. Settings come from ML_SERVER_* environment "
        "variables (see the README).",
    )
    p.add_argument(
        "families",
        nargs="*",
        metavar="FAMILY",
        help="built-in family name (logreg, linreg, nn, ...), an entry point name, or module:attribute",
    )
    p.add_argument("--all", action="store_true", help="every built-in family and every one installed through the entry point group")
    return p


def specs(args: argparse.Namespace) -> list[str]:
    chosen = list(args.families)
    if args.all:
        chosen = [*BUILTIN, *registered(), *chosen]
    return list(dict.fromkeys(chosen))


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    chosen = specs(args)
    if not chosen:
        p.error("name at least one family, or --all")
    try:
        settings = Settings.from_env()
        settings.signing_key()
        families = [(load_family(spec), spec) for spec in chosen]
        names = [f.name for f, _ in families]
        if len(set(names)) != len(names):
            raise FamilyError(f"a family is named twice: {names}")
        schema.check(settings.database_url)
    except (SettingsError, FamilyError, schema.SchemaError) as e:
        print(f"ml-server-consumer: {e}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    # Before the fork server: fit and predict processes decode frames under the same caps.
    frames.set_limits(
        columns=settings.max_columns, rows=settings.max_rows, frame_bytes=settings.max_frame_bytes, json_frame=settings.max_json_frame
    )
    # Before any thread or event loop: fit processes fork from a copy of this process.
    pool.fork_server(family for family, _ in families)
    with asyncio.Runner(loop_factory=event_loop) as runner:
        return runner.run(_serve(settings, families))


async def _serve(settings: Settings, families: list[tuple[Family, str]]) -> int:
    consumer = Consumer(settings, families)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stopping.set)
    exporter = await metrics.serve(settings.metrics_host, settings.metrics_port)
    try:
        await consumer.run()
    finally:
        if exporter is not None:
            await exporter.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
