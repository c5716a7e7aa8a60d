"""deploy/kubernetes/, validated offline: Kubernetes' own schemas, the CRDs' schemas, ml-server's settings and queues.

No cluster is needed: built-in kinds are checked with `kubernetes-validate` (the Kubernetes JSON schemas, strict:
an unknown field fails), RabbitmqCluster, ScaledObject and TriggerAuthentication with the openAPIV3Schema of the
operators' CRDs kept in tests/crds/ (made strict the same way), and the settings and queue names against
`contracts.settings` and `contracts.topology`.
"""

from __future__ import annotations

import copy
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from consumers.worker import Consumer
from service import schema
from contracts.families import BUILTIN
from contracts.settings import SETTINGS, Settings
from contracts.topology import Topology
from contracts import paths as http_paths
from gateway.routing import Scope
from gateway.table import ROUTES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
CRDS = Path(__file__).resolve().parent / "crds"
# The oldest Kubernetes minor still widely run by managed clusters, and the newest the package knows.
K8S_VERSIONS = ("1.28", latest_version())
CUSTOM_KINDS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmq.com_rabbitmqclusters.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
}
KNOWN = {env for env, *_ in SETTINGS.values()}
# Keys of the Secret the RabbitMQ Cluster Operator writes for a cluster's default user.
OPERATOR_SECRET_KEYS = {"username", "password", "host", "port", "connection_string", "provider", "type"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _objects() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(DEPLOY.glob("*.yaml")) if p.name != "kustomization.yaml" for d in _documents(p)]


OBJECTS = _objects()


def _ids(items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in items]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in OBJECTS if d["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _of_kind(kind) if d["metadata"]["name"] == name]
    return found


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


BUILTIN_OBJECTS = [(f, d) for f, d in OBJECTS if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]
CUSTOM_OBJECTS = [(f, d) for f, d in OBJECTS if (d["apiVersion"], d["kind"]) in CUSTOM_KINDS]


# ---- every object is what its schema allows ----------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    listed = set(_kustomization()["resources"])
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    # The example Secret holds placeholders: it must never be applied by `kubectl apply -k`.
    assert listed == files - {"secret.example.yaml"}
    assert {d["kind"] for _, d in OBJECTS} >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "StatefulSet", "Job", "Secret",
        "ConfigMap", "RabbitmqCluster", "ScaledObject", "TriggerAuthentication",
    }  # fmt: skip


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("filename", "obj"), BUILTIN_OBJECTS, ids=_ids(BUILTIN_OBJECTS))
def test_builtin_objects_validate_against_the_kubernetes_schemas(filename: str, obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


def test_kubernetes_validation_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(_named("Deployment", "ml-server-gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def _strict(node: Any) -> Any:
    """A CRD's structural schema as the API server applies it with strict field validation: unknown fields are
    errors (not pruned), `x-kubernetes-int-or-string` is an integer or a string."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def _crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    (crd,) = _documents(CRDS / CUSTOM_KINDS[(api_version, kind)])
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema_ = _strict(served["schema"]["openAPIV3Schema"])
    # The API server checks these itself; the CRD schemas leave metadata open.
    schema_["properties"]["metadata"] = {"type": "object"}
    schema_["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return schema_


@pytest.mark.parametrize(("filename", "obj"), CUSTOM_OBJECTS, ids=_ids(CUSTOM_OBJECTS))
def test_custom_objects_validate_against_their_crds(filename: str, obj: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(_crd_schema(obj["apiVersion"], obj["kind"])).validate(obj)


def test_crd_validation_rejects_unknown_fields_and_wrong_types() -> None:
    schema_ = _crd_schema("keda.sh/v1alpha1", "ScaledObject")
    scaled = copy.deepcopy(_of_kind("ScaledObject")[0])
    jsonschema.Draft7Validator(schema_).validate(scaled)
    typo = copy.deepcopy(scaled)
    typo["spec"]["minReplicas"] = typo["spec"].pop("minReplicaCount")
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.Draft7Validator(schema_).validate(typo)
    number = copy.deepcopy(scaled)
    number["spec"]["triggers"][0]["metadata"]["value"] = 2  # trigger metadata is strings only
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema_).validate(number)


def test_every_object_belongs_to_ml_server_and_the_namespace_is_the_kustomization_one() -> None:
    namespace = _kustomization()["namespace"]
    assert _named("Namespace", namespace)
    for _, obj in OBJECTS:
        assert "namespace" not in obj["metadata"], obj["metadata"]["name"]  # kustomize sets it
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ml-server", obj["metadata"]["name"]


# ---- settings: what each process reads is set, nothing unknown is -------------------------------------------


def _config_map() -> dict[str, str]:
    return dict(_named("ConfigMap", "ml-server-settings")["data"])


def _secret_keys() -> set[str]:
    return set(_named("Secret", "ml-server")["stringData"])


def _environment(container: dict[str, Any]) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """A container's literal settings (its ConfigMaps included) and its settings from Secrets, (secret, key)."""
    literal: dict[str, str] = {}
    secret: dict[str, tuple[str, str]] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, source
        assert source["configMapRef"]["name"] == "ml-server-settings"
        literal.update(_config_map())
    for var in container.get("env", []):
        if "value" in var:
            literal[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            secret[var["name"]] = (ref["name"], ref["key"])
    return literal, secret


def _workload_containers() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every ml-server container: role (gateway, consumer, migrate, init), its name, the container."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for kind in ("Deployment", "Job"):
        for obj in _of_kind(kind):
            spec = obj["spec"]["template"]["spec"]
            for c in spec.get("initContainers", []):
                found[f"{obj['metadata']['name']}/{c['name']}"] = ("init", c)
            for c in spec["containers"]:
                role = {"ml-server-gateway": "gateway", "ml-server-consumer": "consumer", "ml-server": "migrate"}[c["command"][0]]
                found[f"{obj['metadata']['name']}/{c['name']}"] = (role, c)
    return found


# What each role needs on Kubernetes beyond its defaults: a shared broker and store (the defaults are localhost and
# a SQLite file), a signing key for consumers, and for the gateway an address others reach, with tokens.
REQUIRED = {
    "gateway": {"ML_SERVER_BROKER_URL", "ML_SERVER_DATABASE_URL", "ML_SERVER_HOST", "ML_SERVER_PORT", "ML_SERVER_FAMILIES", "ML_SERVER_TOKENS"},
    "consumer": {"ML_SERVER_BROKER_URL", "ML_SERVER_DATABASE_URL", "ML_SERVER_SECRET", "ML_SERVER_METRICS_HOST", "ML_SERVER_METRICS_PORT"},
    "migrate": {"ML_SERVER_DATABASE_URL"},
    "init": {"ML_SERVER_DATABASE_URL"},
}
# Stand-ins for Secret values, to build each process's Settings from its environment.
SECRET_STANDINS = {
    "connection_string": "amqp://user:password@ml-server-rabbitmq.ml-server.svc:5672/",
    "database-url": "postgresql://ml:password@ml-server-postgres:5432/ml",
    "signing-key": "0" * 64,
    "tokens": "write:" + "0" * 64 + ":ops",
}


def test_the_required_settings_are_read_by_the_code_of_their_role() -> None:
    """Each REQUIRED name is a setting the role's own code reads (`settings.<attribute>`), so the table above can't
    keep a setting the code dropped."""
    attribute = {env: attr for attr, (env, *_) in SETTINGS.items()}
    code = {
        "gateway": "".join(p.read_text() for p in (ROOT / "gateway").glob("*.py")),
        "consumer": "".join(p.read_text() for p in (ROOT / "consumers").glob("*.py")),
        "migrate": (ROOT / "commands" / "main.py").read_text(),
        "init": "".join(c["command"][2] for c in [c for _, c in _workload_containers().values()] if c["command"][0] == "python"),
    }
    reads = {"secret": "signing_key()", "database_url": "database_url", "host": "settings.host"}
    for role, names in REQUIRED.items():
        for name in names:
            attr = attribute[name]
            used = reads.get(attr, f"settings.{attr}")
            if role == "init":
                used = name  # the init container's script reads the variable itself
            assert used in code[role], (role, name)


def test_every_container_sets_what_its_process_needs_and_nothing_unknown() -> None:
    assert set().union(*REQUIRED.values()) <= KNOWN
    containers = _workload_containers()
    assert {role for role, _ in containers.values()} == set(REQUIRED)
    for where, (role, container) in containers.items():
        literal, secret = _environment(container)
        names = set(literal) | set(secret)
        unknown = {n for n in names if n.startswith("ML_SERVER_")} - KNOWN
        assert not unknown, (where, unknown)
        assert REQUIRED[role] <= names, (where, REQUIRED[role] - names)
        # Secrets come from Secrets, never from a value in a manifest.
        for name in ("ML_SERVER_BROKER_URL", "ML_SERVER_DATABASE_URL", "ML_SERVER_SECRET", "ML_SERVER_TOKENS"):
            assert name not in literal, (where, name)
        for var, (secret_name, key) in secret.items():
            keys = _secret_keys() if secret_name == "ml-server" else OPERATOR_SECRET_KEYS
            assert secret_name in ("ml-server", "ml-server-rabbitmq-default-user"), (where, var)
            assert key in keys, (where, var, key)
        # Each process starts with these settings: every value parses.
        env = {**literal, **{var: SECRET_STANDINS[key] for var, (_, key) in secret.items()}}
        settings = Settings.from_env(env)
        if role == "consumer":
            assert settings.signing_key()
        if role == "gateway":
            assert settings.host == "0.0.0.0" and settings.tokens


def test_settings_that_must_agree_are_set_once_for_everyone() -> None:
    # Queue arguments and the namespace: a queue declared again with other arguments is refused by RabbitMQ.
    shared = {"ML_SERVER_NAMESPACE", "ML_SERVER_MAX_TRAIN_QUEUE", "ML_SERVER_MAX_PREDICT_QUEUE", "ML_SERVER_LEASE_SECONDS"}
    assert shared <= set(_config_map())
    for where, (role, container) in _workload_containers().items():
        if role in ("gateway", "consumer"):
            literal, _ = _environment(container)
            assert {n: literal[n] for n in shared} == {n: _config_map()[n] for n in shared}, where
            assert not shared & {v["name"] for v in container.get("env", [])}, where  # not overridden per container


def test_the_secret_example_holds_placeholders_only() -> None:
    secret = _named("Secret", "ml-server")
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, key


# ---- consumers, families and queues ------------------------------------------------------------------------


def _consumers() -> dict[str, list[str]]:
    """Deployment name: the families its consumer serves."""
    out = {}
    for obj in _of_kind("Deployment"):
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        if container["command"][0] == "ml-server-consumer":
            out[obj["metadata"]["name"]] = container["command"][1:]
    return out


def test_every_builtin_family_has_one_consumer_deployment_and_the_gateway_waits_for_each() -> None:
    served = [f for families in _consumers().values() for f in families]
    assert sorted(served) == sorted(BUILTIN)  # each once
    literal, _ = _environment(_named("Deployment", "ml-server-gateway")["spec"]["template"]["spec"]["containers"][0])
    assert sorted(literal["ML_SERVER_FAMILIES"].split(",")) == sorted(BUILTIN)


def _queue_names(topology: Topology) -> set[str]:
    families = [*BUILTIN, "other"]
    names = {q(f) for f in families for q in (topology.train_queue, topology.predict_queue, topology.dead_queue)}
    return names | {topology.reply_queue("abc"), topology.events_queue("abc"), topology.jobs_exchange}


def test_keda_triggers_count_exactly_the_queues_of_their_families() -> None:
    namespace = _config_map()["ML_SERVER_NAMESPACE"]
    assert namespace == SETTINGS["namespace"][2]  # the default namespace, the one the code uses unset
    topology = Topology(namespace)
    every = _queue_names(topology)
    cluster = _of_kind("RabbitmqCluster")[0]["metadata"]["name"]
    host = f"http://{cluster}.{_kustomization()['namespace']}.svc:15672/"
    consumers = _consumers()
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in _of_kind("ScaledObject")}
    assert set(scaled) == set(consumers)
    for deployment, families in consumers.items():
        triggers = {t.get("name", t["type"]): t for t in scaled[deployment]["spec"]["triggers"]}
        fits = [f for f in families if BUILTIN[f].fits]
        assert set(triggers) == ({"train", "predict", "cpu"} if fits else {"predict", "cpu"}), deployment
        wanted = {"train": {topology.train_queue(f) for f in fits}, "predict": {topology.predict_queue(f) for f in families}}
        for name, queues in wanted.items():
            if name not in triggers:
                continue
            trigger = triggers[name]
            meta = trigger["metadata"]
            assert trigger["type"] == "rabbitmq" and meta["protocol"] == "http" and meta["host"] == host
            assert trigger["authenticationRef"]["name"] == _of_kind("TriggerAuthentication")[0]["metadata"]["name"]
            assert meta["useRegex"] == "true" and meta["operation"] == "sum"
            matched = {q for q in every if re.fullmatch(meta["queueName"], q)}
            assert matched == queues, (deployment, name, matched ^ queues)
        if "train" in triggers:
            meta = triggers["train"]["metadata"]
            # Ready + unacked: a fit in progress counts, so its pod is not scaled away for an empty queue.
            assert meta["mode"] == "QueueLength" and meta.get("excludeUnacknowledged", "false") == "false"
            literal, _ = _environment(_named("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0])
            assert meta["value"] == literal["ML_SERVER_FIT_PROCESSES"], deployment  # one pod per this many fits
        assert scaled[deployment]["spec"]["minReplicaCount"] >= 1  # /readyz needs a consumer of every family


def test_trigger_authentication_reads_the_operators_secret() -> None:
    cluster = _of_kind("RabbitmqCluster")[0]
    assert cluster["spec"]["replicas"] == 3
    refs = _of_kind("TriggerAuthentication")[0]["spec"]["secretTargetRef"]
    assert {r["parameter"]: (r["name"], r["key"]) for r in refs} == {
        "username": (f"{cluster['metadata']['name']}-default-user", "username"),
        "password": (f"{cluster['metadata']['name']}-default-user", "password"),
    }


def test_consumer_grace_period_fits_the_lease_handover() -> None:
    settings = _config_map()
    lease = float(settings["ML_SERVER_LEASE_SECONDS"])
    handover = float(settings["ML_SERVER_HANDOVER_AFTER"])
    drain = inspect.signature(Consumer.close).parameters["grace"].default
    for deployment in _consumers():
        grace = _named("Deployment", deployment)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        # Long enough to answer the predicts taken, short enough that the pod is gone before a lease it stopped
        # renewing (last renewed up to a third of the lease before) can run out and another pod reclaims the fit.
        assert drain + 10 <= grace < lease * 2 / 3, deployment
    # Fits are handed over before RabbitMQ's consumer_timeout closes their channel.
    config = _of_kind("RabbitmqCluster")[0]["spec"]["rabbitmq"]["additionalConfig"]
    timeout_ms = int(re.search(r"^consumer_timeout = (\d+)$", config, re.M).group(1))  # type: ignore[union-attr]
    assert handover * 1000 < timeout_ms * 0.75


# ---- workloads ------------------------------------------------------------------------------------------------


def test_gateway_probes_service_and_autoscaler() -> None:
    gateway = _named("Deployment", "ml-server-gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    probes = {r.path for r in ROUTES if r.method == "GET" and r.scope is Scope.OPEN}  # answered without a token
    assert container["livenessProbe"]["httpGet"]["path"] == http_paths.HEALTHZ in probes
    assert container["readinessProbe"]["httpGet"]["path"] == http_paths.READYZ in probes
    literal, _ = _environment(container)
    (port,) = container["ports"]
    assert int(literal["ML_SERVER_PORT"]) == port["containerPort"]
    assert _named("Service", "ml-server-gateway")["spec"]["ports"][0]["targetPort"] == port["name"]
    hpa = _named("HorizontalPodAutoscaler", "ml-server-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ml-server-gateway"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_consumer_liveness_probes_the_metrics_port_it_serves() -> None:
    for deployment in _consumers():
        (container,) = _named("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
        literal, _ = _environment(container)
        (port,) = container["ports"]
        assert int(literal["ML_SERVER_METRICS_PORT"]) == port["containerPort"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": port["name"]}


def test_every_workload_has_requests_limits_and_a_disruption_budget() -> None:
    budgets = {tuple(sorted(p["spec"]["selector"]["matchLabels"].items())) for p in _of_kind("PodDisruptionBudget")}
    for kind in ("Deployment", "StatefulSet", "Job"):
        for obj in _of_kind(kind):
            spec = obj["spec"]["template"]["spec"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                assert {"cpu", "memory"} <= set(c["resources"]["requests"]), (obj["metadata"]["name"], c["name"])
                assert "memory" in c["resources"]["limits"], (obj["metadata"]["name"], c["name"])
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"].get("selector", {"matchLabels": labels})["matchLabels"].items() <= labels.items()
            if kind == "Deployment":
                assert tuple(sorted(obj["spec"]["selector"]["matchLabels"].items())) in budgets, obj["metadata"]["name"]
    images = {c["image"] for kind in ("Deployment", "Job") for o in _of_kind(kind) for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {"ml-server"}
    assert [i["name"] for i in _kustomization()["images"]] == ["ml-server"]


def test_migration_job_runs_the_migrate_command() -> None:
    (container,) = _named("Job", "ml-server-migrate")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["ml-server", "migrate"]


def test_wait_for_schema_init_container_passes_once_the_store_is_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    schema.upgrade(url)
    scripts = set()
    for obj in _of_kind("Deployment"):
        for c in obj["spec"]["template"]["spec"].get("initContainers", []):
            assert c["command"][:2] == ["python", "-c"]
            scripts.add(c["command"][2])
    assert len(scripts) == 1  # the same wait everywhere
    env = {**os.environ, "ML_SERVER_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-c", scripts.pop()], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
