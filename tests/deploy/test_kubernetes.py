"""deploy/kubernetes: every manifest valid for current Kubernetes, overlays render, KEDA
objects as KEDA's RabbitMQ scaler documents them, config mirrored from .env.example."""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from shared import queues
from tests.deploy.kubernetes_tools import by_kind, find_kustomize, load_documents, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
# The oldest Kubernetes still supported upstream when this was written, and the newest
# kubernetes-validate knows.
K8S_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
SERVICES = ("intake", "syncer", "scheduler")

# KEDA's RabbitMQ scaler, https://keda.sh/docs/2.16/scalers/rabbitmq-queue/ "Trigger
# Specification": the metadata it reads ("host ... Optional. If not specified, it must be
# done by using TriggerAuthentication"; mode "QueueLength or MessageRate"; value "message
# backlog or publish/sec. target per instance", a string), and "Authentication
# Parameters": TriggerAuthentication supplies ``host`` (the AMQP URI with credentials).
KEDA_RABBITMQ_METADATA = {
    "host", "protocol", "mode", "value", "activationValue", "queueName", "vhostName",
    "hostFromEnv", "usernameFromEnv", "passwordFromEnv", "unsafeSsl",
}  # fmt: skip
KEDA_RABBITMQ_PROTOCOLS = {"auto", "amqp", "http"}
KEDA_API = "keda.sh/v1alpha1"


@pytest.fixture(scope="module")
def kustomize() -> list[str]:
    found = find_kustomize()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="module")
def rendered(kustomize: list[str]) -> dict[str, list[dict[str, Any]]]:
    return {overlay.name: render(kustomize, overlay) for overlay in OVERLAYS}


def core_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


# ------------------------------------------------------------ the files as written


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_core_manifest_is_valid_for_current_kubernetes(path: Path, version: str) -> None:
    docs = load_documents(path)
    assert docs
    for doc in docs:
        if doc["kind"] in KEDA_KINDS:
            continue  # a CRD: checked against KEDA's documentation below
        doc = copy.deepcopy(doc)
        # Kustomize's image transformer fills the tag in; a bare name is valid anyway.
        _validate(doc, version)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = copy.deepcopy(load_documents(K8S / "base" / "intake.yaml")[0])
    deployment["spec"]["replicas"] = "two"
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGet"]["pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment, K8S_VERSIONS[-1])


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_config", K8S / "generate_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_config", module)
    spec.loader.exec_module(module)
    return module


def test_the_configmap_and_secret_keys_are_generated_from_env_example() -> None:
    gen = _generator()
    config, secrets = gen.render((ROOT / ".env.example").read_text(), gen.secret_names())
    assert (K8S / "base" / "config.yaml").read_text() == config, "run `make k8s-config`"
    assert (K8S / "overlays" / "sandbox" / "secrets.env").read_text() == secrets, (
        "run `make k8s-config`"
    )


def test_every_env_example_variable_is_in_exactly_one_of_configmap_and_secret() -> None:
    gen = _generator()
    names = {name for _, name, _ in gen.parse_env_example((ROOT / ".env.example").read_text())}
    config = set(load_documents(K8S / "base" / "config.yaml")[0]["data"])
    secret = {
        line.split("=", 1)[0]
        for line in (K8S / "overlays" / "sandbox" / "secrets.env").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert config | secret == names
    assert not config & secret
    # Every SecretStr setting is a Secret key; nothing that looks like one is in the map.
    assert gen.secret_names() & names <= secret
    assert {"CRMSYNC_AMQP_URL", "CRMSYNC_DATABASE_URL", "CRMSYNC_HUBSPOT_ACCESS_TOKEN"} <= secret
    assert not [n for n in config if re.search(r"TOKEN|SECRET|PASSWORD|API_KEYS|_URL$", n)
                and n not in {"CRMSYNC_SHOPIFY_BASE_URL", "CRMSYNC_COMMERCE7_BASE_URL",
                              "CRMSYNC_HUBSPOT_BASE_URL", "CRMSYNC_REPCARD_BASE_URL",
                              "CRMSYNC_ADMIN_URL", "CRMSYNC_SANDBOX_URL"}]  # fmt: skip


def test_env_example_values_are_read_like_a_shell_reads_them() -> None:
    gen = _generator()
    text = '# a note\nA="0 2 * * *"\n\n# gone\n\nB=\nC={"k": "v"}\n'
    assert gen.parse_env_example(text) == [
        (["a note"], "A", "0 2 * * *"),
        ([], "B", ""),
        ([], "C", '{"k": "v"}'),
    ]


# ------------------------------------------------------------ the rendered overlays


def test_there_is_a_production_and_a_sandbox_overlay() -> None:
    assert {p.name for p in OVERLAYS} == {"production", "sandbox"}


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_each_rendered_overlay_is_valid_for_current_kubernetes(rendered, overlay) -> None:
    docs = rendered[overlay]
    for doc in docs:
        if doc["kind"] not in KEDA_KINDS:
            _validate(doc, K8S_VERSIONS[-1])
    assert {d["kind"] for d in docs} >= {
        "Namespace", "ConfigMap", "ServiceAccount", "Job", "Deployment", "Service",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication",
    }  # fmt: skip


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return by_kind(docs, "ConfigMap")["crmsync-config"]["data"]


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_every_pod_reads_config_from_the_configmap_and_secrets_from_a_secret(
    rendered, overlay
) -> None:
    docs = rendered[overlay]
    configmaps, secrets = set(by_kind(docs, "ConfigMap")), set(by_kind(docs, "Secret"))
    workloads = [*by_kind(docs, "Deployment").values(), *by_kind(docs, "Job").values()]
    assert len(workloads) >= 4
    for workload in workloads:
        for container in _pod(workload)["containers"]:
            sources = container["envFrom"]
            assert [s["configMapRef"]["name"] for s in sources if "configMapRef" in s] == [
                "crmsync-config"
            ]
            secret_refs = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
            assert len(secret_refs) == 1 and secret_refs[0].startswith("crmsync-secrets")
            # No value written into a manifest: every variable comes from the two sources.
            assert "env" not in container
            if overlay == "sandbox":
                assert secret_refs[0] in secrets
            assert {"crmsync-config"} <= configmaps
    if overlay == "production":
        assert secrets == set(), "production Secrets are created outside the repository"


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_services_have_probes_resources_and_time_to_finish_in_flight_work(
    rendered, overlay
) -> None:
    docs = rendered[overlay]
    deployments = by_kind(docs, "Deployment")
    grace_s = float(_config(docs)["CRMSYNC_SHUTDOWN_GRACE_S"])
    for service in SERVICES:
        pod = _pod(deployments[f"crmsync-{service}"])
        (container,) = pod["containers"]
        port = container["ports"][0]["containerPort"]
        assert container["args"][0] == service and str(port) in container["args"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])
        assert pod["securityContext"]["runAsNonRoot"] is True
        if service in ("syncer", "scheduler"):
            # The in-flight handlers' grace period, then closing, before SIGKILL.
            assert pod["terminationGracePeriodSeconds"] >= grace_s + 10
        assert ":" in container["image"], "an overlay pins the image tag"


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_intake_scales_on_cpu_behind_a_budget_and_the_scheduler_runs_twice(
    rendered, overlay
) -> None:
    docs = rendered[overlay]
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["crmsync-intake"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "crmsync-intake",
    }  # fmt: skip
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    intake_labels = _pod_labels(by_kind(docs, "Deployment")["crmsync-intake"])
    pdb = by_kind(docs, "PodDisruptionBudget")["crmsync-intake"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= intake_labels.items()
    assert by_kind(docs, "Deployment")["crmsync-scheduler"]["spec"]["replicas"] == 2
    intake_service = by_kind(docs, "Service")["crmsync-intake"]["spec"]
    assert intake_service["selector"].items() <= intake_labels.items()


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_the_migration_job_runs_crmsync_migrate(rendered, overlay) -> None:
    job = by_kind(rendered[overlay], "Job")["crmsync-migrate"]
    (container,) = _pod(job)["containers"]
    assert container["args"] == ["migrate"]
    assert _pod(job)["restartPolicy"] == "Never"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migrate"
    rollout = (K8S / "rollout.sh").read_text()
    assert "app.kubernetes.io/component=migrate" in rollout
    assert "--for=condition=complete" in rollout


# ------------------------------------------------------------ KEDA


def check_keda(docs: list[dict[str, Any]]) -> list[str]:
    """Problems of the ScaledObjects and TriggerAuthentications against KEDA's RabbitMQ
    scaler documentation and crmsync's queues; ``[]`` when there are none."""
    problems: list[str] = []
    deployments = by_kind(docs, "Deployment")
    auths = by_kind(docs, "TriggerAuthentication")
    queue_names = {spec.name for spec in queues.ALL}
    scaled = by_kind(docs, "ScaledObject")
    if not scaled:
        problems.append("no ScaledObject")
    for doc in [*scaled.values(), *auths.values()]:
        if doc["apiVersion"] != KEDA_API:
            problems.append(f"{doc['metadata']['name']}: apiVersion {doc['apiVersion']}")
    for name, obj in scaled.items():
        spec = obj["spec"]
        if spec["scaleTargetRef"]["name"] not in deployments:
            problems.append(f"{name}: scales no Deployment of the render")
        if not 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]:
            problems.append(f"{name}: replica bounds {spec['minReplicaCount']}..")
        if not spec.get("triggers"):
            problems.append(f"{name}: no triggers")
        for i, trigger in enumerate(spec.get("triggers", [])):
            where = f"{name}.triggers[{i}]"
            meta = trigger.get("metadata", {})
            if trigger.get("type") != "rabbitmq":
                problems.append(f"{where}: type {trigger.get('type')!r}")
            if unknown := set(meta) - KEDA_RABBITMQ_METADATA:
                problems.append(f"{where}: undocumented metadata {sorted(unknown)}")
            if meta.get("mode") != "QueueLength":
                problems.append(f"{where}: mode {meta.get('mode')!r}, not QueueLength")
            value = meta.get("value")
            if not (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value)):
                problems.append(f"{where}: value {value!r} is not a number in a string")
            elif float(value) <= 0:
                problems.append(f"{where}: value must be positive")
            if meta.get("queueName") not in queue_names:
                problems.append(f"{where}: queueName {meta.get('queueName')!r} is no crmsync queue")
            if meta.get("protocol", "auto") not in KEDA_RABBITMQ_PROTOCOLS:
                problems.append(f"{where}: protocol {meta.get('protocol')!r}")
            if {"host", "hostFromEnv"} & set(meta):
                problems.append(f"{where}: the host must come from the TriggerAuthentication")
            auth_name = trigger.get("authenticationRef", {}).get("name")
            auth = auths.get(auth_name)
            if auth is None:
                problems.append(f"{where}: authenticationRef {auth_name!r} is not in the render")
                continue
            refs = {r["parameter"]: r for r in auth["spec"].get("secretTargetRef", [])}
            if "host" not in refs or not refs["host"].get("name") or not refs["host"].get("key"):
                problems.append(f"{auth_name}: no secretTargetRef for the parameter host")
    return problems


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_keda_scales_the_syncer_on_queue_length_with_the_host_from_a_secret(
    rendered, overlay
) -> None:
    docs = rendered[overlay]
    assert check_keda(docs) == []
    scaled = by_kind(docs, "ScaledObject")["crmsync-syncer"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "crmsync-syncer"
    triggered = {t["metadata"]["queueName"] for t in scaled["triggers"]}
    assert {queues.ORDERS.name, queues.CREDITS.name, queues.PACKAGES_CHUNKS.name} <= triggered
    # Budget-bound queues scale nothing: more replicas would not drain them faster.
    assert queues.HUBSPOT_CONTACTS.name not in triggered
    # The HubSpot budget is split over the most replicas KEDA may run.
    assert int(_config(docs)["CRMSYNC_HUBSPOT_REPLICAS"]) == scaled["maxReplicaCount"]
    if overlay == "sandbox":
        (auth,) = by_kind(docs, "TriggerAuthentication").values()
        secret_name = auth["spec"]["secretTargetRef"][0]["name"]
        assert "host" in by_kind(docs, "Secret")[secret_name]["data"]


def test_the_keda_check_catches_what_the_documentation_rules_out() -> None:
    docs = load_documents(K8S / "base" / "syncer.yaml")
    assert check_keda(docs) == []
    broken = copy.deepcopy(docs)
    scaled = next(d for d in broken if d["kind"] == "ScaledObject")
    first, second, third = scaled["spec"]["triggers"][:3]
    first["metadata"]["mode"] = "MessageRate"
    second["metadata"]["value"] = 200
    third["metadata"]["host"] = "amqp://guest:guest@rabbitmq:5672/"
    third["metadata"]["queueName"] = "syncer.nothing"
    auth = next(d for d in broken if d["kind"] == "TriggerAuthentication")
    auth["spec"]["secretTargetRef"][0]["parameter"] = "hostname"
    problems = check_keda(broken)
    assert [p.split(":")[1].strip().split()[0] for p in problems] == [
        "mode", "no", "value", "no", "queueName", "the", "no", "no", "no",
    ]  # fmt: skip
