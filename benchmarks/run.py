"""Side-by-side benchmark of ml-server, in one run, on this machine.

    .venv/bin/python -m benchmarks.run [--quick] [--out DIR] [--mlserver]

Measures, against the local RabbitMQ (ML_SERVER_BENCH_BROKER_URL, default
amqp://guest:guest@127.0.0.1:5672/):

- in-process: a fitted LogisticRegression (10 features) `predict` on 1 and 1,000 rows;
- the broker floor: an aio-pika echo RPC (correlation ids, own reply queue) through
  the same RabbitMQ, at 1 and 32 concurrent callers;
- ml-server: REST JSON, REST Parquet and direct AMQP predicts at 1 and 32 concurrent
  clients, 1 and 1,000 rows (requests/s, p50/p99), from a load generator in a process
  of its own that reports its own CPU time per request;
- fit of 10,000x10 and 100,000x10, submit to done, against the in-process fit;
- peak RSS (VmHWM) of the gateway and consumer processes at the end;
- with --mlserver: Seldon MLServer (scikit-learn runtime, same model) installed on
  demand into benchmarks/.venv-mlserver.

It starts its own gateway and `logreg` consumer (SQLite in a temporary folder, a
namespace of its own, a free port), and stops them and deletes its queues and
exchanges at the end, also on Ctrl-C. Results: results.json and results.md
(and latest.md / latest.json) in benchmarks/results/ or --out.
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


async def run_scenario(spec: dict[str, Any], sc: dict[str, Any]) -> dict[str, Any]:
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
    n = len(latencies)
    cpu = marks["cpu1"] - marks["cpu0"]
    return {
        **sc,
        "requests": n,
        "seconds": duration,
        "rps": n / duration,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "loadgen_cpu_us_per_request": (cpu / n * 1e6) if n else None,
        "loadgen_cpu_share": cpu / duration,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


async def loadgen(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    results = []
    for sc in spec["scenarios"]:
        r = await run_scenario(spec, sc)
        print(
            f"  {r['target']:<22} clients={r['clients']:>2} rows={r['rows']:>4}  {r['rps']:8.0f} req/s  "
            f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  loadgen {r['loadgen_cpu_us_per_request'] or 0:6.0f} µs/req"
            + (f"  ERRORS {r['errors']}: {r['first_error']}" if r["errors"] else ""),
            flush=True,
        )
        results.append(r)
    Path(out_path).write_text(json.dumps(results))


def run_loadgen(scenarios: list[dict[str, Any]], spec: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    spec = {**spec, "scenarios": scenarios}
    spec_path, out_path = workdir / f"loadgen-{uuid.uuid4().hex[:6]}.json", workdir / f"loadgen-out-{uuid.uuid4().hex[:6]}.json"
    spec_path.write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--role", "loadgen", str(spec_path), str(out_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    return json.loads(out_path.read_text())


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

    purge(namespace, BROKER_URL)


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


def fit_through_server(url: str, rows: int, name: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import requests

    x, y = make_data(rows)
    table = pa.Table.from_pandas(x.join(y), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"ml_server.target": json.dumps(["label"]).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    body = buf.getvalue()
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


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    m = results["machine"]
    lines.append(f"Run {results['started_at']} on {m['cpus']} CPUs ({m['cpu_model']}), {m['os']}, Python {m['python']}, "
                 f"RabbitMQ {m['rabbitmq']}, scikit-learn {m['sklearn']}; {results['duration']:g} s per measurement "
                 f"after {results['warmup']:g} s warm-up; load average at start {' / '.join(map(str, m.get('loadavg_at_start', [])))}, "
                 f"at end {' / '.join(map(str, results.get('loadavg_at_end', [])))}. Everything (broker, servers, load generator) shares these CPUs.")
    lines.append("")
    ip = results["in_process"]
    lines.append("**Predict** (LogisticRegression, 10 features). Ratios: requests/s against the echo-RPC floor at the same "
                 "concurrency, and against MLServer at the same clients and rows; p50 against the floor's p50.")
    lines.append("")
    lines.append("| target | clients | rows | req/s | p50 ms | p99 ms | loadgen CPU µs/req | loadgen CPU % of a core | req/s vs floor | p50 vs floor | req/s vs MLServer |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in sorted(ip["predict"].values(), key=lambda v: (v["input"], v["rows"])):
        lines.append(
            f"| in-process `predict` ({p['input']}) | 1 | {p['rows']} | {fmt(p['rps'])} | {fmt(p['seconds_per_call'] * 1000, 3)} (mean) | – | – | – | – | – | – |"
        )
    floor = {r["clients"]: r for r in results["load"] if r["target"] == "echo RPC (floor)"}
    mls = {(r["clients"], r["rows"]): r for r in results["load"] if r["target"] == "MLServer REST JSON"}
    for r in results["load"]:
        f = floor.get(r["clients"])
        ml = mls.get((r["clients"], r["rows"]))
        is_floor = r["target"] == "echo RPC (floor)"
        lines.append(
            f"| {r['target']} | {r['clients']} | {r['rows'] if not is_floor else '1 (echo)'} | {fmt(r['rps'])} | {fmt(r['p50_ms'], 2)} | "
            f"{fmt(r['p99_ms'], 2)} | {fmt(r['loadgen_cpu_us_per_request'])} | {fmt(r['loadgen_cpu_share'] * 100)} | "
            f"{ratio(r['rps'], f['rps']) if f and not is_floor else '–'} | {ratio(r['p50_ms'], f['p50_ms']) if f and not is_floor else '–'} | "
            f"{ratio(r['rps'], ml['rps']) if ml and not is_floor and r['kind'] != 'mlserver' else '–'} |"
            + (f" ({r['errors']} errors)" if r["errors"] else "")
        )
    lines.append("")
    lines.append("**Fit** (LogisticRegression, default parameters), submit (REST Parquet `PUT`) to `done` seen by polling the status every 10 ms:")
    lines.append("")
    lines.append("| rows × features | in-process fit s | ml-server submit-to-done s | ratio | overhead s |")
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for rows, f in results["fit"].items():
        local = ip["fit"][rows]["seconds"]
        lines.append(f"| {int(rows):,} × 10 | {local:.3f} | {f['seconds']:.3f} | {f['seconds'] / local:.2f}× | {f['seconds'] - local:.3f} |")
    lines.append("")
    lines.append("**Memory** at the end of the run (peak RSS = VmHWM; the consumer's fit runs in a child process, not counted):")
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
    lines.append("")
    lines.append("The gateway does not coalesce predicts yet: every request is one broker round trip, so these are baseline numbers.")
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
    p.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        if args.role[0] == "loadgen":
            asyncio.run(loadgen(args.role[1], args.role[2]))
        elif args.role[0] == "echo":
            asyncio.run(echo_server(args.role[1]))
        return 0

    duration, warmup = (1.0, 0.3) if args.quick else (3.0, 0.7)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    workdir = Path(tempfile.mkdtemp(prefix="ml-server-bench-"))
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    procs = Processes(workdir)

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C cleans up, even when started with SIGINT ignored
    results: dict[str, Any] = {"started_at": started, "duration": duration, "warmup": warmup, "namespace": namespace}
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
        results["load"] = run_loadgen(scenarios, spec, workdir)

        results["memory"] = {name: {"pid": pid, "VmHWM_kib": vm_kib(pid, "VmHWM"), "VmRSS_kib": vm_kib(pid, "VmRSS")} for name, pid in pids.items()}
        results["total_seconds"] = time.perf_counter() - t_run
        results["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    except KeyboardInterrupt:
        print("\ninterrupted: stopping and cleaning up", file=sys.stderr)
        return 130
    finally:
        procs.stop()
        try:
            purge_namespace(namespace)
        except Exception as e:  # noqa: BLE001 - report, don't mask
            print(f"could not purge namespace {namespace}: {e}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)

    # JSON keys must be strings; keep it readable.
    results = json.loads(json.dumps(results, default=str))
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
