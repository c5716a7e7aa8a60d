"""Credentials never reach the logs: not the broker's or the store's password, not the signing key,
not on a healthy run at DEBUG level and not when the broker refuses the password."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from .stack import BROKER_URL, ROOT, Stack, wait_for

pytestmark = pytest.mark.integration


def _with_password(url: str, password: str) -> str:
    """The URL with a password in its userinfo (PostgreSQL on the test machines trusts local users, so it still connects)."""
    if not url.startswith("postgresql://"):
        return url
    scheme, rest = url.split("://", 1)
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}://{(userinfo or 'postgres').split(':')[0]}:{password}@{host}"


def _read_logs(stack: Stack) -> str:
    return "\n".join(p.read_text(errors="replace") for p in stack.workdir.glob("*.log"))


def test_a_healthy_run_at_debug_level_logs_no_credentials(database_url: str, tmp_path: Path) -> None:
    db_password = f"s3cr3t-DB-{uuid.uuid4().hex[:6]}"
    signing_key = f"s3cr3t-KEY-{uuid.uuid4().hex}"
    stack = Stack(_with_password(database_url, db_password), tmp_path / "stack", ML_SERVER_SECRET=signing_key, ML_SERVER_LOG_LEVEL="DEBUG")
    try:
        stack.start_consumer("linreg")
        stack.start_gateway()
        x = {"a": {"0": 1.0, "1": 2.0, "2": 3.0}}
        r = requests.post(stack.fit_url("linreg"), json={"x": x, "y": {"t": {"0": 1, "1": 2, "2": 3}}}, timeout=30)
        assert r.status_code == 202, r.text
        key = r.json()["model_key"]
        assert stack.wait_finished("linreg", key)["status"] == "done"
        assert requests.post(stack.family_url("linreg"), json={"model_key": key, "x": x}, timeout=30).ok
        assert requests.get(stack.family_url("linreg"), params={"model_key": "nope"}, timeout=10).status_code == 404
    finally:
        stack.stop()
    logs = _read_logs(stack)
    assert "consumer ready: linreg" in logs  # the logs were written and read
    userinfo = BROKER_URL.split("://", 1)[1].rsplit("@", 1)[0]
    assert ":" in userinfo and f"{userinfo}@" not in logs, "the broker URL's credentials are in the logs"
    assert signing_key not in logs
    assert db_password not in logs


def test_a_refused_broker_password_is_not_logged(database_url: str, tmp_path: Path) -> None:
    password = f"s3cr3t-XYZ-{uuid.uuid4().hex[:6]}"
    db_password = f"s3cr3t-DB-{uuid.uuid4().hex[:6]}"
    wrong = f"amqp://guest:{password}@127.0.0.1:5672/"
    stack = Stack(_with_password(database_url, db_password), tmp_path / "stack", broker_url=wrong)
    try:
        gateway = stack._spawn("gateway", "gateway")
        stack.gateway = gateway
        consumer = stack._spawn("consumer-logreg", "consumers", "logreg")
        stack.consumers.append(("logreg", consumer))

        def refused_twice() -> bool:
            gateway_log = "".join(p.read_text(errors="replace") for p in stack.workdir.glob("gateway-*.log"))
            consumer_log = "".join(p.read_text(errors="replace") for p in stack.workdir.glob("consumer-*.log"))
            gateway_said = gateway_log.count("ACCESS_REFUSED") >= 2 or gateway.poll() is not None
            return gateway_said and (consumer.poll() is not None or consumer_log.count("ACCESS_REFUSED") >= 2)

        wait_for(refused_twice, 60, interval=0.3, what="the gateway and the consumer to report the refused login")
    finally:
        stack.stop()
    logs = _read_logs(stack)
    assert "broker" in logs.lower()  # the refusal was logged ...
    assert password not in logs  # ... without the password
    assert db_password not in logs
    assert stack.env["ML_SERVER_SECRET"] not in logs


@pytest.mark.parametrize("command", [["-m", "gateway"], ["-m", "consumers", "logreg"], ["-m", "commands", "migrate"]])
def test_an_unreachable_store_does_not_print_its_password(command: list[str], tmp_path: Path) -> None:
    password = f"s3cr3t-PG-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_DATA_DIR": str(tmp_path),
        "ML_SERVER_DATABASE_URL": f"postgresql://postgres:{password}@127.0.0.1:1/nowhere",
        "ML_SERVER_BROKER_URL": BROKER_URL,
        "ML_SERVER_SECRET": uuid.uuid4().hex,
    }
    done = subprocess.run([sys.executable, *command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "127.0.0.1" in output, output[-2000:]  # it failed, and said where
    assert password not in output
