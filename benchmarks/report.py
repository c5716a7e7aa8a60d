"""The results as Markdown: the targets first, then the machine, predicts, fits, the soak and memory."""

from __future__ import annotations

from typing import Any

from .common import LOADGEN_SATURATED
from .targets import comparable, fmt


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b or a != a or b != b:
        return "–"
    return f"{a / b:.2f}×"


def targets_table(results: dict[str, Any]) -> list[str]:
    lines = ["**Targets** (README, Performance):", "", "| target | measured | wanted | status |", "| --- | --- | --- | --- |"]
    for t in results.get("targets", []):
        status = {"met": "met", "missed": "**missed**", "not measured": "not measured"}[t["status"]]
        lines.append(f"| {t['id']}: {t['what']} | {t['shown']}{' – ' + t['note'] if t['note'] else ''} | {t['target']} | {status} |")
    return lines


def header(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    lg = results.get("loadgen") or {}
    if lg.get("http") == "wrk":
        http = (f"HTTP rows (seed JSON, REST Parquet, MLServer): **wrk** ({lg.get('wrk_version')}, {lg.get('wrk_threads')} thread, "
                f"one connection per client), a warm-up run of {lg.get('wrk_warmup_seconds')} s then a measured run of "
                f"{lg.get('wrk_seconds')} s (wrk counts whole seconds); latency percentiles from wrk's histogram")
    else:
        http = f"HTTP rows: the **Python** load generator ({lg.get('why_python') or 'wrk not used'})"
    return [
        f"Run {results['started_at']} on {m['cpus']} CPUs ({m['cpu_model']}), {m['os']}, Python {m['python']}, "
        f"RabbitMQ {m['rabbitmq']}, scikit-learn {m['sklearn']}; {results['duration']:g} s per measurement "
        f"after {results['warmup']:g} s warm-up; load average at start {' / '.join(map(str, m.get('loadavg_at_start', [])))}, "
        f"at end {' / '.join(map(str, results.get('loadavg_at_end', [])))}. Everything (broker, servers, load generator) shares these CPUs.",
        "",
        f"Load generators: {http}. AMQP rows (echo floor, direct AMQP) and the soak: the **Python** load generator "
        "(aiohttp/aio-pika, asyncio, in a process of its own). The `load generator` column says which one produced each row; "
        "MLServer's rows are only compared with rows of the same load generator.",
        "",
        "The gateway coalesces concurrent predicts for the same model into one broker message: "
        + ", ".join(f"`{k}={v}`" for k, v in (results.get("batching") or {}).items())
        + ". req/msg: mean predict requests per broker message during the measurement, from the gateway's "
        "`ml_server_gateway_predict_batch_requests` histogram (Δ_sum ÷ Δ_count of `GET /metrics` before and after; "
        "the Python load generator's warm-up is included, wrk's warm-up run is not); direct AMQP does not go through the gateway.",
    ]


def predict_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "**Predict** (LogisticRegression, 10 features named \"0\"..\"9\"). seed JSON: `POST /logreg` with "
        "`{\"model_key\", \"x\": DataFrame.to_json(orient), \"orient\"}` as the seed's client sends it (a frame with default "
        "labels); REST Parquet: `POST /logreg?model_key=` with a Parquet body and `Accept: application/vnd.apache.parquet`; "
        "MLServer: V2 JSON (one FP64 tensor). Ratios: requests/s against the echo-RPC floor at the same concurrency, and "
        "against MLServer at the same clients and rows; p50 against the floor's and MLServer's p50.",
        "",
        "| target | clients | rows | load generator | req/s | p50 ms | p99 ms | req/msg | loadgen CPU µs/req | loadgen CPU % of a core "
        "| req/s vs floor | p50 vs floor | req/s vs MLServer | p50 vs MLServer |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ip = results["in_process"]
    for p in sorted(ip["predict"].values(), key=lambda v: (v["input"], v["rows"])):
        lines.append(
            f"| in-process `predict` ({p['input']}) | 1 | {p['rows']} | – | {fmt(p['rps'])} | {fmt(p['seconds_per_call'] * 1000, 3)} (mean) "
            "| – | – | – | – | – | – | – | – |"
        )
    load = results["load"]
    floor = {r["clients"]: r for r in load if r["kind"] == "echo"}
    mls = {(r["clients"], r["rows"]): r for r in load if r["kind"] == "mlserver"}
    notes: list[str] = []
    saturated = split = apart = False
    for r in load:
        f = floor.get(r["clients"]) if r["kind"] != "echo" else None
        ml = mls.get((r["clients"], r["rows"])) if r["kind"] != "mlserver" else None
        if ml is not None and not comparable(r, ml):
            ml, apart = None, True
        cpu = fmt(r["loadgen_cpu_share"] * 100)
        if r.get("loadgen_procs", 1) > 1:
            split = True
            cpu += f" ({r['loadgen_procs']} procs)‡"
            single = r.get("single_process") or {}
            notes.append(f"{r['target']}, {r['clients']} clients, {r['rows']:,} row{'s' if r['rows'] != 1 else ''}, with one "
                         f"load-generator process: {fmt(single.get('rps'))} req/s at {fmt((single.get('loadgen_cpu_share') or 0) * 100)} % of a core")
        if r.get("loadgen_saturated"):
            saturated = True
            cpu += " †"
        lines.append(
            f"| {r['target']} | {r['clients']} | {r['rows'] if r['kind'] != 'echo' else '1 (echo)'} | {r['loadgen']} | {fmt(r['rps'])} "
            f"| {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r.get('req_per_msg'), 2)} | {fmt(r['loadgen_cpu_us_per_request'])} "
            f"| {cpu} | {ratio(r['rps'], f['rps']) if f else '–'} | {ratio(r['p50_ms'], f['p50_ms']) if f else '–'} "
            f"| {ratio(r['rps'], ml['rps']) if ml else '–'} | {ratio(r['p50_ms'], ml['p50_ms']) if ml else '–'} |"
            + (f" ({r['errors']} errors: `{r['first_error']}`)" if r["errors"] else "")
        )
    if saturated or split or apart:
        lines.append("")
    if saturated:
        lines.append(f"† the load generator used more than {LOADGEN_SATURATED:.0%} of a core in this measurement: "
                     "it may have limited it, so the server may do better than shown.")
    if split:
        lines.append("‡ its one load-generator process was saturated (†), so it was measured again with two processes "
                     "(half the clients each, started together); the CPU % is both together. " + "; ".join(notes) + ".")
    if apart:
        lines.append("Rows without a ratio to MLServer were produced by another load generator than MLServer's rows.")
    return lines


def gateways_table(results: dict[str, Any]) -> list[str]:
    from .gateways import speedups

    rows = results["gateways"]
    ratios = speedups(rows)
    lines = [
        "**Gateways**: one gateway process against two on one port (`ml-server gateway --workers 2`, SO_REUSEPORT: the "
        "kernel gives each connection to one of them), same consumer and model, seed JSON (`columns`), 32 connections. "
        "req/msg comes from `GET /metrics`, which sums over both processes.",
        "",
        "| gateways | rows | load generator | req/s | p50 ms | p99 ms | req/msg | loadgen CPU % of a core | vs 1 gateway |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        vs = f"{ratios[r['rows']]:.2f}×" if r["gateways"] > 1 and ratios.get(r["rows"]) else "–"
        lines.append(
            f"| {r['gateways']} | {r['rows']:,} | {r['loadgen']} | {fmt(r['rps'])} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} "
            f"| {fmt(r.get('req_per_msg'), 2)} | {fmt(r['loadgen_cpu_share'] * 100)}{' (' + str(r['loadgen_procs']) + ' procs)' if r.get('loadgen_procs', 1) > 1 else ''} | {vs} |"
            + (f" ({r['errors']} errors: `{r['first_error']}`)" if r["errors"] else "")
        )
    return lines


def fit_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "**Fit** (LogisticRegression, default parameters), submit (Parquet `POST /families/logreg/models`) to `done` "
        "seen by polling `GET /models/{model_key}` every 10 ms:",
        "",
        "| rows × features | in-process fit s | ml-server submit-to-done s | ratio | overhead s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for rows, f in results["fit"].items():
        local = results["in_process"]["fit"][rows]["seconds"]
        lines.append(f"| {int(rows):,} × 10 | {local:.3f} | {f['seconds']:.3f} | {f['seconds'] / local:.2f}× | {f['seconds'] - local:.3f} |")
    return lines


def soak_section(soak: dict[str, Any]) -> list[str]:
    plan, load = soak["plan"], soak["load"]
    lines = [
        f"**Memory soak** (P5): {plan['seconds']:g} s of steady mixed load against the gateway and the `logreg` consumer, "
        f"from the Python load generator: REST Parquet predicts from {plan['clients_1'] + plan['clients_1000']} clients "
        f"({plan['clients_1']} of 1 row, {plan['clients_1000']} of 1,000 rows), a stream of 1-row seed-JSON predicts "
        f"(`columns`, {plan['clients_json']} client), and a {plan['fit_rows']:,}×10 fit every {plan['fit_every']:g} s "
        f"(a new version of the model the predicts use). RSS (VmRSS) sampled every {plan['sample_every']:g} s; the baseline is "
        f"the first sample after {plan['baseline_after']:g} s of load (10 % of the soak, at most 15 s; the processes are warm "
        "from the measurements above), the end is the last sample, taken as the load stops; growth = end ÷ baseline − 1. "
        "The consumer's fits run in a child process, not counted.",
        "",
    ]
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
    req = load["requests"]
    lines += [
        "",
        f"Served during the soak: {load['requests_total']:,} predicts ({fmt(load['rps'])} req/s: {req.get('rest_parquet_1', 0):,} of 1 row "
        f"and {req.get('rest_parquet_1000', 0):,} of 1,000 rows over REST Parquet, {req.get('seed_json_1', 0):,} over seed JSON), "
        f"{load['fits_done']} fits done ({load['fits_submitted']} submitted, {load['fits_failed']} failed), "
        f"{load['errors']} errors" + (f" (first: `{load['first_error']}`)" if load["errors"] else "")
        + f"; load generator at {fmt(load['loadgen_cpu_share'] * 100)} % of a core" + (" †" if load.get("loadgen_saturated") else "") + ".",
    ]
    return lines


def memory_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "**Memory** at the end of the run" + (", after the soak" if results.get("soak") else "")
        + " (peak RSS = VmHWM; the consumer's fit runs in a child process, not counted):",
        "",
        "| process | peak RSS MiB | RSS at end MiB |",
        "| --- | ---: | ---: |",
    ]
    for name, mem in results["memory"].items():
        lines.append(f"| {name} | {fmt((mem['VmHWM_kib'] or 0) / 1024, 1)} | {fmt((mem['VmRSS_kib'] or 0) / 1024, 1)} |")
    return lines


def render(results: dict[str, Any]) -> str:
    sections = [targets_table(results), header(results), predict_table(results), fit_table(results)]
    if results.get("gateways"):
        sections.insert(3, gateways_table(results))
    if results.get("soak"):
        sections.append(soak_section(results["soak"]))
    sections.append(memory_table(results))
    if results.get("mlserver_skipped"):
        sections.append([f"MLServer: skipped ({results['mlserver_skipped']})."])
    else:
        sections.append([f"MLServer {results.get('mlserver_version')}: scikit-learn runtime, same model (joblib), V2 REST JSON, "
                         "`parallel_workers: 0`."])
    return "\n\n".join("\n".join(s) for s in sections) + "\n"
