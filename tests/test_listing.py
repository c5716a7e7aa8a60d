"""Listing models and versions with filters and pagination (what dashboards are built on)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests

from client import GenericModelInterface

from .stack import Stack

pytestmark = pytest.mark.integration


def test_models_and_versions_listing(stack: Stack) -> None:
    rng = np.random.default_rng(11)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    y = pd.Series(x["a"] * 2 + 1, name="t")
    tag = stack.namespace  # names unique to this test
    keys = []
    for i in range(3):
        mi = GenericModelInterface(stack.url, "linreg")
        mi.fit(x, y, name=f"{tag}-list-{i}")
        keys.append(mi.model_key)
    mi.fit(x, y, name=f"{tag}-list-2", retrain=True)  # version 2 of the last one
    bad = GenericModelInterface(stack.url, "logreg", C=-1.0)  # accepted, fails in the estimator
    with pytest.raises(Exception):
        bad.fit(x, (y > 1).astype(int), name=f"{tag}-list-bad")

    r = requests.get(f"{stack.url}/models", params={"family": "linreg", "limit": 2}, timeout=10)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["limit"] == 2 and page["offset"] == 0 and len(page["models"]) == 2 and page["total"] >= 3
    assert all(m["family"] == "linreg" for m in page["models"])
    seen = {m["model_key"] for m in page["models"]}
    page2 = requests.get(f"{stack.url}/models", params={"family": "linreg", "limit": 2, "offset": 2}, timeout=10).json()
    assert not seen & {m["model_key"] for m in page2["models"]}

    named = requests.get(f"{stack.url}/models", params={"name": f"{tag}-list-2"}, timeout=10).json()
    assert [m["model_key"] for m in named["models"]] == [keys[2]]
    assert named["models"][0]["latest"]["version"] == 2 and named["models"][0]["latest"]["status"] == "done"

    failed = requests.get(f"{stack.url}/models", params={"status": "failed", "family": "logreg"}, timeout=10).json()
    assert bad.model_key in {m["model_key"] for m in failed["models"]}
    assert all(m["latest"]["status"] == "failed" for m in failed["models"])

    versions = requests.get(f"{stack.url}/models/{keys[2]}/versions", timeout=10).json()
    assert [v["version"] for v in versions["versions"]] == [2, 1] and versions["total"] == 2
    meta = versions["versions"][0]["metadata"]
    assert meta["features"] == ["a", "b", "c"] and meta["targets"] == ["t"] and meta["score"] > 0.99
    assert meta["versions"]["scikit-learn"] and versions["versions"][0]["backend"] == "joblib"
    assert versions["versions"][0]["params"]["retrain"] is True and versions["versions"][0]["rows"] == 200

    assert requests.get(f"{stack.url}/models", params={"status": "sideways"}, timeout=10).status_code == 422
    assert requests.get(f"{stack.url}/models", params={"limit": 0}, timeout=10).status_code == 422
    # Text PostgreSQL cannot store is refused before the store sees it, on both databases alike.
    nul = requests.get(f"{stack.url}/models", params={"name": "a\x00b"}, timeout=10)
    assert nul.status_code == 422 and nul.json()["error"]["fields"] == {"name": ["must not contain a NUL character"]}, nul.text
    fit = requests.put(f"{stack.url}/linreg", json={"x": '{"a":{"0":1.0}}', "y": '{"t":{"0":1.0}}', "name": "a\x00b"}, timeout=10)
    assert fit.status_code == 422 and "name" in fit.json()["error"]["fields"], fit.text
    assert requests.get(f"{stack.url}/models/nope/versions", timeout=10).status_code == 404
