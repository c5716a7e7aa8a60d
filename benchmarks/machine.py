"""The machine a run measured on: CPUs, OS, Python, RabbitMQ, scikit-learn, load average."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine() -> dict[str, Any]:
    import sklearn

    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rabbit = "?"
    try:
        out = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True, timeout=30).stdout.strip()
        rabbit = out or rabbit
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "rabbitmq": rabbit,
        "sklearn": sklearn.__version__,
        "loadavg_at_start": loadavg(),
    }
