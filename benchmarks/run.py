"""Side-by-side benchmark of ml-server, in one run, on this machine.

    .venv/bin/python -m benchmarks.run [--quick] [--out DIR] [--mlserver] [--soak SECONDS]

Measures, against the local RabbitMQ (ML_SERVER_BENCH_BROKER_URL, default
amqp://guest:guest@127.0.0.1:5672/):

- in-process: a fitted LogisticRegression (10 features) `predict` on 1 and 1,000 rows;
- the broker floor: an aio-pika echo RPC (correlation ids, own reply queue) through
  the same RabbitMQ, at 1 and 32 concurrent callers;
- ml-server: REST JSON, REST Parquet and direct AMQP predicts at 1 and 32 concurrent
  clients, 1 and 1,000 rows (requests/s, p50/p99), from a load generator in a process
  of its own that reports its own CPU time per request (a 32-client measurement whose
  load generator used more than 70 % of a core is run again split over two processes,
  and flagged); for REST, the mean predict requests per broker message (the gateway
  coalesces), from the gateway's GET /metrics;
- fit of 10,000x10 and 100,000x10, submit to done, against the in-process fit;
- a memory soak (--soak SECONDS; 300, 20 with --quick, 0: none): steady mixed load
  (1-row and 1,000-row REST Parquet predicts from 32 clients, a REST JSON predict
  stream, a fit every 5 s) while the RSS of the gateway and consumer is sampled;
- peak RSS (VmHWM) of the gateway and consumer processes at the end;
- with --mlserver: Seldon MLServer (scikit-learn runtime, same model) installed on
  demand into benchmarks/.venv-mlserver.

It starts its own gateway and `logreg` consumer (SQLite in a temporary folder, a
namespace of its own, a free port), and stops them and deletes its queues and
exchanges at the end, also on Ctrl-C. Results: results.json and results.md
(and latest.md / latest.json) in benchmarks/results/ or --out; the Markdown opens with
the targets P1-P5 of the README's Performance section, met or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
BROKER_URL = os.environ.get("ML_SERVER_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
FEATURES = 10
MLSERVER_VENV = HERE / ".venv-mlserver"
PARQUET = "application/vnd.apache.parquet"
# A load-generator process above this share of one core may be what limits a measurement.
LOADGEN_SATURATED = 0.70
# The gateway's predict-coalescing settings recorded with a run (contracts/settings.py).
BATCH_SETTINGS = ("batch_max_rows", "batch_max_wait", "batch_inflight")


# ---- data --------------------------------------------------------------------


def make_data(rows: int, seed: int = 0) -> tuple[Any, Any]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, FEATURES)), columns=[f"f{i}" for i in range(FEATURES)])
    y = (x.sum(axis=1) + rng.normal(scale=0.5, size=rows) > 0).astype(np.int64).to_frame("label")
    return x, y


def predict_frame(rows: int) -> Any:
    x, _ = make_data(rows, seed=1)
    return x


# ---- small helpers -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fatal(Exception):
    """Stops a wait at once (a process it waits for has exited)."""


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Fatal:
            raise
        except Exception as e:  # noqa: BLE001 - polling
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def vm_kib(pid: int, field: str) -> int | None:
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
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---- in-process --------------------------------------------------------------


def time_call(fn: Any, seconds: float) -> tuple[float, int]:
    """Mean seconds per call of fn, over about `seconds`."""
    fn()
    n, start = 0, time.perf_counter()
    batch = 1
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n, n
        batch = min(batch * 2, 1000)


def in_process(seconds: float) -> tuple[dict[str, Any], Any]:
    from sklearn.linear_model import LogisticRegression

    out: dict[str, Any] = {"predict": {}, "fit": {}}
    x, y = make_data(10_000)
    model = LogisticRegression().fit(x, y["label"])
    # The same coefficients, fitted on the bare array: predict on an ndarray skips the feature-name checks.
    bare = LogisticRegression().fit(x.to_numpy(), y["label"].to_numpy())
    for rows in (1, 1000):
        frame = predict_frame(rows)
        array = frame.to_numpy()
        for what, fn in (("DataFrame", lambda: model.predict(frame)), ("ndarray", lambda: bare.predict(array))):
            per_call, n = time_call(fn, seconds)
            out["predict"][f"{what} {rows}"] = {"input": what, "rows": rows, "seconds_per_call": per_call, "calls": n, "rps": 1 / per_call}
    for rows in (10_000, 100_000):
        x, y = make_data(rows)
        best = float("inf")
        for _ in range(3 if rows <= 10_000 else 2):
            t = time.perf_counter()
            LogisticRegression().fit(x, y["label"])
            best = min(best, time.perf_counter() - t)
        out["fit"][rows] = {"seconds": best}
    return out, model


# ---- the echo RPC server (its own process) ----------------------------------


async def echo_server(namespace: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(BROKER_URL, client_properties={"connection_name": f"bench echo {namespace}"})
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=32)
    exchange = await channel.declare_exchange(f"{namespace}.echo", aio_pika.ExchangeType.DIRECT, auto_delete=True)
    queue = await channel.declare_queue(f"{namespace}.echo", auto_delete=True)
    await queue.bind(exchange, "echo")
    reply_channel = await connection.channel(publisher_confirms=False)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await reply_channel.default_exchange.publish(
            aio_pika.Message(message.body, correlation_id=message.correlation_id), routing_key=message.reply_to or ""
        )
        await message.ack()

    await queue.consume(on_message)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await connection.close()


# ---- the load generator (its own process) ------------------------------------


class AmqpCaller:
    """client.amqp-style RPC, but one connection, channel and reply queue kept open."""

    def __init__(self, exchange_name: str, routing_key: str, headers: dict[str, Any], content_type: str | None) -> None:
        self.exchange_name, self.routing_key, self.headers, self.content_type = exchange_name, routing_key, headers, content_type
        self.pending: dict[str, asyncio.Future[Any]] = {}

    async def open(self) -> None:
        import aio_pika

        self.connection = await aio_pika.connect(BROKER_URL, client_properties={"connection_name": "bench loadgen"})
        self.channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        self.exchange = await self.channel.get_exchange(self.exchange_name)
        self.reply_channel = await self.connection.channel(publisher_confirms=False)
        self.replies = await self.reply_channel.declare_queue(exclusive=True, auto_delete=True)
        await self.replies.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: Any) -> None:
        future = self.pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message)

    async def call(self, body: bytes) -> Any:
        import aio_pika

        cid = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.pending[cid] = future
        await self.exchange.publish(
            aio_pika.Message(
                body,
                headers=self.headers,
                content_type=self.content_type,
                type="predict",
                correlation_id=cid,
                reply_to=self.replies.name,
                expiration=30,
            ),
            self.routing_key,
            mandatory=True,
        )
        reply = await asyncio.wait_for(future, 30)
        status = (reply.headers or {}).get("x-status", 200)
        if int(status) != 200:
            raise RuntimeError(f"AMQP predict failed: {dict(reply.headers or {})}")
        return reply.body

    async def close(self) -> None:
        await self.connection.close()


async def _sleep_until(start_at: float | None) -> None:
    """Wait for a wall-clock start time, so that the processes of one measurement start together."""
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.time()))


async def run_scenario(spec: dict[str, Any], sc: dict[str, Any], start_at: float | None = None) -> dict[str, Any]:
    """One measurement from this process: its raw latencies, CPU time and errors (merged by the parent)."""
    import aiohttp
    import orjson

    from contracts.frames import ParquetCodec, JsonCodec

    kind, clients, rows = sc["kind"], sc["clients"], sc["rows"]
    frame = predict_frame(rows)
    session: aiohttp.ClientSession | None = None
    caller: AmqpCaller | None = None
    if kind in ("rest_json", "rest_parquet", "mlserver"):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=aiohttp.ClientTimeout(total=60))
    if kind == "rest_json":
        url = f"{spec['gateway']}/logreg"
        body = orjson.dumps({"model_key": spec["model_key"], "x": JsonCodec.encode(frame, "split"), "orient": "split"})
        headers = {"Content-Type": "application/json"}
    elif kind == "rest_parquet":
        url = f"{spec['gateway']}/logreg?model_key={spec['model_key']}"
        body = ParquetCodec.encode(frame)
        headers = {"Content-Type": PARQUET, "Accept": PARQUET}
    elif kind == "mlserver":
        url = f"{spec['mlserver']}/v2/models/logreg/infer"
        body = orjson.dumps(
            {"inputs": [{"name": "predict", "shape": list(frame.shape), "datatype": "FP64", "data": frame.to_numpy().ravel().tolist()}]}
        )
        headers = {"Content-Type": "application/json"}
    elif kind == "amqp":
        ns = spec["namespace"]
        caller = AmqpCaller(f"{ns}.jobs", "logreg.predict", {"x-model-key": spec["model_key"], "x-kwargs": "{}"}, PARQUET)
        body = ParquetCodec.encode(frame)
    elif kind == "echo":
        ns = spec["namespace"]
        caller = AmqpCaller(f"{ns}.echo", "echo", {}, None)
        body = ParquetCodec.encode(frame)
    else:
        raise ValueError(kind)
    if caller is not None:
        await caller.open()

    async def one() -> None:
        if caller is not None:
            await caller.call(body)
            return
        assert session is not None
        async with session.post(url, data=body, headers=headers) as r:
            data = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{kind}: HTTP {r.status}: {data[:300]!r}")

    await _sleep_until(start_at)
    warmup, duration = spec["warmup"], spec["duration"]
    latencies: list[float] = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    t0, t1 = t_start + warmup, t_start + warmup + duration
    marks: dict[str, float] = {}

    async def worker() -> None:
        while True:
            s = time.perf_counter()
            ls = loop.time()
            if ls >= t1:
                return
            try:
                await one()
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(e).__name__}: {e}"[:300])
                await asyncio.sleep(0.01)
                continue
            if ls >= t0 and loop.time() <= t1:
                latencies.append(time.perf_counter() - s)

    async def meter() -> None:
        await asyncio.sleep(max(0.0, t0 - loop.time()))
        marks["cpu0"] = cpu_seconds()
        await asyncio.sleep(max(0.0, t1 - loop.time()))
        marks["cpu1"] = cpu_seconds()

    try:
        await asyncio.gather(meter(), *(worker() for _ in range(clients)))
    finally:
        if session is not None:
            await session.close()
        if caller is not None:
            await caller.close()
    return {
        "latencies": latencies,
        "seconds": duration,
        "cpu": marks["cpu1"] - marks["cpu0"],
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def merge_parts(sc: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One measurement's result from its load-generator processes' parts."""
    latencies = [v for p in parts for v in p["latencies"]]
    n = len(latencies)
    duration = parts[0]["seconds"]
    cpu = sum(p["cpu"] for p in parts)
    shares = [p["cpu"] / duration for p in parts]
    first_error = next((p["first_error"] for p in parts if p["first_error"]), None)
    return {
        **sc,
        "requests": n,
        "seconds": duration,
        "rps": n / duration,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "loadgen_procs": len(parts),
        "loadgen_cpu_us_per_request": (cpu / n * 1e6) if n else None,
        "loadgen_cpu_share": cpu / duration,  # all its processes together, in cores
        "loadgen_cpu_share_max_process": max(shares),
        "loadgen_saturated": max(shares) > LOADGEN_SATURATED,
        "errors": sum(p["errors"] for p in parts),
        "first_error": first_error,
    }


async def run_soak(spec: dict[str, Any], soak: dict[str, Any], start_at: float | None = None) -> dict[str, Any]:
    """The steady mixed load of the memory soak (P5), for soak["seconds"]."""
    import aiohttp
    import orjson

    from contracts.frames import ParquetCodec, JsonCodec

    gateway, key = spec["gateway"], spec["model_key"]
    parquet_url = f"{gateway}/logreg?model_key={key}"
    parquet_headers = {"Content-Type": PARQUET, "Accept": PARQUET}
    streams: list[tuple[str, str, bytes, dict[str, str], int]] = [
        ("rest_parquet_1", parquet_url, ParquetCodec.encode(predict_frame(1)), parquet_headers, soak["clients_1"]),
        ("rest_parquet_1000", parquet_url, ParquetCodec.encode(predict_frame(1000)), parquet_headers, soak["clients_1000"]),
        (
            "rest_json_1",
            f"{gateway}/logreg",
            orjson.dumps({"model_key": key, "x": JsonCodec.encode(predict_frame(1), "split"), "orient": "split"}),
            {"Content-Type": "application/json"},
            soak["clients_json"],
        ),
    ]
    fit = fit_body(soak["fit_rows"])
    counts: dict[str, int] = {name: 0 for name, *_ in streams}
    latencies: dict[str, list[float]] = {name: [] for name, *_ in streams}
    fits = {"submitted": 0, "done": 0, "failed": 0, "seconds": []}
    errors: list[str] = []
    total = sum(s[4] for s in streams) + 4
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=total), timeout=aiohttp.ClientTimeout(total=120))
    await _sleep_until(start_at)
    loop = asyncio.get_running_loop()
    t_end = loop.time() + soak["seconds"]
    cpu0 = cpu_seconds()

    async def predictor(name: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        while loop.time() < t_end:
            s = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    data = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(f"{name}: {type(e).__name__}: {e}"[:300])
                await asyncio.sleep(0.05)
                continue
            counts[name] += 1
            latencies[name].append(time.perf_counter() - s)

    async def fitter() -> None:
        # Retrains the model the predicts use (same name and data: a new version of the same key), so the
        # consumer's model cache keeps replacing it, as in production.
        while loop.time() < t_end:
            began = loop.time()
            try:
                async with session.put(
                    f"{gateway}/logreg", params={"name": soak["fit_name"], "retrain": "true"}, data=fit, headers={"Content-Type": PARQUET}
                ) as r:
                    answer = await r.json()
                    if r.status not in (200, 202):
                        raise RuntimeError(f"fit: HTTP {r.status}: {str(answer)[:300]}")
                fits["submitted"] += 1
                while loop.time() < t_end:
                    async with session.get(f"{gateway}/logreg", params={"model_key": answer["model_key"]}) as r:
                        s = await r.json()
                    if s["version"] == answer["version"] and s["status"] in ("done", "failed"):
                        fits[s["status"]] += 1
                        fits["seconds"].append(loop.time() - began)
                        break
                    await asyncio.sleep(0.1)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(f"fit: {type(e).__name__}: {e}"[:300])
            await asyncio.sleep(max(0.0, began + soak["fit_every"] - loop.time()))

    tasks = [predictor(name, url, body, headers) for name, url, body, headers, n in streams for _ in range(n)]
    try:
        await asyncio.gather(fitter(), *tasks)
    finally:
        await session.close()
    cpu = cpu_seconds() - cpu0
    seconds = soak["seconds"]
    requests_total = sum(counts.values())
    return {
        "requests": counts,
        "requests_total": requests_total,
        "rps": requests_total / seconds,
        "p50_ms": {name: percentile(v, 50) * 1000 for name, v in latencies.items()},
        "p99_ms": {name: percentile(v, 99) * 1000 for name, v in latencies.items()},
        "fits_submitted": fits["submitted"],
        "fits_done": fits["done"],
        "fits_failed": fits["failed"],
        "fit_seconds_mean": float(np.mean(fits["seconds"])) if fits["seconds"] else None,
        "loadgen_cpu_share": cpu / seconds,
        "loadgen_saturated": cpu / seconds > LOADGEN_SATURATED,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def loadgen_worker(spec_path: str) -> None:
    """A load-generator process: runs the commands it reads from stdin, one JSON object a line, and
    answers each with one `RESULT {...}` line on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            if cmd["op"] == "scenario":
                out = asyncio.run(run_scenario(spec, cmd["scenario"], cmd.get("start_at")))
            elif cmd["op"] == "soak":
                out = asyncio.run(run_soak(spec, cmd["soak"], cmd.get("start_at")))
            else:
                raise ValueError(f"unknown command {cmd['op']!r}")
            answer = {"ok": True, "result": out}
        except Exception as e:  # noqa: BLE001 - sent to the parent, which stops
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"[:1000]}
        sys.stdout.write("RESULT " + json.dumps(answer) + "\n")
        sys.stdout.flush()


class Loadgen:
    """Load-generator processes of their own (so their CPU is measured apart), driven over stdin/stdout.

    A measurement normally runs in one of them; a 32-client one whose process used more than
    LOADGEN_SATURATED of a core is run again split over two (16 clients each, started together)."""

    def __init__(self, spec: dict[str, Any], workdir: Path, processes: int = 2) -> None:
        spec_path = workdir / f"loadgen-{uuid.uuid4().hex[:6]}.json"
        spec_path.write_text(json.dumps(spec))
        self.workers = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.run", "--role", "loadgen", str(spec_path)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,  # Ctrl-C goes to this process only, which stops them in close()
            )
            for _ in range(processes)
        ]

    def _send(self, worker: subprocess.Popen[str], cmd: dict[str, Any]) -> None:
        assert worker.stdin is not None
        worker.stdin.write(json.dumps(cmd) + "\n")
        worker.stdin.flush()

    def _receive(self, worker: subprocess.Popen[str]) -> Any:
        assert worker.stdout is not None
        for line in worker.stdout:
            if line.startswith("RESULT "):
                answer = json.loads(line[len("RESULT "):])
                if not answer["ok"]:
                    raise RuntimeError(f"load generator: {answer['error']}")
                return answer["result"]
        raise RuntimeError(f"the load generator exited with {worker.wait()}")

    def scenario(self, sc: dict[str, Any], processes: int = 1) -> dict[str, Any]:
        workers = self.workers[:processes]
        start_at = time.time() + 1.0 if processes > 1 else None  # time for each to connect first
        for i, w in enumerate(workers):
            share = sc["clients"] // processes + (1 if i < sc["clients"] % processes else 0)
            self._send(w, {"op": "scenario", "scenario": {**sc, "clients": share}, "start_at": start_at})
        return merge_parts(sc, [self._receive(w) for w in workers])

    def soak(self, soak: dict[str, Any], start_at: float) -> dict[str, Any]:
        self._send(self.workers[0], {"op": "soak", "soak": soak, "start_at": start_at})
        return self._receive(self.workers[0])

    def close(self) -> None:
        for w in self.workers:
            try:
                if w.stdin is not None:
                    w.stdin.close()
            except OSError:
                pass
        for w in self.workers:
            try:
                w.wait(timeout=5)
            except subprocess.TimeoutExpired:
                w.terminate()
                try:
                    w.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    w.kill()
                    w.wait()


# ---- the gateway's batching metrics ------------------------------------------

BATCH_HISTOGRAMS = ("ml_server_gateway_predict_batch_requests", "ml_server_gateway_predict_batch_rows")


def batch_counters(url: str) -> dict[str, float] | None:
    """_sum and _count of the gateway's predict-batch histograms, from GET /metrics (None: not served)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    try:
        r = requests.get(f"{url}/metrics", timeout=10)
    except requests.RequestException:
        return None
    if r.status_code != 200:
        return None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        if family.name in BATCH_HISTOGRAMS:
            for s in family.samples:
                if s.name in (family.name + "_sum", family.name + "_count"):
                    out[s.name] = out.get(s.name, 0.0) + s.value
    return out or None


def per_message(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float | None]:
    """Mean requests and rows per predict message between two scrapes."""
    out: dict[str, float | None] = {"req_per_msg": None, "rows_per_msg": None, "messages": None}
    if not before or not after:
        return out
    for what, name in (("req_per_msg", BATCH_HISTOGRAMS[0]), ("rows_per_msg", BATCH_HISTOGRAMS[1])):
        count = after.get(name + "_count", 0.0) - before.get(name + "_count", 0.0)
        total = after.get(name + "_sum", 0.0) - before.get(name + "_sum", 0.0)
        if count > 0:
            out[what] = total / count
            if what == "req_per_msg":
                out["messages"] = count
    return out


def run_load(loadgen: Loadgen, scenarios: list[dict[str, Any]], gateway: str) -> list[dict[str, Any]]:
    results = []
    for sc in scenarios:
        through_gateway = sc["kind"] in ("rest_json", "rest_parquet")
        before = batch_counters(gateway) if through_gateway else None
        r = loadgen.scenario(sc)
        if sc["clients"] >= 32 and r["loadgen_saturated"] and len(loadgen.workers) > 1:
            print(
                f"  {sc['target']:<22} clients={sc['clients']:>2} rows={sc['rows']:>4}  {r['rps']:8.0f} req/s with one load-generator "
                f"process at {r['loadgen_cpu_share_max_process'] * 100:.0f} % of a core: again with two",
                flush=True,
            )
            single = {k: r[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "loadgen_cpu_share", "loadgen_cpu_us_per_request")}
            before = batch_counters(gateway) if through_gateway else None
            r = loadgen.scenario(sc, processes=2)
            r["single_process"] = single
        r.update(per_message(before, batch_counters(gateway)) if through_gateway else per_message(None, None))
        print(
            f"  {r['target']:<22} clients={r['clients']:>2} rows={r['rows']:>4}  {r['rps']:8.0f} req/s  "
            f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  loadgen {r['loadgen_cpu_us_per_request'] or 0:6.0f} µs/req "
            f"{r['loadgen_cpu_share'] * 100:3.0f} %"
            + (f" ({r['loadgen_procs']} procs)" if r["loadgen_procs"] > 1 else "")
            + (f"  req/msg {r['req_per_msg']:.2f}" if r["req_per_msg"] is not None else "")
            + (f"  ERRORS {r['errors']}: {r['first_error']}" if r["errors"] else ""),
            flush=True,
        )
        results.append(r)
    return results


# ---- the memory soak (P5) ----------------------------------------------------


def soak_plan(seconds: float) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "clients_1": 24,  # 1-row REST Parquet
        "clients_1000": 8,  # 1,000-row REST Parquet: 32 Parquet clients in all
        "clients_json": 1,  # a stream of 1-row REST JSON predicts, one after the other
        "fit_every": 5.0,
        "fit_rows": 10_000,
        "fit_name": "bench-10000",  # the model the predicts use: each fit is a new version of it
        # RSS sampling, and the baseline: after min(10 % of the soak, 15 s) of load, when the
        # processes' pools, caches and allocator arenas have filled (they are warm from the load phase already).
        "sample_every": min(5.0, max(1.0, seconds / 10)),
        "baseline_after": min(0.1 * seconds, 15.0),
    }


def memory_soak(loadgen: Loadgen, pids: dict[str, int], seconds: float) -> dict[str, Any]:
    import threading

    plan = soak_plan(seconds)
    steps = max(1, round(seconds / plan["sample_every"]))
    interval = seconds / steps
    start_at = time.time() + 1.0
    samples: list[dict[str, Any]] = []
    stop = threading.Event()

    def sampler() -> None:
        for k in range(steps + 1):
            if stop.wait(max(0.0, start_at + k * interval - time.time())):
                return
            samples.append({"t": round(time.time() - start_at, 2), **{name: vm_kib(pid, "VmRSS") for name, pid in pids.items()}})

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        load = loadgen.soak(plan, start_at)
    except BaseException:
        stop.set()  # interrupted or failed: no more samples
        raise
    finally:
        thread.join(timeout=interval + 2)  # the last sample is due as the load stops
        stop.set()
    out: dict[str, Any] = {"plan": plan, "load": load, "samples": samples, "processes": {}}
    base_i = next((i for i, s in enumerate(samples) if s["t"] >= plan["baseline_after"] - 0.05), 0)
    for name in pids:
        series = [(s["t"], s[name]) for s in samples if s.get(name)]
        if not series:
            continue
        base = next((v for t, v in series if t >= samples[base_i]["t"]), series[0][1])
        end = series[-1][1]
        after = [(t, v) for t, v in series if t >= samples[base_i]["t"]]
        slope = float(np.polyfit([t for t, _ in after], [v for _, v in after], 1)[0]) * 60 / 1024 if len(after) >= 3 else None
        out["processes"][name] = {
            "rss_baseline_kib": base,
            "rss_end_kib": end,
            "rss_max_kib": max(v for _, v in series),
            "growth_pct": (end - base) / base * 100,
            "trend_mib_per_min": slope,
        }
    return out


# ---- the ml-server stack -----------------------------------------------------


class Processes:
    """Child processes started by this run, stopped in reverse order."""

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

    def stop(self) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def purge_namespace(namespace: str) -> None:
    """Delete the queues and exchanges this run left on the broker (only names under its namespace)."""
    from tests.stack import purge_namespace as purge

    purge(namespace, ["logreg"], BROKER_URL)


def consumers_on(namespace: str, queues: list[str]) -> bool:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "consumers"], capture_output=True, text=True, timeout=30).stdout
    have = dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)
    return all(int(have.get(f"{namespace}.{q}", 0)) >= 1 for q in queues)


def start_stack(procs: Processes, workdir: Path, namespace: str) -> tuple[str, dict[str, int]]:
    import requests

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_DATA_DIR": str(workdir / "data"),
        "ML_SERVER_DATABASE_URL": f"sqlite:///{workdir / 'data' / 'ml-server.db'}",
        "ML_SERVER_BROKER_URL": BROKER_URL,
        "ML_SERVER_NAMESPACE": namespace,
        "ML_SERVER_PORT": str(port),
        "ML_SERVER_SECRET": uuid.uuid4().hex,
        "ML_SERVER_LOG_LEVEL": "WARNING",
        "ML_SERVER_METRICS_PORT": "0",  # no consumer /metrics: a fixed port may be taken by another stack on this machine
    }
    subprocess.run([sys.executable, "-m", "gateway.cli", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    gateway = procs.spawn("gateway", [sys.executable, "-m", "gateway"], env)
    consumer = procs.spawn("consumer-logreg", [sys.executable, "-m", "consumers", "logreg"], env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        for name, p in (("gateway", gateway), ("consumer-logreg", consumer)):
            if p.poll() is not None:
                raise Fatal(f"{name} exited with {p.returncode}:\n{procs.log(name)}")
        return requests.get(f"{url}/readyz", timeout=2).ok and consumers_on(namespace, ["logreg.train", "logreg.predict"])

    wait_for(ready, 90, "the gateway and the logreg consumer", interval=0.3)
    return url, {"gateway": gateway.pid, "consumer": consumer.pid}


def fit_body(rows: int) -> bytes:
    """The Parquet body of a fit of `rows` x 10 (features and the `label` target)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = make_data(rows)
    table = pa.Table.from_pandas(x.join(y), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"ml_server.target": json.dumps(["label"]).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def fit_through_server(url: str, rows: int, name: str) -> dict[str, Any]:
    import requests

    body = fit_body(rows)
    session = requests.Session()
    t = time.perf_counter()
    r = session.put(f"{url}/logreg", params={"name": name, "retrain": "true"}, data=body, headers={"Content-Type": PARQUET}, timeout=60)
    r.raise_for_status()
    key = r.json()["model_key"]
    accepted = time.perf_counter() - t
    while True:
        s = session.get(f"{url}/logreg", params={"model_key": key}, timeout=10).json()
        if s["status"] in ("done", "failed"):
            break
        time.sleep(0.01)
    total = time.perf_counter() - t
    if s["status"] != "done":
        raise RuntimeError(f"fit of {rows} rows failed: {s.get('error')}")
    return {"model_key": key, "seconds": total, "accepted_seconds": accepted, "body_bytes": len(body)}


# ---- MLServer (optional) -----------------------------------------------------


def ensure_mlserver() -> tuple[Path | None, str]:
    """The venv's mlserver executable, or None and why not."""
    exe = MLSERVER_VENV / "bin" / "mlserver"
    py = MLSERVER_VENV / "bin" / "python"
    check = [str(py), "-c", "import mlserver, mlserver_sklearn, sklearn; print(mlserver.__version__)"]
    if exe.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return exe, ""
    import sklearn

    print(f"installing mlserver and mlserver-sklearn into {MLSERVER_VENV} ...", flush=True)
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True, capture_output=True, timeout=300)
        r = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "mlserver", "mlserver-sklearn", f"scikit-learn=={sklearn.__version__}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"could not create {MLSERVER_VENV}: {e}"
    if r.returncode != 0:
        return None, "pip install mlserver mlserver-sklearn failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    if subprocess.run(check, capture_output=True).returncode != 0:
        return None, "mlserver installed but does not import"
    return exe, ""


def start_mlserver(procs: Processes, workdir: Path, model: Any) -> tuple[str, int, str]:
    import joblib
    import requests

    exe, why = ensure_mlserver()
    if exe is None:
        raise RuntimeError(why)
    version = subprocess.run(
        [str(MLSERVER_VENV / "bin" / "python"), "-c", "import mlserver; print(mlserver.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    folder = workdir / "mlserver"
    (folder / "logreg").mkdir(parents=True)
    joblib.dump(model, folder / "logreg" / "model.joblib")
    http_port, grpc_port = free_port(), free_port()
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": free_port(),
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    (folder / "logreg" / "model-settings.json").write_text(
        json.dumps({"name": "logreg", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}})
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = procs.spawn("mlserver", [str(exe), "start", str(folder)], env, cwd=folder)
    url = f"http://127.0.0.1:{http_port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise Fatal(f"mlserver exited with {proc.returncode}: {procs.log('mlserver')[-800:]}")
        return requests.get(f"{url}/v2/models/logreg/ready", timeout=2).ok

    wait_for(ready, 120, "MLServer", interval=0.3)
    return url, proc.pid, version


# ---- report ------------------------------------------------------------------


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def batch_settings(environ: Any) -> dict[str, Any]:
    """The gateway's coalescing settings in effect for this run (it inherits this environment)."""
    from contracts.settings import SETTINGS

    out: dict[str, Any] = {}
    for attr in BATCH_SETTINGS:
        name, parse, default, _ = SETTINGS[attr]
        raw = environ.get(name, default)
        out[name] = parse(name, raw) if raw is not None else None
    return out


def score_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets (README, Performance), each measured, met, missed or not measured."""
    load = results.get("load") or []

    def find(kind: str, clients: int, rows: int) -> dict[str, Any] | None:
        return next((r for r in load if r["kind"] == kind and r["clients"] == clients and r["rows"] == rows and r["requests"]), None)

    names = {"rest_parquet": "REST Parquet", "rest_json": "REST JSON", "amqp": "direct AMQP"}
    out: list[dict[str, Any]] = []

    def add(tid: str, what: str, value: float | None, shown: str, target: str, met: bool | None, note: str = "") -> None:
        out.append({"id": tid, "what": what, "value": value, "shown": shown, "target": target,
                    "status": "not measured" if met is None else ("met" if met else "missed"), "note": note})

    mls_skipped = results.get("mlserver_skipped")
    why_not = f"MLServer not run ({mls_skipped})" if mls_skipped else "MLServer not measured"
    # P1: 1 row, 32 connections, best ml-server path against MLServer.
    ml = find("mlserver", 32, 1)
    mine = [(names[k], find(k, 32, 1)) for k in ("rest_parquet", "rest_json", "amqp")]
    mine = [(n, r) for n, r in mine if r]
    what = "1-row predict, 32 connections: best ml-server path ÷ MLServer, req/s"
    if ml and mine:
        name, best = max(mine, key=lambda nr: nr[1]["rps"])
        v = best["rps"] / ml["rps"]
        add("P1", what, v, f"{v:.2f}× ({name} {fmt(best['rps'])} vs {fmt(ml['rps'])} req/s)", "≥ 1.5×", v >= 1.5)
    else:
        add("P1", what, None, "not measured", "≥ 1.5×", None, why_not)
    # P2: 1,000 rows, 32 connections, Parquet (REST or direct AMQP, the better) against MLServer JSON.
    ml = find("mlserver", 32, 1000)
    mine = [(names[k], find(k, 32, 1000)) for k in ("rest_parquet", "amqp")]
    mine = [(n, r) for n, r in mine if r]
    what = "1,000-row Parquet predict, 32 connections ÷ MLServer JSON, req/s"
    if ml and mine:
        name, best = max(mine, key=lambda nr: nr[1]["rps"])
        v = best["rps"] / ml["rps"]
        others = "; ".join(f"{n} {r['rps'] / ml['rps']:.2f}×" for n, r in mine if r is not best)
        add("P2", what, v, f"{v:.2f}× ({name} {fmt(best['rps'])} vs {fmt(ml['rps'])} req/s" + (f"; {others})" if others else ")"),
            "≥ 2×", v >= 2)
    else:
        add("P2", what, None, "not measured", "≥ 2×", None, why_not)
    # P3: 1 row, 1 connection, p50 against the echo-RPC floor's p50.
    floor = find("echo", 1, 1)
    for kind in ("rest_parquet", "amqp"):
        r = find(kind, 1, 1)
        what = f"1-row p50, 1 connection, {names[kind]} ÷ echo-RPC floor p50"
        if r and floor:
            v = r["p50_ms"] / floor["p50_ms"]
            add("P3", what, v, f"{v:.2f}× ({r['p50_ms']:.2f} vs {floor['p50_ms']:.2f} ms)", "≤ 2×", v <= 2)
        else:
            add("P3", what, None, "not measured", "≤ 2×", None)
    # P4: the 100,000 x 10 fit, submit to done, against the in-process fit.
    fit = (results.get("fit") or {}).get("100000")
    local = ((results.get("in_process") or {}).get("fit") or {}).get("100000")
    what = "100,000×10 fit, submit to done"
    if fit and local:
        bound = 1.2 * local["seconds"] + 0.15
        add("P4", what, fit["seconds"], f"{fit['seconds']:.3f} s (in-process {local['seconds']:.3f} s)",
            f"≤ 1.2 × in-process + 0.15 s = {bound:.3f} s", fit["seconds"] <= bound)
    else:
        add("P4", what, None, "not measured", "≤ 1.2 × in-process + 0.15 s", None)
    # P5: RSS growth during the soak, the larger of the gateway's and the consumer's.
    soak = results.get("soak")
    what = "RSS growth during the memory soak (gateway, consumer)"
    if soak and soak.get("processes"):
        growth = {n: m["growth_pct"] for n, m in soak["processes"].items()}
        v = max(growth.values())
        add("P5", what, v, ", ".join(f"{n} {g:+.1f} %" for n, g in growth.items()) + f" over {soak['plan']['seconds']:g} s",
            "growth < 10 %", v < 10)
    else:
        add("P5", what, None, "not measured", "growth < 10 %", None, "no soak (--soak 0)")
    return out


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    m = results["machine"]
    lines.append("**Targets** (README, Performance):")
    lines.append("")
    lines.append("| target | measured | wanted | status |")
    lines.append("| --- | --- | --- | --- |")
    for t in results.get("targets", []):
        status = {"met": "met", "missed": "**missed**", "not measured": "not measured"}[t["status"]]
        lines.append(f"| {t['id']}: {t['what']} | {t['shown']}{' – ' + t['note'] if t['note'] else ''} | {t['target']} | {status} |")
    lines.append("")
    lines.append(f"Run {results['started_at']} on {m['cpus']} CPUs ({m['cpu_model']}), {m['os']}, Python {m['python']}, "
                 f"RabbitMQ {m['rabbitmq']}, scikit-learn {m['sklearn']}; {results['duration']:g} s per measurement "
                 f"after {results['warmup']:g} s warm-up; load average at start {' / '.join(map(str, m.get('loadavg_at_start', [])))}, "
                 f"at end {' / '.join(map(str, results.get('loadavg_at_end', [])))}. Everything (broker, servers, load generator) shares these CPUs.")
    lines.append("")
    b = results.get("batching") or {}
    lines.append("The gateway coalesces concurrent predicts for the same model into one broker message: "
                 + ", ".join(f"`{k}={v}`" for k, v in b.items())
                 + ". req/msg: mean predict requests per broker message during the measurement (warm-up included), "
                 "from the gateway's `ml_server_gateway_predict_batch_requests` histogram (Δ_sum ÷ Δ_count of `GET /metrics` "
                 "before and after); direct AMQP does not go through the gateway.")
    lines.append("")
    ip = results["in_process"]
    lines.append("**Predict** (LogisticRegression, 10 features). Ratios: requests/s against the echo-RPC floor at the same "
                 "concurrency, and against MLServer at the same clients and rows; p50 against the floor's p50.")
    lines.append("")
    lines.append("| target | clients | rows | req/s | p50 ms | p99 ms | req/msg | loadgen CPU µs/req | loadgen CPU % of a core | req/s vs floor | p50 vs floor | req/s vs MLServer |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in sorted(ip["predict"].values(), key=lambda v: (v["input"], v["rows"])):
        lines.append(
            f"| in-process `predict` ({p['input']}) | 1 | {p['rows']} | {fmt(p['rps'])} | {fmt(p['seconds_per_call'] * 1000, 3)} (mean) | – | – | – | – | – | – | – |"
        )
    floor = {r["clients"]: r for r in results["load"] if r["target"] == "echo RPC (floor)"}
    mls = {(r["clients"], r["rows"]): r for r in results["load"] if r["target"] == "MLServer REST JSON"}
    notes: list[str] = []
    saturated = split = False
    for r in results["load"]:
        f = floor.get(r["clients"])
        ml = mls.get((r["clients"], r["rows"]))
        is_floor = r["target"] == "echo RPC (floor)"
        cpu = fmt(r["loadgen_cpu_share"] * 100)
        if r.get("loadgen_procs", 1) > 1:
            split = True
            cpu += f" ({r['loadgen_procs']} procs)‡"
            single = r.get("single_process") or {}
            notes.append(f"{r['target']}, {r['clients']} clients, {r['rows']:,} row{'s' if r['rows'] != 1 else ''}, with one load-generator process: "
                         f"{fmt(single.get('rps'))} req/s at {fmt((single.get('loadgen_cpu_share') or 0) * 100)} % of a core")
        if r.get("loadgen_saturated"):
            saturated = True
            cpu += " †"
        lines.append(
            f"| {r['target']} | {r['clients']} | {r['rows'] if not is_floor else '1 (echo)'} | {fmt(r['rps'])} | {fmt(r['p50_ms'], 2)} | "
            f"{fmt(r['p99_ms'], 2)} | {fmt(r.get('req_per_msg'), 2)} | {fmt(r['loadgen_cpu_us_per_request'])} | {cpu} | "
            f"{ratio(r['rps'], f['rps']) if f and not is_floor else '–'} | {ratio(r['p50_ms'], f['p50_ms']) if f and not is_floor else '–'} | "
            f"{ratio(r['rps'], ml['rps']) if ml and not is_floor and r['kind'] != 'mlserver' else '–'} |"
            + (f" ({r['errors']} errors)" if r["errors"] else "")
        )
    if saturated or split:
        lines.append("")
    if saturated:
        lines.append(f"† a load-generator process used more than {LOADGEN_SATURATED:.0%} of a core in this measurement: "
                     "the load generator may have limited it, so the server may do better than shown.")
    if split:
        lines.append("‡ its one load-generator process was saturated (†), so it was measured again with two processes "
                     "(half the clients each, started together); the CPU % is both together. "
                     + "; ".join(notes) + ".")
    lines.append("")
    lines.append("**Fit** (LogisticRegression, default parameters), submit (REST Parquet `PUT`) to `done` seen by polling the status every 10 ms:")
    lines.append("")
    lines.append("| rows × features | in-process fit s | ml-server submit-to-done s | ratio | overhead s |")
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for rows, f in results["fit"].items():
        local = ip["fit"][rows]["seconds"]
        lines.append(f"| {int(rows):,} × 10 | {local:.3f} | {f['seconds']:.3f} | {f['seconds'] / local:.2f}× | {f['seconds'] - local:.3f} |")
    lines.append("")
    soak = results.get("soak")
    if soak:
        plan, load = soak["plan"], soak["load"]
        lines.append(
            f"**Memory soak** (P5): {plan['seconds']:g} s of steady mixed load against the gateway and the `logreg` consumer: "
            f"REST Parquet predicts from {plan['clients_1'] + plan['clients_1000']} clients ({plan['clients_1']} of 1 row, "
            f"{plan['clients_1000']} of 1,000 rows), a stream of 1-row REST JSON predicts ({plan['clients_json']} client), and a "
            f"{plan['fit_rows']:,}×10 fit every {plan['fit_every']:g} s (a new version of the model the predicts use). "
            f"RSS (VmRSS) sampled every {soak['plan']['sample_every']:g} s; the baseline is the first sample after "
            f"{plan['baseline_after']:g} s of load (10 % of the soak, at most 15 s; the processes are warm from the measurements "
            f"above), the end is the last sample, taken as the load stops; growth = end ÷ baseline − 1. The consumer's fits run in "
            f"a child process, not counted."
        )
        lines.append("")
        # A least-squares slope over a short soak is mostly noise (GC, allocator): shown from a minute on.
        trend = plan["seconds"] >= 60
        lines.append("| process | RSS after warm-up MiB | RSS at end MiB | max MiB | growth |" + (" trend MiB/min |" if trend else "") + " target |")
        lines.append("| --- | ---: | ---: | ---: | ---: |" + (" ---: |" if trend else "") + " --- |")
        for name, p in soak["processes"].items():
            lines.append(
                f"| {name} | {p['rss_baseline_kib'] / 1024:.1f} | {p['rss_end_kib'] / 1024:.1f} | {p['rss_max_kib'] / 1024:.1f} | "
                f"{p['growth_pct']:+.1f} % |" + (f" {fmt(p['trend_mib_per_min'], 2)} |" if trend else "")
                + f" P5: growth < 10 % ({'met' if p['growth_pct'] < 10 else '**missed**'}) |"
            )
        lines.append("")
        req = load["requests"]
        lines.append(
            f"Served during the soak: {load['requests_total']:,} predicts ({fmt(load['rps'])} req/s: {req.get('rest_parquet_1', 0):,} of 1 row "
            f"and {req.get('rest_parquet_1000', 0):,} of 1,000 rows over REST Parquet, {req.get('rest_json_1', 0):,} over REST JSON), "
            f"{load['fits_done']} fits done ({load['fits_submitted']} submitted, {load['fits_failed']} failed), "
            f"{load['errors']} errors" + (f" (first: `{load['first_error']}`)" if load["errors"] else "")
            + f"; load generator at {fmt(load['loadgen_cpu_share'] * 100)} % of a core" + (" †" if load.get("loadgen_saturated") else "") + "."
        )
        lines.append("")
    lines.append("**Memory** at the end of the run" + (", after the soak" if soak else "")
                 + " (peak RSS = VmHWM; the consumer's fit runs in a child process, not counted):")
    lines.append("")
    lines.append("| process | peak RSS MiB | RSS at end MiB |")
    lines.append("| --- | ---: | ---: |")
    for name, mem in results["memory"].items():
        lines.append(f"| {name} | {fmt((mem['VmHWM_kib'] or 0) / 1024, 1)} | {fmt((mem['VmRSS_kib'] or 0) / 1024, 1)} |")
    lines.append("")
    if results.get("mlserver_skipped"):
        lines.append(f"MLServer: skipped ({results['mlserver_skipped']}).")
    else:
        lines.append(f"MLServer {results.get('mlserver_version')}: scikit-learn runtime, same model (joblib), V2 REST JSON, `parallel_workers: 0`.")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    import sklearn

    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rabbit = "?"
    try:
        out = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True, timeout=30).stdout.strip()
        rabbit = out or rabbit
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "rabbitmq": rabbit,
        "sklearn": sklearn.__version__,
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
    }


# ---- main --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
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
    p.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        if args.role[0] == "loadgen":
            loadgen_worker(args.role[1])
        elif args.role[0] == "echo":
            asyncio.run(echo_server(args.role[1]))
        return 0

    duration, warmup = (1.0, 0.3) if args.quick else (3.0, 0.7)
    soak_seconds = args.soak if args.soak is not None else (20.0 if args.quick else 300.0)
    if soak_seconds < 0:
        p.error("--soak must not be negative")
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    workdir = Path(tempfile.mkdtemp(prefix="ml-server-bench-"))
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    procs = Processes(workdir)
    loadgen: Loadgen | None = None

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C cleans up, even when started with SIGINT ignored
    results: dict[str, Any] = {
        "started_at": started,
        "duration": duration,
        "warmup": warmup,
        "namespace": namespace,
        "soak_seconds": soak_seconds,
        "batching": batch_settings(os.environ),
    }
    t_run = time.perf_counter()
    try:
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
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        echo = procs.spawn("echo", [sys.executable, "-m", "benchmarks.run", "--role", "echo", namespace], env)
        def echo_ready() -> bool:
            if echo.poll() is not None:
                raise Fatal(f"the echo server exited with {echo.returncode}:\n{procs.log('echo')}")
            return "ready" in procs.log("echo")

        wait_for(echo_ready, 60, "echo server")

        print("fit through ml-server (submit to done) ...", flush=True)
        results["fit"] = {}
        predict_key = None
        for rows in (10_000, 100_000):
            f = fit_through_server(url, rows, f"bench-{rows}")
            results["fit"][rows] = f
            predict_key = predict_key or f["model_key"]
            print(f"  fit {rows:>7,} rows: {f['seconds']:.3f} s (202 after {f['accepted_seconds']:.3f} s)", flush=True)

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

        scenarios: list[dict[str, Any]] = [
            {"target": "echo RPC (floor)", "kind": "echo", "clients": c, "rows": 1} for c in (1, 32)
        ]
        targets = [("ml-server REST JSON", "rest_json"), ("ml-server REST Parquet", "rest_parquet"), ("ml-server AMQP", "amqp")]
        if mlserver_url:
            targets.append(("MLServer REST JSON", "mlserver"))
        for name, kind in targets:
            for rows in (1, 1000):
                for clients in (1, 32):
                    scenarios.append({"target": name, "kind": kind, "clients": clients, "rows": rows})
        print(f"load ({len(scenarios)} measurements, {warmup:g} s warm-up + {duration:g} s each, load generator in its own process) ...", flush=True)
        spec = {"gateway": url, "model_key": predict_key, "namespace": namespace, "mlserver": mlserver_url, "duration": duration, "warmup": warmup}
        loadgen = Loadgen(spec, workdir)
        results["load"] = run_load(loadgen, scenarios, url)

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
                print(
                    f"  {name}: RSS {m['rss_baseline_kib'] / 1024:.1f} MiB after warm-up, {m['rss_end_kib'] / 1024:.1f} MiB at the end "
                    f"({m['growth_pct']:+.1f} %)",
                    flush=True,
                )

        results["memory"] = {name: {"pid": pid, "VmHWM_kib": vm_kib(pid, "VmHWM"), "VmRSS_kib": vm_kib(pid, "VmRSS")} for name, pid in pids.items()}
        results["total_seconds"] = time.perf_counter() - t_run
        results["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    except KeyboardInterrupt:
        print("\ninterrupted: stopping and cleaning up", file=sys.stderr)
        return 130
    finally:
        if loadgen is not None:
            loadgen.close()
        procs.stop()
        try:
            purge_namespace(namespace)
        except Exception as e:  # noqa: BLE001 - report, don't mask
            print(f"could not purge namespace {namespace}: {e}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)

    # JSON keys must be strings; keep it readable.
    results = json.loads(json.dumps(results, default=str))
    results["targets"] = score_targets(results)
    markdown = render(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"results-{stamp}.json").write_text(json.dumps(results, indent=2))
    (args.out / f"results-{stamp}.md").write_text(markdown)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2))
    (args.out / "latest.md").write_text(markdown)
    print()
    print(markdown)
    print(f"written to {args.out}/latest.md and latest.json (and results-{stamp}.*); whole run {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
