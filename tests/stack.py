"""Real processes for integration tests: a gateway and consumers on loopback.

A `Stack` runs `python -m gateway` and `python -m consumers FAMILY` as child
processes, against the real RabbitMQ and a real database, under a namespace
of their own so that nothing else on the broker is touched. Logs go to files
that are printed when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aio_pika
import requests

from client import _wire
from contracts import amqp
from contracts.topology import Topology

from .zygote import Forked, zygote

ROOT = Path(__file__).resolve().parent.parent
BROKER_URL = os.environ.get("ML_SERVER_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get("ML_SERVER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (requests.RequestException, OSError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def family_name(spec: str) -> str:
    """The family a consumer spec serves (`tests.families_for_tests:slow` serves `slow`)."""
    return spec.split(":")[-1]


def queue_states(queues: list[str], broker_url: str = BROKER_URL) -> dict[str, amqp.QueueState]:
    """Ready messages and consumers of each queue that exists, asked of the broker over AMQP (passive declares)."""

    async def ask() -> dict[str, amqp.QueueState]:
        connection = await aio_pika.connect(broker_url)
        async with connection:
            return await amqp.inspect(connection, queues)

    return asyncio.run(ask())


def purge_namespace(namespace: str, families: Iterable[str], broker_url: str = BROKER_URL) -> None:
    """Delete what a test namespace declared on the broker: its families' queues and its exchanges.

    (Reply and event queues are exclusive: they went with their connections.)"""
    async def purge() -> None:
        async with await aio_pika.connect(broker_url) as connection:
            await amqp.delete_namespace(connection, Topology(namespace), families)

    asyncio.run(purge())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, database_url: str, workdir: Path, broker_url: str = BROKER_URL, **env: str) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.namespace = f"test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ML_SERVER_DATA_DIR": str(workdir / "data"),
            "ML_SERVER_DATABASE_URL": database_url,
            "ML_SERVER_BROKER_URL": broker_url,
            "ML_SERVER_NAMESPACE": self.namespace,
            "ML_SERVER_PORT": str(self.port),
            "ML_SERVER_SECRET": uuid.uuid4().hex,
            "ML_SERVER_LOG_LEVEL": "INFO",
            "ML_SERVER_METRICS_PORT": "0",  # consumers serve no /metrics unless a test gives them a port
            **env,
        }
        self.database_url = database_url
        self.broker_url = broker_url
        self.gateway: Forked | None = None
        self.consumers: list[tuple[str, Forked]] = []  # (spec, process): a process once per family it serves
        self.families: set[str] = set()
        self._logs: list[Path] = []

    # ---- processes -----------------------------------------------------------

    def _spawn(self, name: str, module: str, *args: str, **env: str) -> Forked:
        """`python -m module *args`, forked from this test process's zygote (tests/zygote.py)."""
        log = self.workdir / f"{name}-{len(self._logs)}.log"
        self._logs.append(log)
        return zygote().spawn(module, list(args), {**self.env, **env}, ROOT, log)

    def start_gateway(self, ready: bool = True, **env: str) -> None:
        """Start the gateway and wait until `/readyz` says ready (`ready=False`: until it answers at all)."""
        self.gateway = self._spawn("gateway", "gateway", **env)
        probe = "/readyz" if ready else "/healthz"
        wait_for(lambda: self._alive(self.gateway) and requests.get(self.url + probe, timeout=2).ok, 60, what=f"gateway {probe}")

    def start_consumer(self, *specs: str, wait: bool = True, **env: str) -> Forked:
        """One consumer process serving the families `specs` (names or module:attribute)."""
        name = "+".join(family_name(spec) for spec in specs)
        proc = self._spawn(f"consumer-{name}", "consumers", *specs, **env)
        for spec in specs:
            self.consumers.append((spec, proc))
            self.families.add(family_name(spec))
        if wait:
            for spec in specs:
                self.wait_consumers(family_name(spec), count=len(self.live(spec)))
        return proc

    def live(self, spec: str) -> list[Forked]:
        """The running consumer processes serving `spec`."""
        return [p for f, p in self.consumers if f == spec and p.poll() is None]

    def wait_consumers(self, family: str, count: int = 1) -> None:
        """Until `count` consumers are on the family's train and predict queues."""
        t = Topology(self.namespace)
        queues = [t.train_queue(family), t.predict_queue(family)]

        def ready() -> bool:
            serving = [p for f, p in self.consumers if family_name(f) == family]
            if serving and all(p.poll() is not None for p in serving):
                raise AssertionError(f"every consumer of {family} exited ({[p.returncode for p in serving]}):\n{self.logs()}")
            states = queue_states(queues, self.broker_url)
            return all(q in states and states[q].consumers >= count for q in queues)

        wait_for(ready, 90, interval=0.2, what=f"{count} consumer(s) of {family}")

    @staticmethod
    def _alive(proc: Forked | None) -> bool:
        if proc is None or proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode if proc else None}")
        return True

    def kill(self, proc: Forked, sig: int = signal.SIGKILL) -> None:
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        self.stop_processes()
        expected = {f for f in self.env.get("ML_SERVER_FAMILIES", "").split(",") if f}
        purge_namespace(self.namespace, self.families | expected)

    def stop_processes(self) -> None:
        """SIGTERM to every process of the stack, SIGKILL to any still there after 15 s."""
        procs = list(dict.fromkeys(p for _, p in self.consumers)) + ([self.gateway] if self.gateway else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.read_text(errors='replace')[-6000:]}" for p in self._logs if p.exists())

    # ---- HTTP ----------------------------------------------------------------

    def family_url(self, family: str) -> str:
        """The seed's routes of a family: PUT fit, POST predict, PATCH update, GET status, DELETE."""
        return f"{self.url}/{family}"

    def fit_url(self, family: str) -> str:
        """ml-server's own fit: 202 with the queued version."""
        return f"{self.url}/families/{family}/models"

    def model_url(self, model_key: str, *rest: str) -> str:
        """ml-server's own routes of one model: GET, DELETE, and `predict`, `update`, `versions`, `events` below it."""
        return "/".join([f"{self.url}/models/{model_key}", *rest])

    def status(self, family: str, model_key: str) -> dict[str, Any]:
        """The model's latest version, flat (status, version, attempts, worker, error, ...)."""
        r = requests.get(self.model_url(model_key), timeout=10)
        r.raise_for_status()
        state = _wire.state(r.json())
        assert state["family"] == family, state
        return state

    def wait_finished(self, family: str, model_key: str, timeout: float = 60.0, version: int | None = None) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            s = self.status(family, model_key)
            if s["status"] in ("done", "failed") and (version is None or s["version"] >= version):
                return s
            return None

        return wait_for(finished, timeout, what=f"{family} model {model_key} finished")


# ---- the broker's view ---------------------------------------------------------


def ready_messages(queue: str) -> int:
    """Messages waiting in a queue, from a passive declare (the queue's own count, not lagging statistics)."""

    async def ask() -> int:
        async with await aio_pika.connect(BROKER_URL) as connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)

    return asyncio.run(ask())


def unacked_by(pids: set[int]) -> int:
    """Deliveries the consumer processes `pids` hold unacknowledged, summed over their channels.

    `rabbitmqctl list_queues ... messages` is no use here: a quorum queue's
    counts are statistics refreshed every few seconds, so right after a
    publish they still say 0. A channel's own count is current.
    """

    def table(*args: str) -> list[list[str]]:
        out = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=30).stdout
        return [line.split("\t") for line in out.splitlines()[1:] if "\t" in line]

    connections = {
        row[0]
        for row in table("list_connections", "name", "client_properties")
        if '{"connection_name","consumer ' in row[1] and any(f':{pid}"}}' in row[1] for pid in pids)
    }
    assert len(connections) == len(pids), f"connections of consumers {pids} not found: {connections}"
    return sum(int(row[1]) for row in table("list_channels", "name", "messages_unacknowledged") if row[0].rsplit(" (", 1)[0] in connections)


def wait_queue_drained(stack: Stack, family: str, timeout: float = 60) -> None:
    """Until the family's train queue has nothing waiting and its consumers hold nothing unacked (twice in a row).

    Ready messages come from passive declares; unacked deliveries only rabbitmqctl can tell, so it is
    asked once the queue is empty, and then every half second."""
    queue = Topology(stack.namespace).train_queue(family)
    pids = {p.pid for f, p in stack.consumers if family_name(f) == family and p.poll() is None}
    wait_for(lambda: ready_messages(queue) == 0, timeout, interval=0.1, what=f"{queue} empty")
    seen: list[bool] = []

    def drained() -> bool:
        seen.append(ready_messages(queue) == 0 and unacked_by(pids) == 0)
        return len(seen) >= 2 and all(seen[-2:])

    wait_for(drained, timeout, interval=0.5, what=f"{queue} drained")
