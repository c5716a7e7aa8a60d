"""CPU time of one consumer-side predict, `Runtime.answer` with the model cached (no broker, no store).

    python -m benchmarks.predict_path                # a built-in logreg, in the consumer process
    python -m benchmarks.predict_path --imported     # the same model imported as skops: in a predict process

To compare two checkouts, put the other first on the path:
`PYTHONPATH=/path/to/other .venv/bin/python benchmarks/predict_path.py`. Rows of 1 by default.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from consumers import jobs, pool
from consumers.families import BUILTIN
from consumers.records import Servable
from consumers.runtime import Runtime
from contracts.frames import ParquetCodec, encode_training
from contracts.messages import PredictJob

KEY = b"k" * 32


class _Stored:
    """What `Runtime` asks of the store, answered from memory."""

    def __init__(self, artifact: bytes, backend: str, meta: dict[str, Any]) -> None:
        self.data, self.backend, self.meta = artifact, backend, meta

    async def servable(self, *args: Any) -> Servable:
        return Servable(1, 1)

    async def artifact(self, session_id: int) -> _Stored:
        return self


async def measure(imported: bool, rows: int, calls: int, runs: int) -> list[float]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 4)), columns=list("abcd"))
    y = pd.DataFrame({"t": (x["a"] > 0).astype(int)})
    family = BUILTIN["logreg"]
    isolation = None
    if imported:
        import skops.io
        from sklearn.linear_model import LogisticRegression

        from consumers import imports
        from consumers.sandbox import PredictProcesses

        done = imports.import_model("logreg", skops.io.dumps(LogisticRegression().fit(x, y["t"])), "skops", None, None)
        stored = _Stored(done.artifact, done.backend, done.meta)
        isolation = PredictProcesses(1, 30.0, pool.preload([family]))
    else:
        fitted = jobs.fit("logreg", encode_training(x, y), {}, {}, KEY, "joblib")
        stored = _Stored(fitted.artifact, fitted.backend, fitted.meta)
    # (No `isolation` argument for a built-in model: the same call works on a checkout without it.)
    runtime = Runtime(family, stored, KEY) if isolation is None else Runtime(family, stored, KEY, isolation=isolation)  # type: ignore[arg-type]
    headers = PredictJob("m").headers()
    body = ParquetCodec.encode(x.head(rows), index=False)
    clock = time.perf_counter if imported else time.process_time  # the predict process's CPU is not ours
    for _ in range(200):
        await runtime.answer(headers, body)
    per_call = []
    for _ in range(runs):
        start = clock()
        for _ in range(calls):
            await runtime.answer(headers, body)
        per_call.append((clock() - start) / calls)
    if isolation is not None:
        isolation.close()
    return per_call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--imported", action="store_true", help="the model as an imported skops file (predicts in a predict process)")
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    per_call = asyncio.run(measure(args.imported, args.rows, args.calls, args.runs))
    what = "imported, wall time" if args.imported else "built-in, CPU time"
    print(
        f"{what}: {statistics.median(per_call) * 1e6:.0f} us per {args.rows}-row predict "
        f"(median of {args.runs} runs of {args.calls}; fastest run {min(per_call) * 1e6:.0f} us)"
    )


if __name__ == "__main__":
    main()
