"""The other half of the docs' examples (`test_docs`), so that the two halves can run on two workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from .stack import Stack
from .test_docs import TO_RUN, Example, run_twice

pytestmark = pytest.mark.integration

HERE = TO_RUN[1::2]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("example", HERE, ids=[e.id for e in HERE])
def test_example_runs_twice(example: Example, stack: Stack, tmp_path: Path) -> None:
    run_twice(example, stack, tmp_path)
