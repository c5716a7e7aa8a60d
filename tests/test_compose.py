"""docker-compose.yml, validated without a Docker engine: structure, commands, settings, no default secrets."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from consumers.families import BUILTIN
from contracts.frames import PARQUET, ParquetCodec, encode_training
from contracts.settings import SETTINGS
from gateway.auth import new_token

from .conftest import IN_CI, _postgres_answers
from .stack import BROKER_URL, POSTGRES_URL, free_port, purge_namespace, wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_serves_every_family_with_known_settings_and_required_secrets() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    doc = yaml.safe_load(text)
    services = doc["services"]
    assert {"rabbitmq", "postgres", "gateway"} <= set(services)
    assert "management" in services["rabbitmq"]["image"]
    for name in ("rabbitmq", "postgres", "gateway"):
        assert "healthcheck" in services[name], name

    consumers = {n: s for n, s in services.items() if n.startswith("consumer-")}
    assert {n.removeprefix("consumer-") for n in consumers} == set(BUILTIN)
    for name, service in consumers.items():
        assert service["command"] == ["ml-server-consumer", name.removeprefix("consumer-")]
        assert "container_name" not in service  # `--scale` needs generated names
    assert services["gateway"]["command"] == ["ml-server-gateway"]
    # Its /readyz (the health check) waits for a consumer of every family the consumer services serve.
    assert services["gateway"]["environment"]["ML_SERVER_FAMILIES"].split(",") == list(BUILTIN)
    # The schema is migrated once, before the gateway and the consumers start.
    assert services["migrate"]["command"] == ["ml-server", "migrate"]
    for name in ["gateway", *consumers]:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}

    known = {env for env, *_ in SETTINGS.values()}
    for name in ["gateway", "migrate", *consumers]:
        env = services[name]["environment"]
        assert set(env) <= known, set(env) - known
        assert {"ML_SERVER_BROKER_URL", "ML_SERVER_DATABASE_URL", "ML_SERVER_SECRET"} <= set(env)

    # Every secret must be given by the operator: `${VAR:?message}`, never `${VAR:-default}`.
    for var in ("ML_SERVER_SECRET", "ML_SERVER_TOKENS", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"):
        uses = re.findall(r"\$\{" + var + r"(:?[-?][^}]*)?\}", text)
        assert uses and all(u.startswith(":?") for u in uses), (var, uses)


def test_dockerfile_installs_the_package_like_make_install() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile
    for package in ("contracts", "gateway", "consumers", "client"):
        assert f"COPY {package} ./{package}" in dockerfile


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${VAR:?message}` / `${VAR}` substitution, for the values this file uses."""
    return re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}", lambda m: variables[m.group(1)], value)


@pytest.mark.integration
def test_every_compose_service_command_starts_here_with_its_environment(tmp_path: Path) -> None:
    """No Docker engine here: run each ml-server service's command with the service's own
    environment, pointing the compose host names at the local broker and PostgreSQL."""
    if not _postgres_answers():
        if IN_CI:
            pytest.fail("CI must run this test, but PostgreSQL does not answer on 127.0.0.1:5432")
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432")
    import psycopg

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    database = f"mls_compose_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    token, entry = new_token("write", "compose")
    variables = {
        "RABBITMQ_PASSWORD": "not-used-here", "POSTGRES_PASSWORD": "not-used-here", "ML_SERVER_SECRET": uuid.uuid4().hex,
        "ML_SERVER_TOKENS": entry,
    }
    namespace = f"test-compose-{uuid.uuid4().hex[:6]}"
    gateway_port = free_port()
    local = {
        "ML_SERVER_BROKER_URL": BROKER_URL,  # amqp://ml:…@rabbitmq:5672/ → the local broker
        "ML_SERVER_DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + f"/{database}",  # …@postgres:5432/ml → a fresh database
    }
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    logs: dict[str, Path] = {}

    def environment(name: str, **extra: str) -> dict[str, str]:
        env = {k: _interpolate(str(v), variables) for k, v in services[name]["environment"].items()}
        assert "@rabbitmq:5672/" in env["ML_SERVER_BROKER_URL"] and "@postgres:5432/" in env["ML_SERVER_DATABASE_URL"]
        env.update(local)
        return {**os.environ, **env, "ML_SERVER_NAMESPACE": namespace, "ML_SERVER_DATA_DIR": str(tmp_path / "data"), **extra}

    def command(name: str) -> list[str]:
        cmd = services[name]["command"]
        return [str(Path(sys.executable).parent / cmd[0]), *cmd[1:]]  # the console scripts `pip install` made

    def start(name: str, **extra: str) -> None:
        logs[name] = tmp_path / f"{name}.log"
        with logs[name].open("wb") as out:
            procs.append((name, subprocess.Popen(command(name), env=environment(name, **extra), stdout=out, stderr=subprocess.STDOUT)))

    try:
        migrate = subprocess.run(command("migrate"), env=environment("migrate"), capture_output=True, text=True, timeout=120)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr

        consumers = sorted(n for n in services if n.startswith("consumer-"))
        for name in consumers:
            start(name, ML_SERVER_METRICS_PORT=str(free_port()))
        start("gateway", ML_SERVER_PORT=str(gateway_port))  # on 0.0.0.0, as in compose: it needs the tokens
        url = f"http://127.0.0.1:{gateway_port}"
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"

        def all_up() -> bool:
            for name, proc in procs:
                assert proc.poll() is None, f"{name} exited: {logs[name].read_text()[-3000:]}"
            r = http.get(f"{url}/families", timeout=2)
            return r.ok and {f["name"] for f in r.json()["families"]} >= {n.removeprefix("consumer-") for n in consumers}

        wait_for(all_up, 180, interval=0.5, what="every compose service up")
        # The gateway's health check, as compose runs it, on this gateway's port.
        check = [c.replace("8080", str(gateway_port)) for c in services["gateway"]["healthcheck"]["test"][1:]]
        assert subprocess.run(check, timeout=30).returncode == 0

        x = pd.DataFrame(np.random.default_rng(3).normal(size=(50, 3)), columns=["a", "b", "c"])
        y = pd.DataFrame({"t": (x["a"] > 0).astype(int)})
        r = http.put(f"{url}/logreg", data=encode_training(x, y), params={"name": "compose"}, headers={"Content-Type": PARQUET}, timeout=30)
        assert r.status_code == 200 and r.json()["status"] == "Queued", r.text
        key = r.json()["model_key"]
        wait_for(lambda: http.get(f"{url}/logreg", params={"model_key": key}, timeout=5).json()["status"] == "Done", 60, what="fit done")
        r = http.post(f"{url}/logreg", params={"model_key": key}, data=ParquetCodec.encode(x.head(4)), headers={"Content-Type": PARQUET}, timeout=30)
        assert r.status_code == 200, r.text
        assert requests.get(f"{url}/families", timeout=5).status_code == 401  # served on 0.0.0.0: no token, no answer
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in procs:
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = "killed"
        purge_namespace(namespace, BUILTIN)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    assert all(code == 0 for code in codes.values()), codes
