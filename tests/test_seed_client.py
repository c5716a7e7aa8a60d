"""The seed's own client, as its users have it, unchanged, against the real stack: the seed README's example.

The client is `shared/reference/seed-client` beside this repository (what the original project shipped as
`ml_api.contract.interfaces`); it is copied, not edited, into a package of that name and run in a process of
its own with its one extra dependency, marshmallow-enum. `test_seed_contract.py` checks the same contract
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

REFERENCE = ROOT.parent / "shared" / "reference"


def test_the_seed_client_runs_the_seed_readme_example(stack: Stack, tmp_path: Path) -> None:
    client, readme = REFERENCE / "seed-client", REFERENCE / "seed-README.md"
    assert client.is_dir() and readme.is_file(), f"the seed's client and README are expected in {REFERENCE}"
    package = tmp_path / "ml_api" / "contract" / "interfaces"
    shutil.copytree(client, package, ignore=shutil.ignore_patterns("LICENSE", "README.md"))
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
