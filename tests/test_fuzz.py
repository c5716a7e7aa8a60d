"""Fuzzing the live gateway from its own OpenAPI document with schemathesis.

Every operation in GET /openapi.json gets requests generated from its schema,
both fitting it (positive) and breaking it (negative: wrong types, missing
fields, bad values). None may be answered with a 5xx, and the gateway and the
consumers must still be up at the end. Driven through schemathesis's Python
API (hypothesis strategies per operation) so the requests are counted here.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from .stack import Stack

pytestmark = pytest.mark.integration

MIN_REQUESTS = 1000
BUDGET_SECONDS = 90.0
# Examples per operation and mode in a round; operations with nothing to vary stop early by themselves.
# Every operation gets its share before any gets more (rounds repeat, on other seeds, until MIN_REQUESTS).
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 17}


def test_fuzzed_requests_never_get_a_5xx(stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    session = requests.Session()
    made: dict[str, int] = {}
    server_errors: list[str] = []
    started = time.monotonic()

    def exercise(operation: Any, mode: GenerationMode, round_: int) -> None:
        @seed(round_)  # reproducible, and another seed each round
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def one(case: Any) -> None:
            if time.monotonic() - started > BUDGET_SECONDS:
                return
            response = case.call(base_url=stack.url, session=session, timeout=35)
            made[operation.label] = made.get(operation.label, 0) + 1
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} query={case.query} -> {response.status_code}: {response.text[:300]}")

        one()

    try:
        for rounds in range(5):  # again, on other seeds, until enough requests were made
            for operation in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    try:
                        exercise(operation, mode, rounds)
                    except (Unsatisfiable, schemathesis.errors.SchemathesisError):  # nothing to break (negative mode)
                        pass
            if sum(made.values()) >= MIN_REQUESTS or time.monotonic() - started > BUDGET_SECONDS:
                break
    finally:
        session.close()

    total = sum(made.values())
    print(f"fuzz: {total} requests over {len(made)} operations in {time.monotonic() - started:.0f}s")
    assert not server_errors, "\n".join(server_errors[:20])
    assert total >= MIN_REQUESTS, (total, made)
    assert len(made) == len(operations), set(op.label for op in operations) - set(made)
    assert stack.gateway is not None and stack.gateway.poll() is None, "the gateway died"
    for family, proc in stack.consumers:
        assert proc.poll() is None, f"consumer {family} died"
    assert requests.get(f"{stack.url}/healthz", timeout=5).ok
    assert requests.get(f"{stack.url}/readyz", timeout=5).ok


IMPORTS = ("import_model", "import_version")
MUTATED_FILES = 20


def test_fuzzed_model_files_never_get_a_5xx(stack: Stack) -> None:
    """The import endpoints with files that are almost model files: a real skops file and a real ONNX graph
    with bytes flipped, cut, repeated or spliced by hypothesis. Every one gets a 4xx or a 2xx, never a 5xx."""
    import numpy as np
    import skops.io
    from hypothesis import strategies as st
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    ids = {result.ok().definition.raw.get("operationId") for result in schema.get_all_operations()}
    assert set(IMPORTS) <= ids, ids  # the schema-driven test above covers them too, with random bodies

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    seeds = {"logreg": bytes(skops.io.dumps(model)), "onnx": to_onnx(model, x[:1]).SerializeToString()}
    fitted = requests.post(
        f"{stack.url}/families/logreg/models/import", data=seeds["logreg"], params={"name": "fuzz-import-base"},
        headers={"Content-Type": "application/octet-stream"}, timeout=120,
    )
    assert fitted.status_code in (200, 201), fitted.text
    key = fitted.json()["model_key"]

    @st.composite
    def mutated(draw: Any) -> tuple[str, bytes]:
        family = draw(st.sampled_from(sorted(seeds)))
        data = bytearray(seeds[family])
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data) - 1))
            kind = draw(st.sampled_from(["flip", "cut", "repeat", "splice"]))
            if kind == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "cut":
                del data[at : at + draw(st.integers(1, 64))]
            elif kind == "repeat":
                data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
            else:
                data[at:at] = draw(st.binary(min_size=1, max_size=32))
            if not data:
                data = bytearray(b"\x08")
        return family, bytes(data)

    statuses: dict[int, int] = {}
    server_errors: list[str] = []

    @seed(0)
    @given(case=mutated(), new=st.booleans())
    @settings(max_examples=MUTATED_FILES, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    def one(case: tuple[str, bytes], new: bool) -> None:
        family, blob = case
        url = f"{stack.url}/families/{family}/models/import" if new or family != "logreg" else f"{stack.url}/models/{key}/import"
        r = requests.post(url, data=blob, headers={"Content-Type": "application/octet-stream"}, timeout=120)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if r.status_code >= 500:
            server_errors.append(f"{family} {len(blob)} bytes -> {r.status_code}: {r.text[:300]}")

    one()
    print(f"fuzzed model files: {statuses}")
    assert not server_errors, "\n".join(server_errors[:10])
    assert sum(statuses.values()) == MUTATED_FILES and any(400 <= s < 500 for s in statuses), statuses
    assert requests.get(f"{stack.url}/healthz", timeout=5).ok
