"""Bearer tokens: read and write scopes, 401 and 403, and no open gateway on a public address by accident."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from contracts.settings import Settings, SettingsError
from gateway.auth import digest, is_loopback, new_token

from .stack import ROOT, Stack, wait_for


def test_token_settings_hold_hashes_and_bad_entries_name_the_variable() -> None:
    token, entry = new_token("read")
    settings = Settings.from_env({"ML_SERVER_TOKENS": f"{entry}, write:{digest('other')}:alice"})
    assert settings.tokens == (("read", digest(token), f"read-{digest(token)[:8]}"), ("write", digest("other"), "alice"))
    assert token not in repr(settings)
    for bad in ("admin:" + "0" * 64, "read:abc", "write:" + "z" * 64, token, "write:" + "0" * 64 + ":no spaces"):
        with pytest.raises(SettingsError, match="ML_SERVER_TOKENS"):
            Settings.from_env({"ML_SERVER_TOKENS": bad})
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


def test_gateway_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "ML_SERVER_HOST": "0.0.0.0",
    }
    subprocess.run([sys.executable, "-m", "commands", "migrate"], env=env, check=True, capture_output=True, timeout=60)
    done = subprocess.run([sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "without authentication" in done.stderr and "ML_SERVER_TOKENS" in done.stderr


@pytest.mark.integration
def test_scopes_on_every_verb(fresh_stack: Stack) -> None:
    write, write_entry = new_token("write", "alice")
    read, read_entry = new_token("read")
    fresh_stack.start_consumer("logreg")
    fresh_stack.start_gateway(ML_SERVER_TOKENS=f"{write_entry},{read_entry}")
    url = fresh_stack.family_url("logreg")

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
    y = pd.DataFrame({"t": (x["a"] > 0).astype(int)})
    name = f"auth-{fresh_stack.namespace}"  # the database is shared with other tests
    fit = {"x": x.to_json(), "y": y.to_json(), "name": name}

    # Probes stay open; everything else needs a token.
    assert requests.get(f"{fresh_stack.url}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{fresh_stack.url}/readyz", timeout=10).status_code == 200
    for method, target in (("PUT", url), ("GET", f"{fresh_stack.url}/models"), ("GET", f"{fresh_stack.url}/families")):
        r = requests.request(method, target, json=fit if method == "PUT" else None, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.put(url, json=fit, headers=auth("not-a-token"), timeout=10).status_code == 401
    assert requests.put(url, json=fit, headers={"Authorization": f"Basic {write}"}, timeout=10).status_code == 401

    # A read token may not train.
    r = requests.put(url, json=fit, headers=auth(read), timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    listed = requests.get(f"{fresh_stack.url}/models", params={"name": name}, headers=auth(read), timeout=10)
    assert listed.status_code == 200 and listed.json()["total"] == 0  # nothing was created

    r = requests.put(url, json=fit, headers=auth(write), timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "Queued", r.text  # the seed's contract
    key = r.json()["model_key"]

    def status() -> str:
        return str(requests.get(url, params={"model_key": key}, headers=auth(read), timeout=10).json()["status"])

    assert wait_for(lambda: status() in ("Done", "Failed"), 60, what="fit done") and status() == "Done"
    r = requests.post(url, json={"model_key": key, "x": x.head(3).to_json()}, headers=auth(read), timeout=30)
    assert r.status_code == 200, r.text
    assert requests.patch(url, json={"model_key": key, "x": x.to_json(), "y": y.to_json()}, headers=auth(read), timeout=10).status_code == 403
    assert requests.delete(url, params={"model_key": key}, headers=auth(read), timeout=10).status_code == 403

    # ml-server's own routes: the same scopes, whatever the HTTP method (a fit or an update is a POST there).
    own_fit = fresh_stack.fit_url("logreg")
    assert requests.post(own_fit, json=fit, headers=auth(read), timeout=10).status_code == 403
    assert requests.post(own_fit, json={**fit, "name": None}, timeout=10).status_code == 401
    update = {"x": x.to_json(), "y": y.to_json()}
    assert requests.post(fresh_stack.model_url(key, "update"), json=update, headers=auth(read), timeout=10).status_code == 403
    r = requests.post(fresh_stack.model_url(key, "predict"), json={"x": x.head(3).to_json()}, headers=auth(read), timeout=30)
    assert r.status_code == 200, r.text
    assert requests.get(fresh_stack.model_url(key), headers=auth(read), timeout=10).json()["latest"]["status"] == "done"
    assert requests.delete(fresh_stack.model_url(key), headers=auth(read), timeout=10).status_code == 403
    r = requests.post(own_fit, json={**fit, "retrain": True}, headers=auth(write), timeout=30)
    assert r.status_code == 202 and r.json()["version"] == 2, r.text

    # The registry: a read token looks, a write token changes; who did what is the token's name.
    wait_for(lambda: requests.get(fresh_stack.model_url(key), headers=auth(read), timeout=10).json()["latest"]["status"] == "done", 60)
    alias = fresh_stack.model_url(key, "aliases", "champion")
    changes = (
        ("PUT", alias, {"version": 2}),
        ("PATCH", fresh_stack.model_url(key), {"tags": ["prod"]}),
        ("PATCH", fresh_stack.model_url(key, "versions", "2"), {"description": "second"}),
        ("DELETE", alias, None),
    )
    for method, target, body in changes:
        assert requests.request(method, target, json=body, headers=auth(read), timeout=10).status_code == 403
        r = requests.request(method, target, json=body, headers=auth(write), timeout=10)
        assert r.status_code == 200, r.text
    for target in (f"{fresh_stack.url}/families/logreg/models/import", fresh_stack.model_url(key, "import")):
        assert requests.post(target, data=b"PK\x03\x04", headers=auth(read), timeout=10).status_code == 403
    history = requests.get(fresh_stack.model_url(key, "history"), headers=auth(read), timeout=10).json()["history"]
    assert [(h["action"], h["actor"]) for h in history][:4] == [("unalias", "alice"), ("describe", "alice"), ("tag", "alice"), ("alias", "alice")]
    assert {(h["action"], h["version"], h["actor"]) for h in history} >= {("fit", 1, "alice"), ("fit", 2, "alice")}
    versions = requests.get(fresh_stack.model_url(key, "versions"), headers=auth(read), timeout=10).json()["versions"]
    assert [v["actor"] for v in versions] == ["alice", "alice"]

    assert requests.delete(url, params={"model_key": key}, headers=auth(write), timeout=10).json() == {}
    assert requests.get(fresh_stack.model_url(key), headers=auth(read), timeout=10).status_code == 404
