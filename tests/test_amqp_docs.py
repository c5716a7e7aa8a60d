"""docs/amqp.md's Python example, run as it is written against the real stack (pika, no client of ours)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .stack import BROKER_URL, Stack

pytestmark = pytest.mark.integration

PAGE = Path(__file__).resolve().parent.parent / "docs" / "amqp.md"


def example() -> str:
    """The first Python block after the page's "A complete example in Python" heading."""
    text = PAGE.read_text()
    section = text.split("## A complete example in Python", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the example is gone from docs/amqp.md"
    return found.group(1)


def test_the_python_example_runs_against_the_stack(stack: Stack, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_SERVER_")}
    env.update({"AMQP_URL": BROKER_URL, "ML_SERVER_NAMESPACE": stack.namespace})
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("fitted example-") and lines[0].endswith("version 1 done"), lines
    x = np.random.default_rng(0).normal(size=(100, 2))[:3]  # the example's data: y = 2a - b, fitted exactly
    np.testing.assert_allclose(ast.literal_eval(lines[1])["y"], 2 * x[:, 0] - x[:, 1], atol=1e-5)
    assert lines[2].startswith("refused: 404 not_found") and '"x-model-key"' in lines[2], lines
    assert lines[3].startswith("deleted {") and "'deleted': 1" in lines[3], lines
