"""Every Python and shell example in the README, CONTRIBUTING.md and docs/ runs, as written, twice.

An example is a fenced block marked ```python or ```sh. It runs in an empty
folder of its own (with `.venv` pointing at this interpreter's environment,
so `.venv/bin/python` and `.venv/bin/ml-server` work as the docs say)
against a real stack: the docs' address of `make run`,
`http://127.0.0.1:8080` (or `localhost:8080`), is the stack's, and
`ML_SERVER_URL` and `ML_SERVER_NAMESPACE` are set as a shell would have them;
the folder's `data/secret` and default store are the stack's, as they are
`make run`'s in its own folder.
Each runs twice in the same folder, as a reader who runs it again would. A
block that can't run here (it serves until Ctrl-C, or needs a Docker engine)
is preceded by `<!-- not run here: why -->`, and says why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .stack import ROOT, Stack
from .zygote import zygote

pytestmark = pytest.mark.integration

PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh"}
FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run here:\s*(.*?)\s*-->$")
MAKE_RUN_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):8080")
MAKE_RUN_HOST = re.compile(r"(?<![/\w])(?:127\.0\.0\.1|localhost):8080")  # as curl and tritonclient take it


@dataclass(frozen=True)
class Example:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None  # why, when it can't run here

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            start, language = i, m.group(1)
            i += 1
            body = []
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            i += 1
            before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            marker = NOT_RUN.match(before.strip())
            found.append(Example(page, start + 1, language, "\n".join(body) + "\n", marker.group(1) if marker else None))
    return found


ALL = examples()
TO_RUN = [e for e in ALL if e.language in RUNNABLE and e.not_run is None]
# Every other example here, the rest in `test_docs_more`: `make test` gives each test file to one worker.
HERE = TO_RUN[0::2]


def test_every_block_says_what_it_is() -> None:
    """A fence names its language, and every example that does not run says why."""
    unnamed = [e.id for e in ALL if not e.language]
    assert not unnamed, f"fenced blocks without a language: {unnamed}"
    silent = [e.id for e in ALL if e.not_run is not None and not e.not_run]
    assert not silent, f"blocks marked not run without a reason: {silent}"
    assert len(TO_RUN) >= 12, [e.id for e in TO_RUN]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("example", HERE, ids=[e.id for e in HERE])
def test_example_runs_twice(example: Example, stack: Stack, tmp_path: Path) -> None:
    run_twice(example, stack, tmp_path)


def run_twice(example: Example, stack: Stack, tmp_path: Path) -> None:
    """The example as written, against `stack`, twice in the same folder: it must pass both times."""
    code = MAKE_RUN_HOST.sub(stack.url.removeprefix("http://"), MAKE_RUN_URL.sub(stack.url, example.code))
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret").write_text(stack.env["ML_SERVER_SECRET"])
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_URL": stack.url,
        "ML_SERVER_NAMESPACE": stack.namespace,
        "ML_SERVER_BROKER_URL": stack.broker_url,
        "ML_SERVER_DATABASE_URL": stack.database_url,  # what `make run`'s folder has as its default store
        "MPLBACKEND": "Agg",
    }
    for attempt in (1, 2):
        if RUNNABLE[example.language] == "python":  # forked from the zygote, which imported pandas and scikit-learn
            (tmp_path / "example.py").write_text(code)
            log = tmp_path / f"example-{attempt}.log"
            proc = zygote().spawn("tests.snippet", [str(tmp_path / "example.py")], env, tmp_path, log)
            returncode, output = proc.wait(timeout=240), log.read_text(errors="replace")
        else:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
            returncode, output = done.returncode, done.stdout[-3000:] + "\n--- stderr\n" + done.stderr
        assert returncode == 0, f"{example.id} failed on run {attempt} (exit {returncode})\n--- code\n{code}\n--- output\n{output[-6000:]}"
