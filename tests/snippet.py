"""`python FILE`, for a docs example run from the tests' zygote: `python -m tests.snippet FILE`.

The example runs as `__main__` with the directory it was started in first on
`sys.path`, as `python -c` puts it; only the interpreter start and the imports
the zygote made already are skipped."""

from __future__ import annotations

import runpy
import sys

if __name__ == "__main__":
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, "")
    runpy.run_path(path, run_name="__main__")
