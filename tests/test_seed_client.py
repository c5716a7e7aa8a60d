"""The seed's own client, as its users have it, unchanged, against the real stack: the seed README's example.

The client is a verbatim copy of `shared/reference/seed-client` in `tests/seed_client/` (what the original
project shipped as `ml_api.contract.interfaces`, with its license, and the seed's README beside it; a test
holds the copy to the reference when that is beside this repository). It is installed, not edited, as a
package of that name and run in a process of its own with its one extra dependency, marshmallow-enum. `test_seed_contract.py` checks the same contract
request by request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .stack import ROOT, Stack

pytestmark = pytest.mark.integration

COPY = ROOT / "tests" / "seed_client"
REFERENCE = ROOT.parent / "shared" / "reference"


def test_the_copy_is_the_reference() -> None:
    if not REFERENCE.is_dir():
        return  # a checkout without the reference beside it: the copy is all there is
    for original in [*(REFERENCE / "seed-client").iterdir(), REFERENCE / "seed-README.md"]:
        assert (COPY / original.name).read_bytes() == original.read_bytes(), original.name


def test_the_seed_client_runs_the_seed_readme_example(stack: Stack, tmp_path: Path) -> None:
    readme = COPY / "seed-README.md"
    package = tmp_path / "ml_api" / "contract" / "interfaces"
    shutil.copytree(COPY, package, ignore=shutil.ignore_patterns("LICENSE", "*.md"))
    for folder in (tmp_path / "ml_api", tmp_path / "ml_api" / "contract"):
        (folder / "__init__.py").write_text("")
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme.read_text(), re.S) if "GenericModelInterface" in block)
    for family in ("logreg", "nn"):  # the README's example, and its neural-network variant
        code = example.replace("http://localhost:8080/", stack.url + "/").replace("'logreg'", f"'{family}'")
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        precision = float(re.search(r"Precision is: ([0-9.]+)%", done.stdout).group(1))  # type: ignore[union-attr]
        assert precision > 90, (family, done.stdout)
