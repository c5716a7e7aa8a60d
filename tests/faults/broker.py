"""A private RabbitMQ node for fault tests that stop the broker.

The shared broker on 127.0.0.1:5672 must never be stopped, so a test that
restarts RabbitMQ starts a node of its own: its own node name, AMQP and
distribution ports, data and log folders in the test's tmp dir, no plugins,
listening on loopback only. Stopped and started again on the same data dir,
its durable quorum queues and persistent messages survive. Optional low
`consumer_timeout` (with a short channel tick, which is when RabbitMQ 3.10
checks it: every 60 s by default) for the long-fit tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika

from ..stack import free_port, queue_states, wait_for


class PrivateBroker:
    def __init__(self, consumer_timeout_ms: int | None = None, tick_ms: int | None = None) -> None:
        # Debian's rabbitmq-server and rabbitmqctl run as the `rabbitmq` user (root is switched to it),
        # so the node's folder is one of its own, not under pytest's root-only tmp dir.
        self.workdir = workdir = Path(tempfile.mkdtemp(prefix="mlfault-"))
        self.node = f"mlfault-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        conf = [f"listeners.tcp.1 = 127.0.0.1:{self.port}", "loopback_users.guest = true", "log.console = false"]
        if consumer_timeout_ms is not None:
            conf.append(f"consumer_timeout = {consumer_timeout_ms}")
        (workdir / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        advanced = f"[{{rabbit, [{{channel_tick_interval, {tick_ms}}}]}}]." if tick_ms else "[]."
        (workdir / "advanced.config").write_text(advanced + "\n")
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "empty-env.conf").write_text("")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "empty-env.conf"),
            "RABBITMQ_PID_FILE": str(workdir / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        for path in [self.workdir, *self.workdir.iterdir()]:
            shutil.chown(path, "rabbitmq", "rabbitmq")
        self.started = False

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> float:
        """Start the node (again, on the same data); seconds until it accepts AMQP."""
        began = time.monotonic()
        self.launch()
        self.wait_accepting()
        return time.monotonic() - began

    def launch(self) -> None:
        """Start the node's process and return at once (`wait_accepting` waits for it)."""
        # In the foreground, as our own child (its output in a file of ours), rather than -detached.
        with (self.workdir / "console.out").open("ab") as out:
            self.process = subprocess.Popen(
                ["rabbitmq-server"], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started = True

    def wait_accepting(self, timeout: float = 120) -> None:
        # Ready once it takes an AMQP connection: asked over AMQP, not by starting rabbitmqctl
        # (an Erlang VM of its own) again and again while the node boots.
        wait_for(lambda: self._alive() and self._accepts_amqp(), timeout, interval=0.2, what=f"{self.node} accepting AMQP")

    def _alive(self) -> bool:
        assert self.process.poll() is None, f"{self.node} exited: {self.log_tail()}"
        return True

    def _accepts_amqp(self) -> bool:
        async def connect() -> bool:
            try:
                connection = await aio_pika.connect(self.url, timeout=5)
            except (OSError, aio_pika.exceptions.AMQPError, asyncio.TimeoutError):
                return False
            await connection.close()
            return True

        return asyncio.run(connect())

    def stop(self) -> None:
        done = self.ctl("shutdown", "--wait", timeout=120)
        assert done.returncode == 0, done.stderr
        self.process.wait(timeout=60)
        self.started = False

    def terminate(self) -> None:
        """Stop the node as its service manager would: SIGTERM to its Erlang VM (which shuts RabbitMQ
        down cleanly), and wait for it to end. (No rabbitmqctl VM to start: faster than `stop`.)"""
        vm = int((self.workdir / "node.pid").read_text().strip())  # the Erlang VM, below `su` and a shell
        os.kill(vm, signal.SIGTERM)
        wait_for(lambda: not _running(vm), 60, interval=0.1, what=f"{self.node}'s Erlang VM ({vm}) ended")
        self.process.wait(timeout=60)
        self.started = False

    def delete(self) -> None:
        if self.started:
            try:
                done = self.ctl("shutdown", "--wait", timeout=60).returncode
            except subprocess.TimeoutExpired:
                done = 1
            if done != 0:  # not answering: end our own node's process by its pid file
                pid_file = self.workdir / "node.pid"
                if pid_file.exists():
                    try:
                        os.kill(int(pid_file.read_text().strip()), 9)
                    except (ValueError, ProcessLookupError):
                        pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self.started = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def queue_consumers(self, queues: list[str]) -> dict[str, int]:
        """Consumers on each queue that exists, asked over AMQP (passive declares)."""
        return {q: st.consumers for q, st in queue_states(queues, self.url).items()}

    def wait_consumers(self, queues: list[str], count: int = 1, timeout: float = 60) -> float:
        """Seconds until every queue has at least `count` consumers."""
        began = time.monotonic()
        wait_for(
            lambda: all(self.queue_consumers(queues).get(q, 0) >= count for q in queues),
            timeout,
            interval=0.2,
            what=f"{count} consumer(s) on {queues} of {self.node}",
        )
        return time.monotonic() - began

    def log_tail(self, n: int = 4000) -> str:
        logs = [self.workdir / "console.out"] + sorted((self.workdir / "log").glob("*.log")) if (self.workdir / "log").exists() else []
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-n:]}" for p in logs)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
