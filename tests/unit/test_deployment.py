"""The deployment files, validated offline (no Docker engine, no Kubernetes, no network):

- deploy/kuberay/*.yaml: KubeRay's RayService and RayCluster against deploy/schemas/kuberay-v1.json
  (hand-written from KubeRay's Go types, its pod templates checked by Kubernetes' own schemas),
  everything else against the Kubernetes schemas kubernetes-validate ships (strict: unknown
  fields are errors);
- deploy/serve-config.yaml against Ray Serve's ServeDeploySchema, equal to the RayService's
  serveConfigV2, its import path building the API;
- deploy/docker-compose.yaml against the compose-spec schema check-jsonschema ships;
- ray-cluster.yaml with Ray's own checks (prepare_config + validate_config, as `ray up` does);
- the Dockerfile: tests/unit/test_dockerfile.py.

Each validator is also shown a broken copy and must reject it.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from cluster.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kuberay").glob("*.yaml"))
COMPOSE = DEPLOY / "docker-compose.yaml"
SERVE_CONFIG = DEPLOY / "serve-config.yaml"
DOCKERFILE = ROOT / "Dockerfile"
K8S_VERSION = "1.33"  # the Kubernetes schemas (kubernetes-validate bundles 1.25 and later)
IMAGE = "event-streaming-bus:0.1.0"
SECRET = "esb-secrets"
SECRET_KEYS = {"jwt-secret-key", "auth_token", "master.key"}  # auth_token: KubeRay's name
# Env names that are not the bus's settings: Ray's, Polars', Python's and pip's own.
FOREIGN_ENV = ("RAY_", "POLARS_", "PYTHON", "PIP_", "PATH")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all_docs() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in _docs(path)]


def _kind(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in _all_docs() if doc["kind"] == kind]
    return found


@cache
def _kuberay_validator(kind: str) -> Draft202012Validator:
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    k8s = json.loads((folder / f"v{K8S_VERSION}.0-local-strict" / "_definitions.json").read_text())
    ours = json.loads((DEPLOY / "schemas" / "kuberay-v1.json").read_text())
    registry: Registry = Registry().with_resources(
        [(k8s["$id"], Resource.from_contents(k8s)), (ours["$id"], Resource.from_contents(ours))]
    )
    return Draft202012Validator({"$ref": f"{ours['$id']}#/$defs/{kind}"}, registry=registry)


def manifest_errors(doc: dict[str, Any]) -> list[str]:
    """What is wrong with one Kubernetes object: KubeRay's kinds against our schema, the rest
    against Kubernetes' own."""
    if doc["apiVersion"] == "ray.io/v1":
        errors = _kuberay_validator(doc["kind"]).iter_errors(doc)
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path))}: {e.message}"]
    return []


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_kubernetes_manifests_are_valid(path: Path) -> None:
    for doc in _docs(path):
        assert manifest_errors(doc) == [], f"{path.name}: {doc['kind']}"


def test_the_manifests_hold_a_rayservice_and_a_raycluster() -> None:
    kinds = sorted(doc["kind"] for doc in _all_docs())
    assert kinds == ["ConfigMap", "Namespace", "NetworkPolicy", "RayCluster", "RayService"]


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of doc with the dotted path (list indexes as numbers) set to value."""
    broken = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = broken
    for part in parents:
        node = node[part]
    node[last] = value
    return broken


WORKERS = "spec.rayClusterConfig.workerGroupSpecs.0"
BROKEN = [
    ("RayService", f"{WORKERS}.minReplicas", "1"),  # a string where KubeRay wants int32
    ("RayService", "spec.rayClusterConfig.autoscalerOptions.upscalingMode", "Fast"),
    ("RayService", "spec.rayClusterConfig.enableInTreeAutoScaling", True),  # a typo
    ("RayCluster", "spec.headGroupSpec.rayStartParams.num-cpus", 0),  # values are strings
    ("RayCluster", "spec.workerGroupSpecs.0.template.spec.containers.0.resources.limit", {}),
    ("RayCluster", "spec.workerGroupSpecs.0.template.spec.containers.0.image", 7),
    ("NetworkPolicy", "spec.ingress.0.fromm", []),
    ("ConfigMap", "data.API_REPLICAS", 2),
]


@pytest.mark.parametrize(("kind", "path", "value"), BROKEN, ids=[b[1] for b in BROKEN])
def test_broken_manifests_are_rejected(kind: str, path: str, value: Any) -> None:
    assert manifest_errors(_set(_kind(kind), path, value)) != []


def _cluster_specs() -> list[dict[str, Any]]:
    """The RayCluster specs: the RayCluster's own and the RayService's rayClusterConfig."""
    return [_kind("RayService")["spec"]["rayClusterConfig"], _kind("RayCluster")["spec"]]


def _pod_specs() -> list[dict[str, Any]]:
    specs = []
    for cluster in _cluster_specs():
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        specs += [group["template"]["spec"] for group in groups]
    return specs


def _containers() -> list[dict[str, Any]]:
    return [c for spec in _pod_specs() for c in spec["containers"]]


def test_every_ray_container_runs_the_bus_image_with_requests_and_limits() -> None:
    autoscalers = [cluster["autoscalerOptions"] for cluster in _cluster_specs()]
    assert len(_containers()) == 4 and len(autoscalers) == 2
    for container in _containers():
        assert container["image"] == IMAGE
    for holder in [*_containers(), *autoscalers]:
        for bound in ("requests", "limits"):
            assert set(holder["resources"][bound]) == {"cpu", "memory"}, holder


def test_autoscaling_is_on_with_worker_bounds() -> None:
    for cluster in _cluster_specs():
        assert cluster["enableInTreeAutoscaling"] is True
        for group in cluster["workerGroupSpecs"]:
            assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def _secret_refs(node: Any) -> list[tuple[str, str]]:
    """(secret name, key) of every secretKeyRef and secret volume item below node."""
    found = []
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            found.append((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
        if "secretName" in node:
            found += [(node["secretName"], item["key"]) for item in node.get("items", [])]
        for value in node.values():
            found += _secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _secret_refs(value)
    return found


def test_secrets_come_from_the_one_secret_the_readme_creates() -> None:
    refs = _secret_refs(_all_docs())
    assert {name for name, _ in refs} == {SECRET}
    assert {key for _, key in refs} == SECRET_KEYS - {"auth_token"}
    # Both clusters take Ray's token from it (key auth_token), so the API can submit to the
    # workers' Jobs API and KubeRay can reach the API cluster's dashboard.
    for cluster in _cluster_specs():
        assert cluster["authOptions"] == {"mode": "token", "secretName": SECRET}
    created = re.findall(
        r"--from-literal=([\w.-]+)=", (DEPLOY / "kuberay" / "config.yaml").read_text()
    )
    assert set(created) == SECRET_KEYS


def _compose_bus_services() -> dict[str, dict[str, Any]]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def _env_names() -> set[str]:
    """Every env name the deployment files give the bus's processes."""
    names = set(re.findall(r"^\s+([A-Z_][A-Z0-9_]*)=", DOCKERFILE.read_text(), re.M))
    names |= set(_kind("ConfigMap")["data"])
    names |= {env["name"] for c in _containers() for env in c.get("env", [])}
    names |= {name for s in _compose_bus_services().values() for name in s["environment"]}
    return names


def test_env_names_are_the_settings_names() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    unknown = {n for n in _env_names() if n not in settings and not n.startswith(FOREIGN_ENV)}
    assert unknown == set()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "JWT_SECRET_KEY", "API_PORT"} <= _env_names()


def test_the_api_port_is_8080_everywhere() -> None:
    assert Settings().api_port == 8080
    assert yaml.safe_load(SERVE_CONFIG.read_text())["http_options"]["port"] == 8080
    assert "API_PORT=8080" in DOCKERFILE.read_text()
    serve_ports = {p["containerPort"] for c in _containers() for p in c.get("ports", [])
                   if p.get("name") == "serve"}  # fmt: skip
    assert serve_ports == {8080}


def test_serve_config_is_valid_and_is_the_rayservice_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(SERVE_CONFIG.read_text())
    ServeDeploySchema.model_validate(config)
    assert yaml.safe_load(_kind("RayService")["spec"]["serveConfigV2"]) == config
    with pytest.raises(ValueError):
        ServeDeploySchema.model_validate(_set(config, "http_options.port", "eighty"))


def test_serve_import_path_builds_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Serve's controller does with the config's import_path (no Ray started: the indexer's
    launch is recorded instead)."""
    from ray._common.utils import import_attr
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from actors.indexer import IndexerLauncher

    started: list[IndexerLauncher] = []
    monkeypatch.setattr(IndexerLauncher, "start", lambda self: started.append(self))
    (app,) = yaml.safe_load(SERVE_CONFIG.read_text())["applications"]
    built = call_user_app_builder_with_args_if_necessary(import_attr(app["import_path"]), {})
    assert isinstance(built, Application) and len(started) == 1


@cache
def _compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    schema: dict[str, Any] = json.loads((vendored / "compose-spec.json").read_text())
    return schema


def compose_errors(config: dict[str, Any]) -> list[str]:
    errors = Draft202012Validator(_compose_schema()).iter_errors(config)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_compose_file_is_valid() -> None:
    config = yaml.safe_load(COMPOSE.read_text())
    assert compose_errors(config) == []
    assert {"kafka-1", "kafka-2", "kafka-3", "redis", "ray-head", "ray-worker"} <= set(
        config["services"]
    )
    assert "--appendonly" in config["services"]["redis"]["command"]


@pytest.mark.parametrize(
    ("path", "value"),
    [("services.redis.restart", {"always": True}), ("services.ray-head.commands", ["ray"])],
)
def test_broken_compose_files_are_rejected(path: str, value: Any) -> None:
    assert compose_errors(_set(yaml.safe_load(COMPOSE.read_text()), path, value)) != []


def test_compose_builds_the_image_from_this_dockerfile() -> None:
    for service in _compose_bus_services().values():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == ROOT and (context / service["build"]["dockerfile"]) == DOCKERFILE


def ray_cluster_errors(config: dict[str, Any]) -> list[str]:
    """`ray up`'s own checks of a cluster launcher config: its defaults filled in, then the
    schema in the ray package (ray/autoscaler/ray-schema.json) and the cross-field rules."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except Exception as exc:  # jsonschema.ValidationError or ValueError, as `ray up` prints them
        return [str(exc).splitlines()[0]]
    return []


def test_ray_cluster_yaml_is_valid() -> None:
    config = yaml.safe_load((ROOT / "ray-cluster.yaml").read_text())
    assert ray_cluster_errors(config) == []
    assert any("RAY_AUTH_MODE=token" in cmd for cmd in config["setup_commands"])


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("available_node_types.ray.worker.default.min_workers", 20),  # over max_workers: 8
        ("available_node_types.ray.worker.default.max_workers", "eight"),
        ("head_node_type", "ray.head.gpu"),
    ],
)
def test_broken_ray_cluster_configs_are_rejected(path: str, value: Any) -> None:
    config = yaml.safe_load((ROOT / "ray-cluster.yaml").read_text())
    node_types = config["available_node_types"]  # node type names hold dots: no _set here
    if path.startswith("available_node_types."):
        node_type, field = path.removeprefix("available_node_types.").rsplit(".", 1)
        node_types[node_type][field] = value
    else:
        config[path] = value
    assert ray_cluster_errors(config) != []
