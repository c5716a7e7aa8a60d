"""Logging, configured once at each process's entry point (gateway, consumer, `ml-server run`).

Two formats, chosen by `ML_SERVER_LOG_FORMAT`:

- `text` (default): `2026-11-24 15:40:01,123 INFO consumers.worker: model=churn job=7 version=2 fit done in 0.084s`
- `json`: one JSON object per line, `{"time", "level", "logger", "message"}` plus the job's fields
  (`model_key`, `version`) and, for an error, `exc_info` with the traceback.

Job fields come from `bind()`: a consumer binds the model key and version of
the job it is handling, and every line logged while it handles that job
carries them, whichever module logs it. aio-pika runs each delivery in a task
of its own, so the binding is the delivery's (a `ContextVar`) and ends with it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

# The job being handled in the current task: {"model_key": ..., "version": ...}.
_job: ContextVar[dict[str, Any] | None] = ContextVar("ml_server_job", default=None)


def bind(**fields: Any) -> None:
    """Attach fields (`model_key`, `version`) to every log line of the current task from now on; None is left out."""
    _job.set({**(_job.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


class JobFields(logging.Filter):
    """Copies the bound job fields onto each record (a field given with `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_job.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    return logging.Formatter(TEXT_FORMAT)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Replace the root logger's handlers with one on stderr in `fmt`; warnings and uncaught errors go there too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(JobFields())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("ml_server").critical("uncaught %s: %s", kind.__name__, value, exc_info=(kind, value, tb))
