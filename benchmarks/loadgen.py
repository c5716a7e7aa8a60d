"""The Python load generator: asyncio (aiohttp, aio-pika) in processes of its own.

    python -m benchmarks.loadgen SPEC.json     (started by `Loadgen`, driven over stdin/stdout)

It drives the AMQP measurements (the echo floor, direct AMQP predicts), the
memory soak's mixed load, and the HTTP measurements when wrk is not installed.
Each process reports its own CPU time, so a saturated load generator shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .common import BROKER_URL, FAMILY, LOADGEN_SATURATED, PARQUET, ROOT, cpu_seconds, percentile, sleep_until


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

    async def call(self, body: bytes) -> bytes:
        import aio_pika

        cid = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
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
        answer: bytes = reply.body
        return answer

    async def close(self) -> None:
        await self.connection.close()


def amqp_caller(spec: dict[str, Any], kind: str) -> AmqpCaller:
    """Direct AMQP predicts to the family's consumer (as `client.amqp` sends them), or the echo server."""
    from contracts.topology import Header, Topology

    from .echo import ROUTING_KEY, exchange_name

    ns = spec["namespace"]
    if kind == "amqp":
        headers = {Header.MODEL_KEY: spec["model_key"], Header.KWARGS: "{}"}
        return AmqpCaller(Topology(ns).jobs_exchange, Topology.predict_key(FAMILY), headers, PARQUET)
    if kind == "echo":
        return AmqpCaller(exchange_name(ns), ROUTING_KEY, {}, None)
    raise ValueError(f"not an AMQP scenario: {kind!r}")


async def run_scenario(spec: dict[str, Any], sc: dict[str, Any], start_at: float | None = None) -> dict[str, Any]:
    """One measurement from this process: its raw latencies, CPU time and errors (merged by the parent)."""
    import aiohttp

    from .bodies import http_request, parquet_body

    clients = sc["clients"]
    session: aiohttp.ClientSession | None = None
    caller: AmqpCaller | None = None
    if sc["kind"] in ("amqp", "echo"):
        caller = amqp_caller(spec, sc["kind"])
        body = parquet_body(sc["rows"])
        await caller.open()
        url, headers = "", {}
    else:
        req = http_request(spec, sc)
        url, body, headers = req.url, req.body, req.headers
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=aiohttp.ClientTimeout(total=60))

    async def one() -> None:
        if caller is not None:
            await caller.call(body)
            return
        assert session is not None
        async with session.post(url, data=body, headers=headers) as r:
            data = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{sc['kind']}: HTTP {r.status}: {data[:300]!r}")

    await sleep_until(start_at)
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
        "loadgen": "python",
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


def worker_main(spec_path: str) -> None:
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
                from .soak import run_soak

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
        self.workers: list[subprocess.Popen[str]] = []
        try:
            for _ in range(processes):
                self.workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "benchmarks.loadgen", str(spec_path)],
                        cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        start_new_session=True,  # Ctrl-C goes to the benchmark only, which stops them in close()
                    )
                )
        except BaseException:
            self.close()
            raise

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
        result: dict[str, Any] = self._receive(self.workers[0])
        return result

    def close(self) -> None:
        """Stop every load-generator process: end of input first, then SIGTERM, then SIGKILL."""
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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m benchmarks.loadgen SPEC.json (started by the benchmark)", file=sys.stderr)
        sys.exit(2)
    worker_main(sys.argv[1])
