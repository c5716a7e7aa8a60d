"""The processes a run starts (gateway, `logreg` consumer, echo server, MLServer), and the broker namespace
they use: started here, stopped in reverse order, their queues and exchanges deleted at the end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from contracts import paths

from .common import BROKER_URL, FAMILY, ROOT, Fatal, free_port, wait_for


class Processes:
    """Child processes started by this run, each in a session of its own, stopped in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        p = self.workdir / f"{name}.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def stop_since(self, index: int) -> None:
        """Stop the processes started after the first `index` ones (SIGTERM, SIGKILL to their group after 15 s)."""
        later, self.procs = self.procs[index:], self.procs[:index]
        for _, p in later:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in later:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop(self) -> None:
        """SIGTERM to each, then SIGKILL to the process group of any still running after 15 s (a consumer's
        fit processes, MLServer's workers)."""
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for _, p in self.procs:  # children left in a stopped process's group
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def purge_namespace(namespace: str) -> None:
    """Delete the queues and exchanges this run declared on the broker (only names under its namespace).

    Reply and event queues are exclusive: they went with their connections."""
    import aio_pika

    from contracts import amqp
    from contracts.topology import Topology

    from .echo import exchange_name

    async def purge() -> None:
        async with await aio_pika.connect(BROKER_URL) as connection:
            echo = exchange_name(namespace)  # the echo floor's queue and exchange
            await amqp.delete_namespace(connection, Topology(namespace), [FAMILY], queues=[echo], exchanges=[echo])

    asyncio.run(purge())


def leftovers(namespace: str) -> list[str]:
    """Queues and exchanges still on the broker under this run's namespace (rabbitmqctl; [] when it can't tell)."""
    found: list[str] = []
    for what in ("list_queues", "list_exchanges"):
        try:
            out = subprocess.run(["rabbitmqctl", "-q", what, "name"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        found += [line.strip() for line in out.splitlines() if line.strip().startswith(namespace + ".")]
    return found


def consumers_on(namespace: str, queues: list[str], count: int = 1) -> bool:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "consumers"], capture_output=True, text=True, timeout=30).stdout
    have = dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)
    return all(int(have.get(f"{namespace}.{q}", 0)) >= count for q in queues)


def stack_env(workdir: Path, namespace: str) -> dict[str, str]:
    """The settings every process of a run shares (its store, broker and namespace)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_DATA_DIR": str(workdir / "data"),
        "ML_SERVER_DATABASE_URL": f"sqlite:///{workdir / 'data' / 'ml-server.db'}",
        "ML_SERVER_BROKER_URL": BROKER_URL,
        "ML_SERVER_NAMESPACE": namespace,
        "ML_SERVER_LOG_LEVEL": "WARNING",
        "ML_SERVER_METRICS_PORT": "0",  # no consumer /metrics: a fixed port may be taken by another stack on this machine
    }


def start_gateway(procs: Processes, workdir: Path, namespace: str, workers: int) -> str:
    """Another gateway of the run's stack, `workers` processes on a port of its own (`--workers`); its URL."""
    import requests

    port = free_port()
    name = f"gateway-x{workers}"
    gateway = procs.spawn(name, [sys.executable, "-m", "gateway", "--workers", str(workers)], {**stack_env(workdir, namespace), "ML_SERVER_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if gateway.poll() is not None:
            raise Fatal(f"{name} exited with {gateway.returncode}:\n{procs.log(name)}")
        # Every process listening (a socket each, SO_REUSEPORT), and ready.
        return listeners(port) == workers and bool(requests.get(url + paths.READYZ, timeout=2).ok)

    wait_for(ready, 90, f"{workers} gateway processes", interval=0.3)
    return url


def listeners(port: int) -> int:
    """Sockets listening on a TCP port of this machine (from /proc/net/tcp; state 0A is LISTEN)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                count += 1
    return count


def start_stack(
    procs: Processes, workdir: Path, namespace: str, *, family: str = FAMILY, consumers: int = 1, **env: str
) -> tuple[str, dict[str, int]]:
    """A gateway and `consumers` consumer processes of `family` (SQLite in `workdir` unless `env` names another store,
    a free port), once the gateway is ready and every consumer is on the queues; its URL and their pids."""
    import requests

    port = free_port()
    env = {**stack_env(workdir, namespace), "ML_SERVER_PORT": str(port), "ML_SERVER_SECRET": uuid.uuid4().hex, **env}
    subprocess.run([sys.executable, "-m", "commands", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    started = {"gateway": procs.spawn("gateway", [sys.executable, "-m", "gateway"], env)}
    for i in range(consumers):
        name = "consumer" if i == 0 else f"consumer-{i}"
        started[name] = procs.spawn(name, [sys.executable, "-m", "consumers", family], env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        for name, p in started.items():
            if p.poll() is not None:
                raise Fatal(f"{name} exited with {p.returncode}:\n{procs.log(name)}")
        queues = [f"{family}.train", f"{family}.predict"]
        return bool(requests.get(url + paths.READYZ, timeout=2).ok) and consumers_on(namespace, queues, consumers)

    wait_for(ready, 120, f"the gateway and {consumers} {family} consumer(s)", interval=0.3)
    return url, {name: p.pid for name, p in started.items()}


def start_echo(procs: Processes, namespace: str) -> None:
    """The echo RPC server (the broker floor), ready to answer."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    echo = procs.spawn("echo", [sys.executable, "-m", "benchmarks.echo", namespace], env)

    def ready() -> bool:
        if echo.poll() is not None:
            raise Fatal(f"the echo server exited with {echo.returncode}:\n{procs.log('echo')}")
        return "ready" in procs.log("echo")

    wait_for(ready, 60, "the echo server")
