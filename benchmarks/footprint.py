"""How long `ml-server run` takes to be ready, and how much memory the local stack holds.

    .venv/bin/python -m benchmarks.footprint [--runs N] [--process-per-family] [--out DIR]

Each run starts `ml-server run` in an empty data folder (its own namespace and
port, SQLite, the local RabbitMQ), and measures:

- seconds from starting the command to its `ready in` log line;
- whether the README's example (10,000 x 10 random frame, `logreg`, fit then
  predict with `GenericModelInterface`), started the moment the line appears,
  passes at the first try, and how long it took;
- after also fitting an `nn` model: the processes under `ml-server run`, their
  summed proportional set size (PSS: a page shared by n processes counts 1/n
  in each, from /proc/PID/smaps_rollup) and resident set size (RSS).

Then it stops the stack with SIGTERM and deletes its queues. The figures are
whole-process numbers any `ps`/`smem` reading reproduces; the median of the
runs is what the README quotes. Results: footprint.json and footprint.md in
benchmarks/results/ (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
BROKER_URL = os.environ.get("ML_SERVER_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(PSS, RSS) of one process in KiB, None once it is gone."""
    try:
        values = {line.split(":")[0]: int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]}
    except (OSError, ValueError, IndexError):
        return None
    return values.get("Pss", 0), values.get("Rss", 0)


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def readme_example(url: str) -> float:
    """The README's quick-start example as written; seconds it took. Raises if it fails."""
    import numpy as np
    import pandas as pd

    from client import GenericModelInterface

    began = time.perf_counter()
    x = pd.DataFrame(np.random.normal(size=(10000, 10)))
    y = (x.sum(axis=1) <= x.mean(axis=1)).astype(np.float32)
    mi = GenericModelInterface(url + "/", "logreg")
    mi.fit(x, y.to_frame(), name="logistic-regression-random-data")
    yhat = cast(pd.DataFrame, mi.predict(x)).iloc[:, 0]  # a frame unless as_array
    yhat.index = yhat.index.astype(int)
    precision = float((yhat.sort_index() == y).mean())
    if precision < 0.9:
        raise RuntimeError(f"precision {precision:.2%}")
    return time.perf_counter() - began


def fit_nn(url: str) -> None:
    import numpy as np
    import pandas as pd

    from client import GenericModelInterface

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(5000, 10)))
    y = (x[0] + x[1] > 0).astype(int)
    GenericModelInterface(url + "/", "nn", max_iter=50).fit(x, y.to_frame(), name="footprint-nn")


def one_run(per_family: bool) -> dict[str, Any]:
    port = _free_port()
    namespace = f"bench-footprint-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="ml-server-footprint-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ML_SERVER_DATA_DIR": str(Path(tmp) / "data"),
            "ML_SERVER_BROKER_URL": BROKER_URL,
            "ML_SERVER_NAMESPACE": namespace,
            "ML_SERVER_PORT": str(port),
            "ML_SERVER_METRICS_PORT": "0",
        }
        for name in ("ML_SERVER_SECRET", "ML_SERVER_SECRET_FILE", "ML_SERVER_DATABASE_URL", "ML_SERVER_FAMILIES"):
            env.pop(name, None)
        log = Path(tmp) / "run.log"
        args = [sys.executable, "-m", "commands", "run", *(["--process-per-family"] if per_family else [])]
        began = time.perf_counter()
        with log.open("wb") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        url = f"http://127.0.0.1:{port}"
        result: dict[str, Any] = {}
        try:
            while "ready in " not in log.read_text():
                if proc.poll() is not None or time.perf_counter() - began > 300:
                    raise RuntimeError(f"`ml-server run` did not get ready:\n{log.read_text()[-3000:]}")
                time.sleep(0.05)
            result["ready_seconds"] = time.perf_counter() - began
            try:
                result["example_seconds"] = readme_example(url)
                result["example_first_try"] = True
            except Exception as e:  # noqa: BLE001 - the figure is whether it passed
                result["example_first_try"] = False
                result["example_error"] = f"{type(e).__name__}: {e}"[:500]
            fit_nn(url)
            time.sleep(1)  # let the replacement fit processes settle
            pids = tree(proc.pid)
            found = [(p, memory_kib(p), command(p)) for p in pids]
            rows = [(p, m, c) for p, m, c in found if m is not None]
            result["processes"] = len(rows)
            result["pss_mib"] = sum(m[0] for _, m, _ in rows) / 1024
            result["rss_mib"] = sum(m[1] for _, m, _ in rows) / 1024
            result["by_process"] = [{"pid": p, "pss_mib": m[0] / 1024, "rss_mib": m[1] / 1024, "command": c[:120]} for p, m, c in rows]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            _purge(namespace)
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _purge(namespace: str) -> None:
    import aio_pika

    from contracts import amqp
    from contracts.families import BUILTIN
    from contracts.topology import Topology

    async def purge() -> None:
        async with await aio_pika.connect(BROKER_URL) as connection:
            await amqp.delete_namespace(connection, Topology(namespace), BUILTIN)

    asyncio.run(purge())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.footprint", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--process-per-family", action="store_true", help="one consumer process per family, for comparison")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    runs = []
    for i in range(args.runs):
        r = one_run(args.process_per_family)
        runs.append(r)
        print(
            f"run {i + 1}: ready in {r['ready_seconds']:.1f} s, example {'passed' if r['example_first_try'] else 'FAILED'} "
            f"at the first try, {r['processes']} processes, PSS {r['pss_mib']:.0f} MiB, RSS {r['rss_mib']:.0f} MiB",
            flush=True,
        )
    summary = {
        "mode": "process per family" if args.process_per_family else "one consumer process",
        "runs": runs,
        "ready_seconds_median": statistics.median(r["ready_seconds"] for r in runs),
        "pss_mib_median": statistics.median(r["pss_mib"] for r in runs),
        "rss_mib_median": statistics.median(r["rss_mib"] for r in runs),
        "example_first_try": all(r["example_first_try"] for r in runs),
        "cpus": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-per-family" if args.process_per_family else ""
    (args.out / f"footprint{suffix}.json").write_text(json.dumps(summary, indent=2))
    last = runs[-1]
    lines = [
        f"# `ml-server run` footprint ({summary['mode']}, {len(runs)} runs, {os.cpu_count()} CPUs)",
        "",
        f"- ready: median {summary['ready_seconds_median']:.1f} s (runs: {', '.join(format(r['ready_seconds'], '.1f') for r in runs)})",
        f"- README example right after the ready line: {'passed at the first try in every run' if summary['example_first_try'] else 'FAILED in some run'}",
        f"- after fitting logreg and nn: PSS {summary['pss_mib_median']:.0f} MiB, RSS {summary['rss_mib_median']:.0f} MiB (medians), "
        f"{last['processes']} processes",
        "",
        "| process | PSS MiB | RSS MiB |",
        "| --- | ---: | ---: |",
        *(f"| `{row['command'][:90]}` | {row['pss_mib']:.0f} | {row['rss_mib']:.0f} |" for row in last["by_process"]),
        "",
    ]
    (args.out / f"footprint{suffix}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
