"""Per-process figures for the capacity plan (docs/capacity.md).

    python -m benchmarks.capacity            # about 2 minutes; prints Markdown, writes benchmarks/results/capacity-*.json

A gateway and a `logreg` consumer on a PostgreSQL database of their own (created and dropped here) measure:
- CPU time per predict in the gateway and in the consumer (from /proc, so a busy shared machine slows the run but
  hardly changes the figure), 1 and 1,000 rows, 32 concurrent REST Parquet clients, with the requests per message;
- fits/s of one consumer (one fit process) for small fits, and the store's writes per fit (PostgreSQL's own
  counters for this database: statements committed, rows inserted and updated, bytes added);
- the broker: persistent messages/s through one quorum queue (publisher confirms, manual acks);
- the time a consumer takes to load a model it has not cached, by the model's size (the artifact read from
  PostgreSQL, its signature checked, unpickled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .bodies import fit_body, parquet_body
from .common import BROKER_URL, FAMILY, HERE, PARQUET, wait_for
from .fits import accepted, finished, fit_url, model_url
from .machine import machine
from .measure import batch_counters, per_message
from .stack import Processes, purge_namespace, start_stack

POSTGRES = os.environ.get("ML_SERVER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def broker_pid() -> int | None:
    """The local RabbitMQ node's Erlang VM (beam.smp), when it runs on this machine."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "beam.smp":
                return int(proc.name)
        except OSError:
            continue
    return None


class Database:
    """A PostgreSQL database of this run's own, so its counters count only this run."""

    def __init__(self) -> None:
        self.name = f"capacity_{uuid.uuid4().hex[:10]}"
        base = POSTGRES.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as c:
            c.execute(sql)

    def __enter__(self) -> Database:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def counters(self) -> dict[str, float]:
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as c:
            c.execute("SELECT pg_stat_clear_snapshot()")
            row = c.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, pg_database_size(datname) "
                "FROM pg_stat_database WHERE datname = %s",
                (self.name,),
            ).fetchone()
        assert row is not None
        return dict(zip(("commits", "inserted", "updated", "deleted", "bytes"), map(float, row)))


def start(procs: Processes, workdir: Path, namespace: str, database: str) -> tuple[str, dict[str, int]]:
    """A gateway and one consumer on `database`, one fit process: the per-process figures' stack."""
    return start_stack(procs, workdir, namespace, ML_SERVER_DATABASE_URL=database, ML_SERVER_FIT_PROCESSES="1")


async def _predicts(url: str, keys: list[str], rows: int, total: int, clients: int) -> float:
    """`total` predicts from `clients` concurrent clients; client i asks model keys[i % len(keys)]."""
    import aiohttp

    body = parquet_body(rows)
    left = total

    async def client(session: aiohttp.ClientSession, model_key: str) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(
                f"{url}/{FAMILY}", params={"model_key": model_key}, data=body, headers={"Content-Type": PARQUET, "Accept": PARQUET}
            ) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"predict: HTTP {r.status}")

    t = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(session, keys[i % len(keys)]) for i in range(clients)))
    return time.perf_counter() - t


def predicts(url: str, pids: dict[str, int], keys: list[str], rows: int, total: int, clients: int) -> dict[str, Any]:
    """CPU per request of the gateway, the consumer and (an upper bound: other clients share it) the broker."""
    asyncio.run(_predicts(url, keys, rows, min(total, 200), clients))  # warm-up: model cached, connections open
    beam = broker_pid()
    if beam:
        pids = {**pids, "broker": beam}
    before, counters = {k: cpu(p) for k, p in pids.items()}, batch_counters(url)
    wall = asyncio.run(_predicts(url, keys, rows, total, clients))
    after, counters_after = {k: cpu(p) for k, p in pids.items()}, batch_counters(url)
    out: dict[str, Any] = {"rows": rows, "clients": clients, "models": len(keys), "requests": total, "wall_req_s": total / wall}
    for k in pids:
        out[f"{k}_cpu_ms_per_req"] = (after[k] - before[k]) / total * 1000
    out.update(per_message(counters, counters_after))
    return out


def fits(url: str, db: Database, count: int, rows: int) -> tuple[dict[str, Any], list[str]]:
    """Fits/s and the store's work per fit. PostgreSQL counts read-only transactions as commits too, so the commits
    of the status reads that wait for the fits are measured apart (the same reads, with no fit) and taken off."""
    import requests

    body = fit_body(rows)
    reads = 0
    with requests.Session() as s:

        def status(key: str) -> Any:
            nonlocal reads
            reads += 1
            return s.get(model_url(url, key), timeout=10).json()

        before = db.counters()
        t = time.perf_counter()
        submitted = []
        for i in range(count):
            r = s.post(fit_url(url), params={"name": f"cap-{i}"}, data=body, headers={"Content-Type": PARQUET}, timeout=60)
            submitted.append(accepted(r.status_code, r.json()))
        for key, version in submitted:
            state = wait_for(lambda: finished(status(key), version), 600, f"fit {key}", interval=0.2)
            if state is None or state[0] != "done":
                raise RuntimeError(f"fit failed: {state}")
        wall = time.perf_counter() - t
        time.sleep(1.0)  # PostgreSQL's statistics reach pg_stat_database within half a second of a transaction
        after = db.counters()
        fit_reads, reads = reads, 0
        for _ in range(50):
            status(submitted[0][0])
        time.sleep(1.0)
        read_commits = (db.counters()["commits"] - after["commits"]) / reads
    delta = {k: (after[k] - before[k]) / count for k in before}
    delta["commits"] -= fit_reads * read_commits / count
    figures = {"fits": count, "rows": rows, "body_bytes": len(body), "fits_per_s": count / wall, "status_reads": fit_reads,
               "commits_per_status_read": read_commits, **{f"{k}_per_fit": v for k, v in delta.items()}}  # fmt: skip
    return figures, [key for key, _ in submitted]


async def _queue(kind: str, seconds: float, size: int) -> dict[str, Any]:
    import aio_pika

    name = f"capacity-{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(BROKER_URL) as connection:
        pub = await connection.channel(publisher_confirms=True)
        queue = await pub.declare_queue(name, durable=True, arguments={"x-queue-type": kind})
        sub = await connection.channel()
        await sub.set_qos(prefetch_count=64)
        received = 0

        async def on(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1

        tag = await queue.consume(on)
        body = os.urandom(size)
        beam = broker_pid()
        beam_before = cpu(beam) if beam else None
        sent = 0
        end = time.perf_counter() + seconds
        t = time.perf_counter()
        while time.perf_counter() < end:
            # 64 publishes in flight at once, each confirmed: how the gateways publish under load.
            await asyncio.gather(
                *(pub.default_exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), name) for _ in range(64))
            )
            sent += 64
        await asyncio.wait_for(_drained(lambda: received >= sent), 30)
        wall = time.perf_counter() - t
        # The broker's CPU per message: an upper bound, when other clients use the same broker meanwhile.
        beam_ms = (cpu(beam) - beam_before) / sent * 1000 if beam and beam_before is not None else None
        await queue.cancel(tag)
        await pub.queue_delete(name)
    return {"queue": kind, "body_bytes": size, "messages": sent, "msgs_per_s": sent / wall, "broker_cpu_ms_per_msg": beam_ms}


async def _drained(done: Any) -> None:
    while not done():
        await asyncio.sleep(0.01)


def model_loads(db: Database) -> list[dict[str, Any]]:
    """Load time of a model a consumer has not cached: read from PostgreSQL, check the signature, unpickle."""
    import numpy as np
    import psycopg
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from consumers import backends

    key = uuid.uuid4().bytes
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 10))
    y = (x[:, 0] + rng.normal(size=len(x)) > 0).astype(int)
    models = [("logreg, 10 features", LogisticRegression().fit(x, y))]
    for trees, depth in ((10, 8), (50, 12), (100, None), (300, None)):
        models.append((f"forest, {trees} trees, depth {depth or 'unbounded'}", RandomForestClassifier(trees, max_depth=depth, random_state=0, n_jobs=1).fit(x, y)))
    out = []
    with psycopg.connect(db.url, autocommit=True) as c:
        c.execute("CREATE TABLE blobs (id int PRIMARY KEY, data bytea)")
        for i, (label, model) in enumerate(models):
            blob = backends.dump(model, key)
            c.execute("INSERT INTO blobs VALUES (%s, %s)", (i, blob))
            times = []
            for _ in range(5):
                t = time.perf_counter()
                row = c.execute("SELECT data FROM blobs WHERE id = %s", (i,)).fetchone()
                assert row is not None
                backends.load(bytes(row[0]), key)
                times.append(time.perf_counter() - t)
            out.append({"model": label, "artifact_bytes": len(blob), "load_ms": sorted(times)[len(times) // 2] * 1000})
    return out


def _machine() -> str:
    m = machine()
    return f"{m['cpus']} CPUs ({m['cpu_model']}), {m['os']}, Python {m['python']}, RabbitMQ {m['rabbitmq']}, scikit-learn {m['sklearn']}"


def markdown(r: dict[str, Any]) -> str:
    lines = [f"Run {r['when']} on {r['machine']}; load average at start {r['load_start']}, at end {r['load_end']}.", ""]
    lines += ["| predict | clients | models | rows | req/msg | gateway CPU ms/req | consumer CPU ms/req | broker CPU ms/req (upper bound) | wall req/s (shared machine) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for p in r["predicts"]:
        lines.append(
            f"| REST Parquet | {p['clients']} | {p['models']} | {p['rows']} | {p['req_per_msg'] or 0:.2f} | {p['gateway_cpu_ms_per_req']:.3f} | "
            f"{p['consumer_cpu_ms_per_req']:.3f} | {p.get('broker_cpu_ms_per_req', float('nan')):.3f} | {p['wall_req_s']:,.0f} |"
        )
    f = r["fits"]
    lines += ["", "| fits | rows × features | fits/s (one fit process) | write commits/fit | rows inserted/fit | rows updated/fit | store bytes/fit |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
              f"| {f['fits']} | {f['rows']:,} × 10 | {f['fits_per_s']:.2f} | {f['commits_per_fit']:.1f} | {f['inserted_per_fit']:.1f} | "
              f"{f['updated_per_fit']:.1f} | {f['bytes_per_fit']:,.0f} |"]  # fmt: skip
    lines += ["", "| queue | body bytes | persistent messages/s (confirmed, acked; one connection) | broker CPU ms/msg (upper bound) |",
              "| --- | ---: | ---: | ---: |"]  # fmt: skip
    lines += [f"| {q['queue']} | {q['body_bytes']} | {q['msgs_per_s']:,.0f} | {q['broker_cpu_ms_per_msg'] or float('nan'):.3f} |" for q in r["broker"]]
    lines += ["", "| model | artifact bytes | load ms (median of 5) |", "| --- | ---: | ---: |"]
    lines += [f"| {m['model']} | {m['artifact_bytes']:,} | {m['load_ms']:.1f} |" for m in r["loads"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--predicts", type=int, default=3000, help="1-row predicts per measurement (1,000-row: a fifth)")
    p.add_argument("--fits", type=int, default=20)
    args = p.parse_args(argv)
    import requests

    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": _machine(),
                               "load_start": " / ".join(f"{v:.2f}" for v in os.getloadavg())}  # fmt: skip
    namespace = f"capacity-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, Database() as db:
        procs = Processes(Path(tmp))
        try:
            url, pids = start(procs, Path(tmp), namespace, db.url)
            r = requests.post(fit_url(url), params={"name": "served"}, data=fit_body(1000), headers={"Content-Type": PARQUET}, timeout=60)
            key, version = accepted(r.status_code, r.json())
            wait_for(lambda: finished(requests.get(model_url(url, key), timeout=10).json(), version), 120, "the model")
            results["fits"], models = fits(url, db, args.fits, 10_000)
            results["predicts"] = [
                predicts(url, pids, [key], 1, args.predicts, 32),
                predicts(url, pids, [key], 1000, args.predicts // 5, 32),
                predicts(url, pids, [key], 1, args.predicts // 5, 1),
                # One model per client: nothing to coalesce, as when traffic is spread over many models.
                predicts(url, pids, models, 1, args.predicts, len(models)),
            ]
        finally:
            procs.stop()
            purge_namespace(namespace)
        results["broker"] = [asyncio.run(_queue(kind, 5.0, 1024)) for kind in ("quorum", "classic")]
        results["loads"] = model_loads(db)
    results["load_end"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    out = HERE / "results" / f"capacity-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(markdown(results))
    print(f"\n(JSON: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
