"""A hyperparameter search through ml-server against GridSearchCV in-process, on this machine.

    .venv/bin/python -m benchmarks.search [--rows 5000] [--consumers 2] [--out FILE]

Starts a gateway and `--consumers` consumer processes of `nn` (SQLite in a temporary folder, a namespace
of its own, a free port), runs a 12-candidate, 5-fold search (`hidden_layer_sizes` x `alpha`) of
`MLPClassifier` on `--rows` x 10 through `POST /families/nn/searches`, submit to `done` (the winner
refitted), then the same grid, pipeline and folds with `GridSearchCV(n_jobs=consumers)` in this process,
and prints one Markdown row with both times and their ratio (and checks the two leaderboards agree).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from contracts import paths

from .bodies import make_data
from .common import BROKER_URL, PARQUET, wait_for
from .stack import Processes, start_stack

FAMILY = "nn"
GRID: dict[str, list[Any]] = {"hidden_layer_sizes": [[16], [32], [64]], "alpha": [0.0001, 0.001, 0.01, 0.1]}
MODKWARGS = {"max_iter": 60, "random_state": 0}
FOLDS = 5


def through_server(url: str, rows: int) -> tuple[float, dict[str, Any]]:
    import requests

    from contracts.frames import encode_training

    x, y = make_data(rows)
    started = time.perf_counter()
    params = {"name": "bench-search", "param_grid": _json(GRID), "cv": str(FOLDS), "modkwargs": _json(MODKWARGS)}
    r = requests.post(url + paths.fill(paths.FAMILY_SEARCHES, family=FAMILY), params=params, data=encode_training(x, y), headers={"Content-Type": PARQUET}, timeout=120)
    if r.status_code != 202:
        raise RuntimeError(f"search: HTTP {r.status_code}: {r.text[:300]}")
    search_id = r.json()["id"]

    def finished() -> dict[str, Any] | None:
        state = requests.get(url + paths.fill(paths.SEARCH, id=search_id), timeout=30).json()
        return state if state["state"] in ("done", "failed", "cancelled") else None

    state = wait_for(finished, 3600, "the search", interval=0.2)
    assert state is not None
    return time.perf_counter() - started, state


def in_process(rows: int, jobs: int) -> tuple[float, Any]:
    from sklearn.model_selection import GridSearchCV

    from consumers import preprocess
    from consumers.families import BUILTIN
    from contracts.columns import conform, infer

    x, y = make_data(rows)
    schema = infer(x)
    model = preprocess.model_for(BUILTIN[FAMILY], schema, MODKWARGS)
    grid = {f"estimator__{k}": [tuple(v) if isinstance(v, list) else v for v in values] for k, values in GRID.items()}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(model, grid, cv=FOLDS, n_jobs=jobs).fit(conform(x, schema), y["label"])
    return time.perf_counter() - started, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="append the row to this Markdown file")
    args = parser.parse_args()
    namespace = f"bench-search-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="ml-server-bench-search-") as tmp:
        workdir = Path(tmp)
        (workdir / "data").mkdir()
        procs = Processes(workdir)
        try:
            url = _start(procs, workdir, namespace, args.consumers)
            served, state = through_server(url, args.rows)
        finally:
            procs.stop()
            _purge(namespace)
    local, reference = in_process(args.rows, args.consumers)
    if state["state"] != "done":
        raise SystemExit(f"the search ended {state['state']}: {state['error']}")
    by_params = {_key(c["params"]): c["mean_test_score"] for c in state["leaderboard"]}
    worst = max(
        abs(by_params[_key({k.removeprefix("estimator__"): v for k, v in p.items()})] - m)
        for p, m in zip(reference.cv_results_["params"], reference.cv_results_["mean_test_score"])
    )
    row = (
        f"| search, 12 candidates x {FOLDS} folds, MLPClassifier on {args.rows:,} x 10 | ml-server, {args.consumers} consumer "
        f"processes: {served:.1f} s | GridSearchCV(n_jobs={args.consumers}) in-process: {local:.1f} s | "
        f"{served / local:.2f}x | mean fold scores agree to {worst:.1e} |"
    )
    print(row)
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(row + "\n")


def _start(procs: Processes, workdir: Path, namespace: str, consumers: int) -> str:
    return start_stack(procs, workdir, namespace, family=FAMILY, consumers=consumers, ML_SERVER_FAMILIES=FAMILY)[0]


def _purge(namespace: str) -> None:
    import aio_pika

    from contracts.topology import Topology

    t = Topology(namespace)

    async def purge() -> None:
        async with await aio_pika.connect(BROKER_URL) as connection:
            channel = await connection.channel()
            for q in t.family_queues(FAMILY):
                await channel.queue_delete(q)
            for x in (t.jobs_exchange, t.events_exchange, t.dead_exchange):
                await channel.exchange_delete(x)

    asyncio.run(purge())


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _key(params: dict[str, Any]) -> str:
    import json

    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}, sort_keys=True)


if __name__ == "__main__":
    main()
