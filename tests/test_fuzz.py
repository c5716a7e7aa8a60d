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
