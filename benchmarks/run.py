"""Side-by-side benchmark of ml-server, in one run, on this machine.

    .venv/bin/python -m benchmarks.run [--quick] [--out DIR] [--mlserver] [--soak SECONDS] [--http-loadgen auto|wrk|python]
                                       [--only all|v2|amqp]

Measures, against the local RabbitMQ (ML_SERVER_BENCH_BROKER_URL, default
amqp://guest:guest@127.0.0.1:5672/):

- in-process: a fitted LogisticRegression (10 features) `predict` on 1 and 1,000 rows;
- the broker floor: an aio-pika echo RPC (correlation ids, own reply queue) through
  the same RabbitMQ, at 1 and 32 concurrent callers;
- ml-server's predicts as users send them (requests/s, p50/p99):
  - seed JSON: `POST /logreg` with `{"model_key", "x": DataFrame.to_json(orient), "orient"}`
    as the seed's client sends it (orient `columns`) at 1 and 32 connections, 1 and 1,000 rows,
    and the other orients the seed accepted (split, records, index, values) at 32 connections;
  - REST Parquet (`POST /logreg?model_key=`, Parquet both ways) and direct AMQP, at 1 and 32
    clients, 1 and 1,000 rows;
  for REST, the mean predict requests per broker message (the gateway coalesces), from its GET /metrics;
- HTTP rows are driven by wrk when it is installed (benchmarks/wrk.lua), else by the Python
  load generator (asyncio, a process of its own that reports its CPU time; a 32-client
  measurement whose process used more than 70 % of a core is run again over two processes);
  AMQP rows always by the Python one. Each row says which load generator produced it;
- one gateway process against two on one port (`ml-server gateway --workers 2`, SO_REUSEPORT):
  seed JSON (`columns`) at 1 and 1,000 rows, 32 connections, by the same load generator;
- fit of 10,000x10 and 100,000x10 through POST /families/logreg/models, submit to `done`
  (GET /models/{model_key}), against the in-process fit;
- a memory soak (--soak SECONDS; 300, 20 with --quick, 0: none): steady mixed load
  (1-row and 1,000-row REST Parquet predicts from 32 clients, a seed-JSON predict
  stream, a fit every 5 s) while the RSS of the gateway and consumer is sampled;
- peak RSS (VmHWM) of the gateway and consumer processes at the end;
- the Open Inference Protocol (`POST /v2/models/{model_key}/infer`): one FP64 tensor of rows x 10, JSON both
  ways (as MLServer is asked) and binary both ways (Triton's extension), at 1 and 32 connections, 1 and 1,000
  rows; `--only v2` measures these, the echo floor and MLServer only (one 10,000-row fit, no soak);
  `--only amqp` direct AMQP and the echo floor only (one 10,000-row fit, no soak);
- with --mlserver: Seldon MLServer (scikit-learn runtime, same model, V2 JSON) installed on
  demand into benchmarks/.venv-mlserver, driven by the same load generator as ml-server's HTTP rows.

It starts its own gateway and `logreg` consumer (SQLite in a temporary folder, a
namespace of its own, a free port), and stops them (and wrk, the load generators,
the echo server and MLServer) and deletes its queues and exchanges at the end, also
on errors and Ctrl-C. Results: results-STAMP.json/.md and latest.json/.md in
benchmarks/results/ or --out; the Markdown opens with the targets (P1a-P1e, P2-P5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from . import wrk as wrk_mod
from .common import HERE, vm_kib
from .fits import fit_through_server
from .gateways import measure_gateways, speedups
from .inprocess import in_process
from .loadgen import Loadgen
from .machine import loadavg, machine
from .measure import batch_settings, check_answers, plan, run_load
from .mlserver import start_mlserver
from .report import render
from .soak import memory_soak
from .stack import Processes, leftovers, purge_namespace, start_echo, start_stack
from .targets import score_targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter measurements (about 1 s each)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for the results (default benchmarks/results)")
    p.add_argument("--mlserver", action="store_true", help="also measure MLServer (installed on demand into benchmarks/.venv-mlserver)")
    p.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="length of the memory soak (P5): steady mixed load while the gateway's and consumer's RSS is sampled "
        "(default 300, 20 with --quick; 0: none)",
    )
    p.add_argument(
        "--http-loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator of the HTTP rows: wrk when installed (auto, the default), wrk, or the Python one",
    )
    p.add_argument(
        "--only", choices=("all", "v2", "amqp"), default="all",
        help="v2: only the Open Inference Protocol's rows and their references; amqp: only direct AMQP and the echo floor",
    )
    args = p.parse_args(argv)
    if args.soak is not None and args.soak < 0:
        p.error("--soak must not be negative")
    if args.http_loadgen == "wrk" and wrk_mod.find() is None:
        p.error("--http-loadgen wrk: wrk is not installed (apt-get install wrk)")
    return args


def choose_wrk(choice: str, workdir: Path, duration: float, warmup: float) -> tuple[wrk_mod.Wrk | None, dict[str, Any]]:
    """wrk for the HTTP rows when asked for or installed; and what the results say about it."""
    exe = wrk_mod.find() if choice != "python" else None
    if exe is None:
        why = "asked for with --http-loadgen python" if choice == "python" else "wrk is not installed"
        return None, {"http": "python", "why_python": why}
    w = wrk_mod.Wrk(exe, workdir)
    return w, {
        "http": "wrk",
        "wrk_version": w.version,
        "wrk_threads": wrk_mod.THREADS,
        "wrk_seconds": wrk_mod.whole_seconds(duration),
        "wrk_warmup_seconds": wrk_mod.whole_seconds(warmup) if warmup > 0 else 0,
    }


def measure_all(args: argparse.Namespace, results: dict[str, Any], procs: Processes, workdir: Path, loadgens: list[Loadgen]) -> None:
    """Everything a run measures, into `results`; the processes it starts are registered for the caller to stop."""
    duration, warmup, namespace = results["duration"], results["warmup"], results["namespace"]
    results["machine"] = machine()
    print(f"in-process predict and fit ({duration:g} s each) ...", flush=True)
    ip, model = in_process(duration)
    results["in_process"] = ip
    for v in ip["predict"].values():
        print(f"  predict {v['rows']:>4} rows ({v['input']}): {v['seconds_per_call'] * 1e6:8.1f} µs/call", flush=True)
    for rows, v in ip["fit"].items():
        print(f"  fit {rows:>7,} rows: {v['seconds']:.3f} s", flush=True)

    print(f"starting ml-server (namespace {namespace}, {workdir}) and an echo RPC server ...", flush=True)
    url, pids = start_stack(procs, workdir, namespace)
    start_echo(procs, namespace)

    print("fit through ml-server (POST /families/logreg/models, submit to done) ...", flush=True)
    results["fit"] = {}
    predict_key = None
    for rows in (10_000,) if args.only != "all" else (10_000, 100_000):
        f = fit_through_server(url, rows, f"bench-{rows}")
        results["fit"][rows] = f
        predict_key = predict_key or f["model_key"]
        print(f"  fit {rows:>7,} rows: {f['seconds']:.3f} s ({f['http_status']} after {f['accepted_seconds']:.3f} s)", flush=True)

    mlserver_url = None
    if args.mlserver:
        try:
            print("starting MLServer ...", flush=True)
            mlserver_url, ml_pid, results["mlserver_version"] = start_mlserver(procs, workdir, model)
            pids["mlserver"] = ml_pid
        except Exception as e:  # noqa: BLE001 - optional
            results["mlserver_skipped"] = f"{type(e).__name__}: {e}"[:500]
    else:
        results["mlserver_skipped"] = "not asked for: run with --mlserver"
    if results.get("mlserver_skipped"):
        print(f"MLServer SKIPPED: {results['mlserver_skipped']}", flush=True)

    wrk, results["loadgen"] = choose_wrk(args.http_loadgen, workdir, duration, warmup)
    scenarios = plan(mlserver_url is not None, args.only)
    spec = {"gateway": url, "model_key": predict_key, "namespace": namespace, "mlserver": mlserver_url, "duration": duration, "warmup": warmup}
    check_answers(spec, scenarios)
    lg = results["loadgen"]
    http = (f"wrk ({lg['wrk_version']}, {lg['wrk_warmup_seconds']} s warm-up run + {lg['wrk_seconds']} s)" if wrk is not None
            else f"the Python load generator ({lg['why_python']})")
    print(f"load ({len(scenarios)} measurements; HTTP rows with {http}; AMQP rows with the Python load generator, "
          f"{warmup:g} s warm-up + {duration:g} s) ...", flush=True)
    loadgen = Loadgen(spec, workdir)
    loadgens.append(loadgen)
    results["load"] = run_load(loadgen, wrk, spec, scenarios, url)

    if args.only == "all":
        print("one gateway process against two on one port (`--workers 2`; seed JSON, 32 connections) ...", flush=True)
        results["gateways"] = measure_gateways(procs, workdir, spec, loadgen, wrk)
        for rows, speedup in speedups(results["gateways"]).items():
            print(f"  2 gateways / 1 at {rows:,} row{'s' if rows != 1 else ''}: {speedup:.2f}×" if speedup else f"  {rows} rows: no ratio", flush=True)

    soak_seconds = results["soak_seconds"]
    if soak_seconds > 0:
        print(f"memory soak ({soak_seconds:g} s of mixed load on the gateway and the consumer, RSS sampled) ...", flush=True)
        soak = memory_soak(loadgen, {"gateway": pids["gateway"], "consumer": pids["consumer"]}, soak_seconds)
        results["soak"] = soak
        load = soak["load"]
        print(
            f"  {load['requests_total']:,} predicts ({load['rps']:.0f} req/s), {load['fits_done']} fits done"
            + (f", {load['errors']} errors: {load['first_error']}" if load["errors"] else ""),
            flush=True,
        )
        for name, m in soak["processes"].items():
            print(f"  {name}: RSS {m['rss_baseline_kib'] / 1024:.1f} MiB after warm-up, {m['rss_end_kib'] / 1024:.1f} MiB at the end "
                  f"({m['growth_pct']:+.1f} %)", flush=True)

    results["memory"] = {name: {"pid": pid, "VmHWM_kib": vm_kib(pid, "VmHWM"), "VmRSS_kib": vm_kib(pid, "VmRSS")} for name, pid in pids.items()}


def clean_up(procs: Processes, loadgens: list[Loadgen], namespace: str, workdir: Path) -> None:
    """Stop every process this run started and delete its queues and exchanges; reports what it could not."""
    for loadgen in loadgens:
        loadgen.close()
    procs.stop()
    try:
        purge_namespace(namespace)
    except Exception as e:  # noqa: BLE001 - report, don't mask
        print(f"could not purge namespace {namespace}: {e}", file=sys.stderr)
    left = leftovers(namespace)
    if left:
        print(f"still on the broker after the purge: {', '.join(left)}", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)


def write(results: dict[str, Any], out: Path) -> tuple[str, str]:
    """results-STAMP.json/.md and latest.json/.md in `out`; the Markdown and the stamp."""
    markdown = render(results)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2)
    for name in (f"results-{stamp}", "latest"):
        (out / f"{name}.json").write_text(text)
        (out / f"{name}.md").write_text(markdown)
    return markdown, stamp


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    duration, warmup = (1.0, 0.3) if args.quick else (3.0, 0.7)
    soak_seconds = args.soak if args.soak is not None else 0.0 if args.only != "all" else (20.0 if args.quick else 300.0)
    workdir = Path(tempfile.mkdtemp(prefix="ml-server-bench-"))
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    procs = Processes(workdir)
    loadgens: list[Loadgen] = []

    def on_term(*_: Any) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C cleans up, even when started with SIGINT ignored
    results: dict[str, Any] = {
        "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration": duration,
        "warmup": warmup,
        "namespace": namespace,
        "soak_seconds": soak_seconds,
        "batching": batch_settings(os.environ),
    }
    t_run = time.perf_counter()
    try:
        measure_all(args, results, procs, workdir, loadgens)
        results["total_seconds"] = time.perf_counter() - t_run
        results["loadavg_at_end"] = loadavg()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping and cleaning up", file=sys.stderr)
        return 130
    finally:
        clean_up(procs, loadgens, namespace, workdir)

    results = json.loads(json.dumps(results, default=str))  # JSON keys must be strings; keep it readable
    results["targets"] = score_targets(results)
    markdown, stamp = write(results, args.out)
    print()
    print(markdown)
    print(f"written to {args.out}/latest.md and latest.json (and results-{stamp}.*); whole run {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
