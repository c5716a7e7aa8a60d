"""docker-compose.yml, validated without a Docker engine: structure, commands, settings, no default secrets."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from consumers.families import BUILTIN
from contracts.settings import SETTINGS

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
    for var in ("ML_SERVER_SECRET", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"):
        uses = re.findall(r"\$\{" + var + r"(:?[-?][^}]*)?\}", text)
        assert uses and all(u.startswith(":?") for u in uses), (var, uses)


def test_dockerfile_installs_the_package_like_make_install() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile
    for package in ("contracts", "gateway", "consumers", "client"):
        assert f"COPY {package} ./{package}" in dockerfile
