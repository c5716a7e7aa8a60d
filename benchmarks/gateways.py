"""One gateway process against two on one port, side by side in one run.

`ml-server gateway --workers 2` runs two gateway processes on one port
(SO_REUSEPORT: the kernel gives each connection to one of them). Both are
measured against the same consumer, broker and model, with the seed's JSON
(orient `columns`) at 1 and 1,000 rows and 32 connections, by the same load
generator as the other HTTP rows. Each gateway is started for its rows and
stopped after them, so the other one's idle process costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .loadgen import Loadgen
from .measure import run_load, target_name
from .stack import Processes, start_gateway
from .wrk import Wrk

GATEWAYS = (1, 2)
ROWS = (1, 1000)
CLIENTS = 32


def measure_gateways(
    procs: Processes, workdir: Path, spec: dict[str, Any], loadgen: Loadgen, wrk: Wrk | None
) -> list[dict[str, Any]]:
    """Rows of seed-JSON predicts through 1 and through 2 gateway processes, each with a `gateways` field."""
    rows: list[dict[str, Any]] = []
    for n in GATEWAYS:
        before = len(procs.procs)
        url = start_gateway(procs, workdir, spec["namespace"], n)
        scenarios = [
            {"target": f"{target_name('seed_json', 'columns')}, {n} gateway{'s' if n > 1 else ''}", "kind": "seed_json",
             "orient": "columns", "clients": CLIENTS, "rows": r, "gateway": url, "gateways": n}
            for r in ROWS
        ]
        try:
            rows += run_load(loadgen, wrk, spec, scenarios, url)
        finally:
            procs.stop_since(before)
    return rows


def speedups(rows: list[dict[str, Any]]) -> dict[int, float | None]:
    """Requests/s of 2 gateways over 1, by rows per request."""
    out: dict[int, float | None] = {}
    for r in ROWS:
        one = next((x["rps"] for x in rows if x["rows"] == r and x["gateways"] == 1), None)
        two = next((x["rps"] for x in rows if x["rows"] == r and x["gateways"] == 2), None)
        out[r] = two / one if one and two else None
    return out
