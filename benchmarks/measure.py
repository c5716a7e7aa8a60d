"""The predict measurements: which ones, with which load generator, and the gateway's coalescing around each.

HTTP rows (seed JSON, REST Parquet, MLServer) are driven by wrk when it is
installed, else by the Python load generator; all of them by the same one,
so ml-server's rows and MLServer's are compared like with like. AMQP rows
(the echo floor, direct AMQP) always use the Python load generator (wrk
speaks HTTP only).
"""

from __future__ import annotations

from typing import Any

from .bodies import SEED_ORIENTS, answer_problem, http_request
from .loadgen import Loadgen
from .wrk import Wrk

from contracts import paths

HTTP_KINDS = ("seed_json", "rest_parquet", "v2_json", "v2_binary", "mlserver")
GATEWAY_KINDS = ("seed_json", "rest_parquet", "v2_json", "v2_binary")
# The Open Inference Protocol's rows (`--only v2`: these, the echo floor and MLServer's).
V2_KINDS = ("v2_json", "v2_binary")
# The gateway's predict-coalescing settings recorded with a run (contracts/settings.py).
BATCH_SETTINGS = ("batch_max_rows", "batch_max_wait", "batch_inflight")
BATCH_HISTOGRAMS = ("ml_server_gateway_predict_batch_requests", "ml_server_gateway_predict_batch_rows")


def target_name(kind: str, orient: str | None = None) -> str:
    return {
        "echo": "echo RPC (floor)",
        "seed_json": f"ml-server seed JSON ({orient})",
        "rest_parquet": "ml-server REST Parquet",
        "amqp": "ml-server AMQP",
        "v2_json": "ml-server V2 JSON",
        "v2_binary": "ml-server V2 binary",
        "mlserver": "MLServer REST JSON (V2)",
    }[kind]


def plan(mlserver: bool, only: str = "all") -> list[dict[str, Any]]:
    """Every predict measurement of a run, in order (`only="v2"`: the V2 rows and what they are compared with)."""
    out: list[dict[str, Any]] = []

    def add(kind: str, clients: int, rows: int, orient: str | None = None) -> None:
        sc: dict[str, Any] = {"target": target_name(kind, orient), "kind": kind, "clients": clients, "rows": rows}
        if orient is not None:
            sc["orient"] = orient
        out.append(sc)

    for clients in (1, 32):
        add("echo", clients, 1)
    for rows in (1, 1000):  # the seed's client: orient "columns", at 1 and 32 connections
        for clients in (1, 32):
            add("seed_json", clients, rows, "columns")
    for orient in SEED_ORIENTS[1:]:  # the other orients the seed accepted, 32 connections
        for rows in (1, 1000):
            add("seed_json", 32, rows, orient)
    for kind in ("rest_parquet", "amqp", *V2_KINDS, *(("mlserver",) if mlserver else ())):
        for rows in (1, 1000):
            for clients in (1, 32):
                add(kind, clients, rows)
    if only == "v2":
        out = [sc for sc in out if sc["kind"] in ("echo", "mlserver", *V2_KINDS)]
    elif only == "amqp":
        out = [sc for sc in out if sc["kind"] in ("echo", "amqp")]
    return out


def check_answers(spec: dict[str, Any], scenarios: list[dict[str, Any]]) -> None:
    """One request of each HTTP scenario, its answer checked (status, shape, number of predictions):
    the load generators only count statuses."""
    import requests

    seen: set[tuple[str, str | None, int]] = set()
    with requests.Session() as session:
        for sc in scenarios:
            key = (sc["kind"], sc.get("orient"), sc["rows"])
            if sc["kind"] not in HTTP_KINDS or key in seen:
                continue
            seen.add(key)
            req = http_request(spec, sc)
            r = session.request(req.method, req.url, data=req.body, headers=req.headers, timeout=60)
            problem = answer_problem(sc, r.status_code, r.headers.get("Content-Type", "").split(";")[0], r.content)
            if problem:
                raise RuntimeError(f"{sc['target']}, {sc['rows']} rows: {problem}")


def batch_counters(url: str) -> dict[str, float] | None:
    """_sum and _count of the gateway's predict-batch histograms, from GET /metrics (None: not served)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    try:
        r = requests.get(url + paths.METRICS, timeout=10)
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


def batch_settings(environ: Any) -> dict[str, Any]:
    """The gateway's coalescing settings in effect for this run (it inherits this environment)."""
    from contracts.settings import SETTINGS

    out: dict[str, Any] = {}
    for attr in BATCH_SETTINGS:
        name, parse, default, _ = SETTINGS[attr]
        raw = environ.get(name, default)
        out[name] = parse(name, raw) if raw is not None else None
    return out


def _with_python(loadgen: Loadgen, sc: dict[str, Any], gateway: str) -> dict[str, Any]:
    """One measurement with the Python load generator; again over two processes if one was saturated."""
    through_gateway = sc["kind"] in GATEWAY_KINDS
    before = batch_counters(gateway) if through_gateway else None
    r = loadgen.scenario(sc)
    if sc["clients"] >= 32 and r["loadgen_saturated"] and len(loadgen.workers) > 1:
        print(
            f"  {sc['target']:<34} clients={sc['clients']:>2} rows={sc['rows']:>4}  {r['rps']:8.0f} req/s with one load-generator "
            f"process at {r['loadgen_cpu_share_max_process'] * 100:.0f} % of a core: again with two",
            flush=True,
        )
        single = {k: r[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "loadgen_cpu_share", "loadgen_cpu_us_per_request")}
        before = batch_counters(gateway) if through_gateway else None
        r = loadgen.scenario(sc, processes=2)
        r["single_process"] = single
    r.update(per_message(before, batch_counters(gateway)) if through_gateway else per_message(None, None))
    return r


def _with_wrk(wrk: Wrk, spec: dict[str, Any], sc: dict[str, Any], gateway: str) -> dict[str, Any]:
    """One HTTP measurement with wrk: a warm-up run, then the measured run (coalescing counted over it alone)."""
    req = http_request(spec, sc)
    if spec["warmup"] > 0:
        wrk.run(req, sc["clients"], spec["warmup"])
    through_gateway = sc["kind"] in GATEWAY_KINDS
    before = batch_counters(gateway) if through_gateway else None
    r = wrk.measurement(sc, wrk.run(req, sc["clients"], spec["duration"]))
    r.update(per_message(before, batch_counters(gateway)) if through_gateway else per_message(None, None))
    return r


def run_load(
    loadgen: Loadgen, wrk: Wrk | None, spec: dict[str, Any], scenarios: list[dict[str, Any]], gateway: str
) -> list[dict[str, Any]]:
    """Every scenario in turn, each printed as it ends."""
    results = []
    for sc in scenarios:
        if wrk is not None and sc["kind"] in HTTP_KINDS:
            r = _with_wrk(wrk, spec, sc, gateway)
        else:
            r = _with_python(loadgen, sc, gateway)
        print(
            f"  {r['target']:<34} clients={r['clients']:>2} rows={r['rows']:>4}  {r['rps']:8.0f} req/s  "
            f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  {r['loadgen']:<6} {r['loadgen_cpu_us_per_request'] or 0:6.0f} µs/req "
            f"{r['loadgen_cpu_share'] * 100:3.0f} %"
            + (f" ({r['loadgen_procs']} procs)" if r["loadgen_procs"] > 1 else "")
            + (f"  req/msg {r['req_per_msg']:.2f}" if r["req_per_msg"] is not None else "")
            + (f"  ERRORS {r['errors']}: {r['first_error']}" if r["errors"] else ""),
            flush=True,
        )
        results.append(r)
    return results
