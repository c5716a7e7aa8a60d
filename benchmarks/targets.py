"""The performance targets (README, Performance), each measured, met, missed or not measured.

P1a-P1e (the seed's JSON and REST Parquet against MLServer, and the seed's
orients against `columns`) replace the former P1; P2-P5 are as they were.
Rows compared with MLServer's must come from the same load generator.
"""

from __future__ import annotations

from typing import Any

SEED = "seed JSON (columns)"


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{v:,.{digits}f}"


def comparable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a.get("loadgen") == b.get("loadgen"))


def _errors(*rows: dict[str, Any]) -> str:
    bad = [f"{r['target']}: {r['errors']} errors" for r in rows if r.get("errors")]
    return ("; " + "; ".join(bad)) if bad else ""


class Scorer:
    def __init__(self, results: dict[str, Any]) -> None:
        self.load: list[dict[str, Any]] = results.get("load") or []
        self.results = results
        self.out: list[dict[str, Any]] = []
        skipped = results.get("mlserver_skipped")
        self.why_no_mlserver = f"MLServer not run ({skipped})" if skipped else "MLServer not measured"

    def find(self, kind: str, clients: int, rows: int, orient: str | None = None) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in self.load
                if r["kind"] == kind and r["clients"] == clients and r["rows"] == rows and r.get("orient") == orient and r["requests"]
            ),
            None,
        )

    def add(self, tid: str, what: str, value: float | None, shown: str, target: str, met: bool | None, note: str = "") -> None:
        self.out.append(
            {"id": tid, "what": what, "value": value, "shown": shown, "target": target,
             "status": "not measured" if met is None else ("met" if met else "missed"), "note": note}
        )

    def rps_vs_mlserver(self, tid: str, what: str, mine: dict[str, Any] | None, clients: int, rows: int, least: float) -> None:
        ml = self.find("mlserver", clients, rows)
        wanted = f"≥ {least:g}×"
        if not (mine and ml):
            self.add(tid, what, None, "not measured", wanted, None, self.why_no_mlserver if not ml else "")
        elif not comparable(mine, ml):
            self.add(tid, what, None, "not comparable", wanted, None, f"load generators differ ({mine['loadgen']} vs {ml['loadgen']})")
        else:
            v = mine["rps"] / ml["rps"]
            shown = f"{v:.2f}× ({fmt(mine['rps'])} vs {fmt(ml['rps'])} req/s; {mine['loadgen']}{_errors(mine, ml)})"
            self.add(tid, what, v, shown, wanted, v >= least)

    def p1(self) -> None:
        self.rps_vs_mlserver("P1a", f"{SEED}, 1 row, 32 connections ÷ MLServer, req/s", self.find("seed_json", 32, 1, "columns"), 32, 1, 1.5)
        # p50 at one connection against MLServer's.
        mine, ml = self.find("seed_json", 1, 1, "columns"), self.find("mlserver", 1, 1)
        what, wanted = f"{SEED}, 1 row, 1 connection: p50 ÷ MLServer's p50", "≤ 1.5×"
        if not (mine and ml):
            self.add("P1b", what, None, "not measured", wanted, None, self.why_no_mlserver if not ml else "")
        elif not comparable(mine, ml):
            self.add("P1b", what, None, "not comparable", wanted, None, f"load generators differ ({mine['loadgen']} vs {ml['loadgen']})")
        else:
            v = mine["p50_ms"] / ml["p50_ms"]
            shown = f"{v:.2f}× ({mine['p50_ms']:.2f} vs {ml['p50_ms']:.2f} ms; {mine['loadgen']}{_errors(mine, ml)})"
            self.add("P1b", what, v, shown, wanted, v <= 1.5)
        self.rps_vs_mlserver(
            "P1c", f"{SEED}, 1,000 rows, 32 connections ÷ MLServer, req/s", self.find("seed_json", 32, 1000, "columns"), 32, 1000, 2
        )
        columns = self.find("seed_json", 32, 1, "columns")
        for orient in ("split", "records", "index", "values"):
            other = self.find("seed_json", 32, 1, orient)
            what = f"seed JSON, 1 row, 32 connections: req/s of `columns` ÷ req/s of `{orient}`"
            if columns and other:
                v = columns["rps"] / other["rps"]
                shown = f"{v:.2f} ({fmt(columns['rps'])} vs {fmt(other['rps'])} req/s; {other['loadgen']}{_errors(columns, other)})"
                self.add("P1d", what, v, shown, "≤ 1.5", v <= 1.5)
            else:
                self.add("P1d", what, None, "not measured", "≤ 1.5", None)
        self.rps_vs_mlserver(
            "P1e", "REST Parquet, 1 row, 32 connections ÷ MLServer, req/s", self.find("rest_parquet", 32, 1), 32, 1, 1.5
        )

    def p2(self) -> None:
        """1,000 rows, 32 connections, Parquet (REST or direct AMQP, the better of those measured with MLServer's
        load generator) against MLServer's JSON."""
        ml = self.find("mlserver", 32, 1000)
        what, wanted = "1,000-row Parquet predict, 32 connections ÷ MLServer JSON, req/s", "≥ 2×"
        names = {"rest_parquet": "REST Parquet", "amqp": "direct AMQP"}
        mine = [(names[k], r) for k in names if (r := self.find(k, 32, 1000))]
        if not (ml and mine):
            self.add("P2", what, None, "not measured", wanted, None, self.why_no_mlserver if not ml else "")
            return
        same = [(n, r) for n, r in mine if comparable(r, ml)]
        name, best = max(same, key=lambda nr: nr[1]["rps"]) if same else ("", None)
        others = "; ".join(
            f"{n} {r['rps'] / ml['rps']:.2f}×" + ("" if comparable(r, ml) else f" with the {r['loadgen']} load generator, not compared")
            for n, r in mine
            if r is not best
        )
        if best is None:
            self.add("P2", what, None, "not comparable", wanted, None, others)
            return
        v = best["rps"] / ml["rps"]
        shown = f"{v:.2f}× ({name} {fmt(best['rps'])} vs {fmt(ml['rps'])} req/s; {best['loadgen']}" + (f"; {others})" if others else ")")
        self.add("P2", what, v, shown, wanted, v >= 2)

    def p3(self) -> None:
        """1 row, 1 connection, p50 against the echo-RPC floor's p50 (the floor: always the Python load generator)."""
        floor = self.find("echo", 1, 1)
        for kind, name in (("rest_parquet", "REST Parquet"), ("amqp", "direct AMQP")):
            r = self.find(kind, 1, 1)
            what = f"1-row p50, 1 connection, {name} ÷ echo-RPC floor p50"
            if r and floor:
                v = r["p50_ms"] / floor["p50_ms"]
                shown = f"{v:.2f}× ({r['p50_ms']:.2f} ms, {r['loadgen']}, vs {floor['p50_ms']:.2f} ms, {floor['loadgen']})"
                self.add("P3", what, v, shown, "≤ 2×", v <= 2)
            else:
                self.add("P3", what, None, "not measured", "≤ 2×", None)

    def p4(self) -> None:
        fit = (self.results.get("fit") or {}).get("100000")
        local = ((self.results.get("in_process") or {}).get("fit") or {}).get("100000")
        what = "100,000×10 fit, submit to done"
        if fit and local:
            bound = 1.2 * local["seconds"] + 0.15
            self.add("P4", what, fit["seconds"], f"{fit['seconds']:.3f} s (in-process {local['seconds']:.3f} s)",
                     f"≤ 1.2 × in-process + 0.15 s = {bound:.3f} s", fit["seconds"] <= bound)
        else:
            self.add("P4", what, None, "not measured", "≤ 1.2 × in-process + 0.15 s", None)

    def p5(self) -> None:
        soak = self.results.get("soak")
        what = "RSS growth during the memory soak (gateway, consumer)"
        if soak and soak.get("processes"):
            growth = {n: m["growth_pct"] for n, m in soak["processes"].items()}
            v = max(growth.values())
            self.add("P5", what, v, ", ".join(f"{n} {g:+.1f} %" for n, g in growth.items()) + f" over {soak['plan']['seconds']:g} s",
                     "growth < 10 %", v < 10)
        else:
            self.add("P5", what, None, "not measured", "growth < 10 %", None, "no soak (--soak 0)")


def v2(s: Scorer) -> None:
    """The Open Inference Protocol against MLServer's, and its 1-row latency against the broker's floor."""
    s.rps_vs_mlserver("V2a", "V2 JSON, 1 row, 32 connections ÷ MLServer V2, req/s", s.find("v2_json", 32, 1), 32, 1, 2)
    s.rps_vs_mlserver("V2b", "V2 JSON, 1,000 rows, 32 connections ÷ MLServer V2, req/s", s.find("v2_json", 32, 1000), 32, 1000, 2)
    s.rps_vs_mlserver("V2c", "V2 binary, 1,000 rows, 32 connections ÷ MLServer V2 JSON, req/s", s.find("v2_binary", 32, 1000), 32, 1000, 3)
    floor, mine = s.find("echo", 1, 1), s.find("v2_json", 1, 1)
    what = "V2 JSON 1-row p50, 1 connection ÷ echo-RPC floor p50"
    if floor and mine:
        v = mine["p50_ms"] / floor["p50_ms"]
        shown = f"{v:.2f}× ({mine['p50_ms']:.2f} ms, {mine['loadgen']}, vs {floor['p50_ms']:.2f} ms, {floor['loadgen']})"
        s.add("V2d", what, v, shown, "≤ 2×", v <= 2)
    else:
        s.add("V2d", what, None, "not measured", "≤ 2×", None)


def score_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    s = Scorer(results)
    s.p1()
    s.p2()
    s.p3()
    s.p4()
    s.p5()
    v2(s)
    return s.out
