"""Fits through ml-server's own resource routes, timed from submit to `done`.

    POST /families/logreg/models?name=...&retrain=true   (Parquet: x and the target)  -> 202 {model_key, status, version}
    GET  /models/{model_key}                              -> {..., "latest": {"version", "status", "error", ...}}

A fit is done when the model's latest version is the one the submit
answered and its status is `done` (lower-case statuses on these routes).
"""

from __future__ import annotations

import time
from typing import Any

from .bodies import fit_body
from .common import FAMILY, PARQUET

from contracts import paths

FINISHED = ("done", "failed")


def fit_url(gateway: str) -> str:
    return gateway + paths.fill(paths.FAMILY_MODELS, family=FAMILY)


def model_url(gateway: str, model_key: str) -> str:
    return gateway + paths.fill(paths.MODEL, model_key=model_key)


def fit_params(name: str) -> dict[str, str]:
    """A named model, retrained on every submit: each one is a new version of the same model_key."""
    return {"name": name, "retrain": "true"}


def accepted(status: int, answer: Any) -> tuple[str, int]:
    """model_key and version of a fit's answer (202, or 200 for a model that exists); raises otherwise."""
    if status not in (200, 202) or not isinstance(answer, dict) or "model_key" not in answer or "version" not in answer:
        raise RuntimeError(f"fit: HTTP {status}: {str(answer)[:300]}")
    return answer["model_key"], int(answer["version"])


def finished(model: Any, version: int) -> tuple[str, str | None] | None:
    """(status, error) once `version` is the latest and finished; None while it isn't."""
    latest = model.get("latest") if isinstance(model, dict) else None
    if not latest or latest.get("version") != version or latest.get("status") not in FINISHED:
        return None
    return latest["status"], latest.get("error")


def fit_through_server(gateway: str, rows: int, name: str, poll: float = 0.01) -> dict[str, Any]:
    """One fit of `rows` x 10, submit to `done` seen by polling the model every `poll` seconds."""
    import requests

    body = fit_body(rows)
    with requests.Session() as session:
        t = time.perf_counter()
        r = session.post(fit_url(gateway), params=fit_params(name), data=body, headers={"Content-Type": PARQUET}, timeout=60)
        key, version = accepted(r.status_code, r.json())
        accepted_after = time.perf_counter() - t
        while True:
            m = session.get(model_url(gateway, key), timeout=10)
            m.raise_for_status()
            state = finished(m.json(), version)
            if state is not None:
                break
            if time.perf_counter() - t > 600:
                raise RuntimeError(f"fit of {rows} rows: not finished after 600 s")
            time.sleep(poll)
        total = time.perf_counter() - t
    status, error = state
    if status != "done":
        raise RuntimeError(f"fit of {rows} rows failed: {error}")
    return {"model_key": key, "version": version, "seconds": total, "accepted_seconds": accepted_after, "http_status": r.status_code,
            "body_bytes": len(body)}
