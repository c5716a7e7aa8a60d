"""`ml-server`: the command line.

    ml-server run [--families a,b]   the gateway and one consumer process for every family, for local use
                  [--gateways N]     N gateway processes on the port
    ml-server gateway [--workers N]  the REST gateway alone (N processes on its port)
    ml-server consumer FAMILY ...    a consumer process serving these families (or --all)
    ml-server migrate                apply the store's schema migrations
    ml-server token [--scope read]   make a bearer token and its settings entry
    ml-server fit FAMILY DATA        train on a CSV or Parquet file (and predict, status: see commands/client.py)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

from contracts import paths
from contracts.settings import Settings, SettingsError, ensure_secret_file
from service import logs

from . import client as client_cli

log = logging.getLogger("ml-server")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ml-server", description="Train and serve scikit-learn models over REST and RabbitMQ.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="start the gateway and a consumer process for every family (local use)",
        description="Migrate the store, start the gateway and one consumer process serving every family "
        "(or one per family), say `ready` once every family has a consumer, restart consumers that die, "
        "and stop everything on Ctrl-C or SIGTERM. Without ML_SERVER_SECRET(_FILE), a signing key is "
        "generated into <data dir>/secret.",
    )
    run.add_argument(
        "--families",
        default=None,
        help="comma-separated families to serve: names or module:attribute (default: ML_SERVER_FAMILIES, "
        "else every built-in family)",
    )
    run.add_argument(
        "--process-per-family",
        action="store_true",
        help="one consumer process per family (default: one consumer process serves them all)",
    )
    run.add_argument(
        "--gateways",
        type=int,
        default=1,
        metavar="N",
        help="gateway processes on the port (SO_REUSEPORT), their /metrics summed (default 1)",
    )
    sub.add_parser(
        "migrate",
        help="bring the store (ML_SERVER_DATABASE_URL) to this version's schema",
        description="Apply the store's schema migrations (Alembic) up to this version of ml-server. "
        "The gateway and the consumers refuse to start on a store that is behind.",
    )
    token = sub.add_parser(
        "token",
        help="make a bearer token for the gateway",
        description="Print a new random bearer token and the ML_SERVER_TOKENS entry (its SHA-256) that makes "
        "the gateway accept it. Give the token to the client; put only the entry in the gateway's settings.",
    )
    token.add_argument("--scope", choices=["read", "write"], default="write", help="read: status, predict, listings; write: also fit, update, delete")
    token.add_argument("--name", default=None, help="who holds the token (letters, digits, . _ @ -): recorded in models' history")
    purge = sub.add_parser(
        "delete-namespace",
        help="delete a namespace's queues and exchanges from the broker",
        description="Delete what ml-server declared on the broker under ML_SERVER_NAMESPACE: every family's train, "
        "predict and dead-letter queue, with the jobs waiting in them, and the namespace's exchanges. Run it with "
        "the gateway and consumers of that namespace stopped (they declare everything again as they start).",
    )
    purge.add_argument("--families", default=None, help="comma-separated families (default: every built-in one and ML_SERVER_FAMILIES)")
    purge.add_argument("--yes", action="store_true", help="delete; without it, only print what would be deleted")
    client_cli.add_parsers(sub)
    sub.add_parser("gateway", help="start the REST gateway", add_help=False)
    sub.add_parser("consumer", help="start a consumer process: ml-server consumer FAMILY [FAMILY ...] | --all", add_help=False)
    args, rest = p.parse_known_args(argv)
    if args.command == "gateway":
        from gateway.__main__ import main as gateway_main

        return gateway_main(rest)
    if args.command == "consumer":
        from consumers.__main__ import main as consumer_main

        return consumer_main(rest)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command in client_cli.COMMANDS:
        return client_cli.run(args)
    if args.command == "migrate":
        return _migrate()
    if args.command == "delete-namespace":
        return _delete_namespace(args.families, args.yes)
    if args.command == "token":
        from gateway.auth import new_token

        secret, entry = new_token(args.scope, args.name)
        print(f"token:            {secret}\nML_SERVER_TOKENS: {entry}")
        return 0
    if args.gateways < 1:
        p.error("--gateways must be at least 1")
    return _run(args.families, args.process_per_family, args.gateways)


def _migrate() -> int:
    from service import schema

    try:
        settings = Settings.from_env()
        if settings.database_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        logs.configure(settings.log_level, settings.log_format)
        revision = schema.upgrade(settings.database_url)
    except SettingsError as e:
        print(f"ml-server: {e}", file=sys.stderr)
        return 2
    log.info("the store is at schema revision %s", revision)
    return 0


def _delete_namespace(families_arg: str | None, yes: bool) -> int:
    import asyncio

    import aio_pika

    from contracts import amqp
    from contracts.topology import Topology

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"ml-server: {e}", file=sys.stderr)
        return 2
    from contracts.families import BUILTIN

    specs = [f for f in families_arg.split(",") if f] if families_arg else [*BUILTIN, *settings.families]
    families = list(dict.fromkeys(f.rsplit(":", 1)[-1] for f in specs))  # module:attribute: the attribute's name
    topology = Topology(settings.namespace)
    names = [q for f in families for q in topology.family_queues(f)]
    names += [topology.jobs_exchange, topology.events_exchange, topology.dead_exchange]
    if not yes:
        print("would delete (run again with --yes):\n  " + "\n  ".join(names))
        return 0

    async def delete() -> None:
        async with await aio_pika.connect(settings.broker_url) as connection:
            await amqp.delete_namespace(connection, topology, families)

    asyncio.run(delete())
    print(f"deleted the queues and exchanges of namespace {settings.namespace!r} ({len(names)} names)")
    return 0


def metrics_ports(base: int, consumers: list[str]) -> dict[str, int]:
    """Each consumer process's own /metrics port under `ml-server run`: base, base + 1, …; all 0 (none) when base is 0."""
    return {name: base + i if base else 0 for i, name in enumerate(consumers)}


def consumer_commands(families: list[str], per_family: bool) -> dict[str, list[str]]:
    """The consumer processes `ml-server run` starts: one for every family, or one per family."""
    if per_family:
        return {f"consumer {f}": [sys.executable, "-m", "consumers", f] for f in families}
    return {"consumer": [sys.executable, "-m", "consumers", *families]}


def expected(families: list[str]) -> list[str]:
    """The names the gateway can expect: every spec but `module:attribute` ones, whose name only their module knows."""
    return [f for f in families if ":" not in f]


def gateway_command(gateways: int) -> list[str]:
    """The gateway `ml-server run` starts: one process, or a supervisor of `gateways` on one port."""
    return [sys.executable, "-m", "gateway", *(["--workers", str(gateways)] if gateways > 1 else [])]


def _run(families_arg: str | None, per_family: bool, gateways: int = 1) -> int:
    from contracts.families import BUILTIN

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"ml-server: {e}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if not settings.secret and not settings.secret_file:
        env["ML_SERVER_SECRET_FILE"] = str(ensure_secret_file(settings.data_dir / "secret"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logs.configure(settings.log_level, settings.log_format)
    started = time.monotonic()
    # Local use: bring the store up to date before starting (in a child: this process stays small).
    if subprocess.run([sys.executable, "-m", "commands", "migrate"], env=env).returncode != 0:
        return 2
    if families_arg:
        families = list(dict.fromkeys(f.strip() for f in families_arg.split(",") if f.strip()))
    else:
        families = list(settings.families or BUILTIN)
    env["ML_SERVER_FAMILIES"] = ",".join(expected(families))
    # Local use: the fit processes' server starts in the background, so that the first fit does not wait for it.
    env.setdefault("ML_SERVER_FIT_POOL_WARM", "true")

    commands = {"gateway": gateway_command(gateways), **consumer_commands(families, per_family)}
    consumers = [name for name in commands if name != "gateway"]
    ports = metrics_ports(settings.metrics_port, consumers)
    envs = {name: {**env, "ML_SERVER_METRICS_PORT": str(ports[name])} if name in ports else env for name in commands}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(name: str) -> subprocess.Popen[bytes]:
        # A process group of its own: a terminal's Ctrl-C reaches this process alone, which then stops the
        # children with SIGTERM (a child still importing, a forkserver say, would die in a traceback).
        return subprocess.Popen(commands[name], env=envs[name], process_group=0)

    for name in commands:
        procs[name] = start(name)
    base = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
    log.info(
        "starting the gateway on %s and %s serving %s%s",
        base,
        "a consumer process per family" if per_family else "one consumer process",
        ", ".join(families),
        f" (consumer metrics on port {', '.join(str(p) for p in ports.values())})" if settings.metrics_port else "",
    )
    code = 0
    ready = False
    while not stopping:
        time.sleep(0.2 if not ready else 0.5)
        if stopping:
            break
        if not ready and _ready(base):
            ready = True
            log.info("ready in %.1fs: %s serves %s", time.monotonic() - started, base, ", ".join(families))
        for name, proc in list(procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            if name == "gateway":
                log.error("the gateway exited with %s; stopping", rc)
                stopping, code = True, rc or 1
                break
            log.warning("%s exited with %s; restarting it", name, rc)
            procs[name] = start(name)
    if not code:
        log.info("stopping")
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    return code


def _ready(base: str) -> bool:
    """The gateway's `/readyz`: broker and store there, and a consumer on every family's queues."""
    try:
        with urllib.request.urlopen(base + paths.READYZ, timeout=1) as r:
            return bool(r.status == 200)
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
