"""Logging: plain text by default, JSON lines with ML_SERVER_LOG_FORMAT=json, job lines carrying model key and version."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from service import logs

from .stack import Stack, wait_for


def _emit(fmt: str, **bound: Any) -> str:
    """One line logged through the configured handler, with `bound` job fields, in a context of its own."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(fmt))
    handler.addFilter(logs.JobFields())
    logger = logging.getLogger(f"test_logging.{fmt}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def run() -> None:
        logs.bind(**bound)
        logger.info("model=%s version=%s fit done", bound.get("model_key"), bound.get("version"))

    try:
        contextvars.copy_context().run(run)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_text_format_keeps_its_content_and_json_adds_the_job_fields() -> None:
    text = _emit("text", model_key="churn", version=3)
    assert text.rstrip().endswith("INFO test_logging.text: model=churn version=3 fit done"), text

    record = json.loads(_emit("json", model_key="churn", version=3))
    assert record["message"] == "model=churn version=3 fit done"
    assert record["model_key"] == "churn" and record["version"] == 3
    assert record["level"] == "INFO" and record["logger"] == "test_logging.json" and record["time"]

    unbound = json.loads(_emit("json"))  # outside a job: no job fields at all
    assert "model_key" not in unbound and "version" not in unbound


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name}: not a JSON line: {line!r}") from None
        assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    return records


@pytest.mark.integration
def test_json_logs_are_json_lines_and_job_lines_carry_model_key_and_version(fresh_stack: Stack) -> None:
    s = fresh_stack
    s.start_consumer("logreg", ML_SERVER_LOG_FORMAT="json")
    s.start_gateway(ML_SERVER_LOG_FORMAT="json")
    rng = np.random.default_rng(5)
    x = pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"])
    y = (x["a"] > 0).astype(int).rename("t").to_frame()
    r = requests.post(s.fit_url("logreg"), json={"x": x.to_json(), "y": y.to_json(), "name": "json-logs"}, timeout=30)
    assert r.status_code == 202, r.text
    key, version = r.json()["model_key"], r.json()["version"]
    assert s.wait_finished("logreg", key)["status"] == "done"
    r = requests.post(s.family_url("logreg"), json={"model_key": key, "x": x.to_json()}, timeout=30)
    assert r.status_code == 200, r.text

    consumer_log = next(s.workdir.glob("consumer-logreg-*.log"))

    def job_lines() -> list[dict[str, Any]]:
        done = [r for r in _json_lines(consumer_log) if r.get("model_key") == key and "done" in r["message"]]
        return done and [r for r in _json_lines(consumer_log) if r.get("model_key") == key]

    lines = wait_for(job_lines, 30, what="the fit's log lines")
    assert any("started" in r["message"] for r in lines), lines
    assert all(r["version"] == version for r in lines), lines
    assert all(f"model={key}" in r["message"] for r in lines), lines

    for _, proc in s.consumers:  # stopped cleanly: its last lines are JSON too
        s.kill(proc, 15)
    assert any("stopping" in r["message"] for r in _json_lines(consumer_log))
    gateway_log = next(s.workdir.glob("gateway-*.log"))
    assert _json_lines(gateway_log), "the gateway logged nothing"
