"""HTTP measurements with wrk (https://github.com/wg/wrk), when it is installed.

wrk is a C load generator (epoll, one thread here): it is not what limits a
measurement of a Python server on the same machine, unlike an asyncio load
generator. `wrk.lua` sends the body built by `bodies.py` with its headers and
prints wrk's summary as JSON: requests, duration, errors and latency
percentiles (microseconds, from wrk's own histogram). wrk's durations are
whole seconds, so a warm-up shorter than a second lasts one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from .bodies import HttpRequest
from .common import HERE, LOADGEN_SATURATED

SCRIPT = HERE / "wrk.lua"
THREADS = 1  # one epoll thread drives 32 connections well past what a server on the same two cores answers


def find() -> str | None:
    """wrk's executable, None when it is not installed."""
    return shutil.which("wrk")


def version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "?"


def whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))


class Wrk:
    """Runs wrk once per call, in the foreground; the process is killed if anything interrupts it."""

    def __init__(self, exe: str, workdir: Path) -> None:
        self.exe = exe
        self.workdir = workdir
        self.version = version(exe)

    def _body_file(self, body: bytes) -> Path:
        path = self.workdir / f"wrk-body-{hashlib.sha1(body).hexdigest()[:16]}.bin"
        if not path.exists():
            path.write_bytes(body)
        return path

    def run(self, req: HttpRequest, clients: int, seconds: float) -> dict[str, Any]:
        """wrk's summary of one run (`WRK_JSON` line of wrk.lua), its whole seconds and its CPU time."""
        duration = whole_seconds(seconds)
        env = {
            **os.environ,
            "BENCH_WRK_BODY": str(self._body_file(req.body)),
            "BENCH_WRK_CONTENT_TYPE": req.headers.get("Content-Type", "application/octet-stream"),
            "BENCH_WRK_ACCEPT": req.headers.get("Accept", ""),
            "BENCH_WRK_METHOD": req.method,
            "BENCH_WRK_HEADER": next((f"{k}: {v}" for k, v in req.headers.items() if k not in ("Content-Type", "Accept")), ""),
        }
        args = [self.exe, f"-t{min(THREADS, clients)}", f"-c{clients}", f"-d{duration}s", "--timeout", "30s", "-s", str(SCRIPT), req.url]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        guard = threading.Timer(duration + 60, proc.kill)  # wrk stops itself after -d; this is in case it hangs
        guard.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            guard.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        # wrk writes a few hundred bytes: they wait in the pipes until read here.
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.read().decode(errors="replace")
        err = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
        line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk exited with {proc.returncode}: {(err or out).strip()[-800:]}")
        summary: dict[str, Any] = json.loads(line[len("WRK_JSON "):])
        summary["cpu"] = usage.ru_utime + usage.ru_stime
        summary["whole_seconds"] = duration
        return summary

    def measurement(self, sc: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
        """A result row in the shape of the Python load generator's (`loadgen.merge_parts`)."""
        seconds = summary["duration_us"] / 1e6
        n = summary["requests"]
        errors = summary["errors"]
        failed = sum(errors.values())
        share = summary["cpu"] / seconds if seconds else 0.0
        lat = summary["latency_us"]
        return {
            **sc,
            "loadgen": "wrk",
            "requests": n,
            "seconds": seconds,
            "rps": summary["rps"],
            "p50_ms": lat["p50"] / 1000 if n else float("nan"),
            "p99_ms": lat["p99"] / 1000 if n else float("nan"),
            "loadgen_procs": 1,
            "loadgen_threads": min(THREADS, sc["clients"]),
            "loadgen_cpu_us_per_request": summary["cpu"] / n * 1e6 if n else None,
            "loadgen_cpu_share": share,
            "loadgen_cpu_share_max_process": share,
            "loadgen_saturated": share > LOADGEN_SATURATED,
            "errors": failed,
            "first_error": (", ".join(f"{k} {v}" for k, v in errors.items() if v) + " (wrk's error counts)") if failed else None,
        }
