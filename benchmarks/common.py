"""Paths, settings and small helpers shared by the benchmark's modules."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
BROKER_URL = os.environ.get("ML_SERVER_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
FAMILY = "logreg"
FEATURES = 10
PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
# A load-generator process above this share of one core may be what limits a measurement.
LOADGEN_SATURATED = 0.70

T = TypeVar("T")


class Fatal(Exception):
    """Stops a wait at once (a process it waits for has exited)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `condition` until it returns something true; its exceptions count as "not yet", except Fatal."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Fatal:
            raise
        except Exception as e:  # noqa: BLE001 - polling
            last = e
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def vm_kib(pid: int, field: str) -> int | None:
    """A `Vm*` field of /proc/PID/status in KiB (None once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def sleep_until(start_at: float | None) -> None:
    """Wait for a wall-clock start time, so that the processes of one measurement start together."""
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
