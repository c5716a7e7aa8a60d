"""Several gateway processes on one port: `ml-server gateway --workers N`.

One gateway process saturates one core (parsing JSON, building frames,
coalescing predicts); N of them share the port with `SO_REUSEPORT`, the
kernel spreading connections over them. Each worker is a whole gateway of
its own (its own broker connection, reply queue and coalescer); consumers
batch whatever reaches them.

This process only supervises: it starts the workers (`python -m gateway
--worker`), restarts one that dies after it had started, passes SIGTERM and
SIGINT on, and waits for them. Their Prometheus metrics go to files in one
temporary folder of theirs (`PROMETHEUS_MULTIPROC_DIR`, removed at the end),
so that `GET /metrics` on any worker answers the sum over all of them.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import multiprocess

log = logging.getLogger(__name__)

# A worker that dies sooner than this after its start failed to start: stop, don't restart it in a loop.
START_GRACE = 10.0
# Seconds the workers get to finish their requests after SIGTERM, before SIGKILL.
STOP_TIMEOUT = 20.0


def supervise(workers: int, environ: dict[str, str]) -> int:
    """Run `workers` gateway processes on the settings' port until SIGTERM or SIGINT; their exit code."""
    folder = Path(tempfile.mkdtemp(prefix="ml-server-gateway-metrics-"))
    env = {**environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    command = [sys.executable, "-m", "gateway", "--worker"]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> tuple[subprocess.Popen[bytes], float]:
        # A process group of its own: a terminal's Ctrl-C reaches this process alone, which passes it on.
        return subprocess.Popen(command, env=env, process_group=0), time.monotonic()

    procs = [start() for _ in range(workers)]
    log.info("%d gateway processes on one port: %s", workers, ", ".join(str(p.pid) for p, _ in procs))
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, (proc, started) in enumerate(procs):
                rc = proc.poll()
                if rc is None or stopping:
                    continue
                multiprocess.mark_process_dead(proc.pid, str(folder))
                if time.monotonic() - started < START_GRACE:
                    log.error("gateway process %d exited with %s as it started; stopping", proc.pid, rc)
                    stopping, code = True, rc or 1
                    break
                log.warning("gateway process %d exited with %s; starting another", proc.pid, rc)
                procs[i] = start()
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc, _ in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
    return code


__all__ = ["supervise"]
