"""The memory soak (P5): steady mixed load while the gateway's and the consumer's RSS is sampled.

The load runs in a Python load-generator process (`run_soak`): 1-row and
1,000-row REST Parquet predicts from 32 clients, a stream of 1-row seed-JSON
predicts (`columns`), and a fit every 5 s through the resource routes that
makes a new version of the model being predicted. The parent samples RSS
(`memory_soak`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .common import LOADGEN_SATURATED, PARQUET, cpu_seconds, percentile, sleep_until, vm_kib

if TYPE_CHECKING:
    from .loadgen import Loadgen


def soak_plan(seconds: float) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "clients_1": 24,  # 1-row REST Parquet
        "clients_1000": 8,  # 1,000-row REST Parquet: 32 Parquet clients in all
        "clients_json": 1,  # a stream of 1-row seed-JSON predicts, one after the other
        "fit_every": 5.0,
        "fit_rows": 10_000,
        "fit_name": "bench-10000",  # the model the predicts use: each fit is a new version of it
        # RSS sampling, and the baseline: after min(10 % of the soak, 15 s) of load, when the
        # processes' pools, caches and allocator arenas have filled (they are warm from the load phase already).
        "sample_every": min(5.0, max(1.0, seconds / 10)),
        "baseline_after": min(0.1 * seconds, 15.0),
    }


async def run_soak(spec: dict[str, Any], soak: dict[str, Any], start_at: float | None = None) -> dict[str, Any]:
    """The steady mixed load of the memory soak, for soak["seconds"] (in a load-generator process)."""
    import aiohttp

    from .bodies import fit_body, rest_parquet, seed_json
    from .fits import accepted, finished, fit_params, fit_url, model_url

    gateway, key = spec["gateway"], spec["model_key"]
    streams = [
        ("rest_parquet_1", rest_parquet(gateway, key, 1), soak["clients_1"]),
        ("rest_parquet_1000", rest_parquet(gateway, key, 1000), soak["clients_1000"]),
        ("seed_json_1", seed_json(gateway, key, 1, "columns"), soak["clients_json"]),
    ]
    fit = fit_body(soak["fit_rows"])
    counts: dict[str, int] = {name: 0 for name, _, _ in streams}
    latencies: dict[str, list[float]] = {name: [] for name, _, _ in streams}
    fits: dict[str, int] = {"submitted": 0, "done": 0, "failed": 0}
    fit_seconds: list[float] = []
    errors: list[str] = []
    total = sum(n for _, _, n in streams) + 4
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=total), timeout=aiohttp.ClientTimeout(total=120))
    await sleep_until(start_at)
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
                async with session.post(
                    fit_url(gateway), params=fit_params(soak["fit_name"]), data=fit, headers={"Content-Type": PARQUET}
                ) as r:
                    model_key, version = accepted(r.status, await r.json(content_type=None))
                fits["submitted"] += 1
                while loop.time() < t_end:
                    async with session.get(model_url(gateway, model_key)) as r:
                        state = finished(await r.json(content_type=None), version)
                    if state is not None:
                        fits[state[0]] += 1
                        fit_seconds.append(loop.time() - began)
                        break
                    await asyncio.sleep(0.1)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(f"fit: {type(e).__name__}: {e}"[:300])
            await asyncio.sleep(max(0.0, began + soak["fit_every"] - loop.time()))

    tasks = [predictor(name, req.url, req.body, req.headers) for name, req, n in streams for _ in range(n)]
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
        "fit_seconds_mean": float(np.mean(fit_seconds)) if fit_seconds else None,
        "loadgen": "python",
        "loadgen_cpu_share": cpu / seconds,
        "loadgen_saturated": cpu / seconds > LOADGEN_SATURATED,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def memory_soak(loadgen: Loadgen, pids: dict[str, int], seconds: float) -> dict[str, Any]:
    """The soak's load in `loadgen`, while this process samples the RSS of `pids`; growth per process."""
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
