"""Offline, every commit: our Kubernetes manifests, the production instance config, the Helm
values and the Dockerfile, checked without a cluster or a Docker engine."""

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MANIFESTS = sorted([*INFRA.glob("manifests/*.yaml"), INFRA / "rbac.yaml"])
# The oldest and newest schemas kubernetes-validate carries (1.25 is the oldest it has).
VERSIONS = ("1.25.0", "1.37.0")


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_strictly(path: Path, version: str):
    for doc in _documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_catches_a_typo():
    deployment = _documents(INFRA / "manifests" / "bento.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_bento_service_has_probes_resources_and_autoscaling():
    docs = {d["kind"]: d for d in _documents(INFRA / "manifests" / "bento.yaml")}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(container)
    assert container["resources"]["requests"] and container["resources"]["limits"]
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]


def test_rbac_is_namespaced_and_least_privilege():
    docs = _documents(INFRA / "rbac.yaml")
    kinds = [d["kind"] for d in docs]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    role = next(d for d in docs if d["kind"] == "Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("batch", "jobs", "create") in granted and ("", "pods/log", "get") in granted
    assert not any("*" in item for item in granted)
    assert not any(resource in {"secrets", "pods/exec", "configmaps"} for _, resource, _ in granted)
    assert not any(
        verb in {"create", "delete"} for _, resource, verb in granted if resource == "pods"
    )


def test_production_instance_config_is_valid_and_limits_retrains(monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema
    from dagster_k8s import K8sRunLauncher

    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "set-by-the-chart")
    config = yaml.safe_load((INFRA / "dagster-instance.yaml").read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    launcher_result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert launcher_result.success, launcher_result.errors
    assert "FLIGHTLINE_EXECUTOR=k8s" in launcher["config"]["env_vars"]
    assert "postgres" in config["storage"]
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    assert {
        "key": "flightline/retrain",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in (coordinator["config"]["tag_concurrency_limits"])
    # A node selector on the run launcher would be merged into the GPU step's and exclude GPUs.
    assert "node_selector" not in launcher["config"]["run_k8s_config"].get("pod_spec_config", {})


def test_helm_values_match_the_instance_config():
    values = yaml.safe_load((INFRA / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load((INFRA / "dagster-instance.yaml").read_text())
    launcher = instance["run_launcher"]["config"]
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert k8s["jobNamespace"] == launcher["job_namespace"]
    assert k8s["envVars"] == launcher["env_vars"]
    assert values["serviceAccount"]["name"] == launcher["service_account_name"]
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert (
        queued["tagConcurrencyLimits"]
        == (instance["run_coordinator"]["config"]["tag_concurrency_limits"])
    )
    assert (
        queued["maxConcurrentRuns"] == instance["run_coordinator"]["config"]["max_concurrent_runs"]
    )
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "pipelines.definitions"]
    assert {"name": "FLIGHTLINE_EXECUTOR", "value": "k8s"} in deployment["env"]
    assert values["postgresql"]["enabled"] is True


def _stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its instructions (no Docker engine here: parse the file)."""
    text = re.sub(r"\\\n", " ", dockerfile)
    stages, name = {}, None
    for line in text.splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line.strip(), re.IGNORECASE)
        if match:
            name = match.group(1)
            stages[name] = ""
        elif name:
            stages[name] += line.strip() + "\n"
    return stages


def test_dockerfile_is_multi_stage_locked_and_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert {"builder", "runtime"} <= set(stages)
    assert "ARG TORCH_VARIANT=cpu" in stages["builder"]
    assert "COPY pyproject.toml uv.lock ./" in stages["builder"]
    syncs = re.findall(r"uv sync[^;&\n]*", stages["builder"])
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    runtime = stages["runtime"]
    assert "COPY --from=builder /opt/flightline /opt/flightline" in runtime
    users = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    # No compilers or build caches at run time; only uv, which `bentoml build` needs.
    assert set(re.findall(r"COPY --from=(\S+)", runtime)) == {"builder", "uv"}


def test_dockerignore_keeps_data_and_environments_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data", "tests"} <= ignored
    assert "uv.lock" not in ignored and "pipelines" not in ignored


def test_no_image_is_latest():
    """Every image our manifests, Helm values and build commands name is pinned."""
    files = [
        *INFRA.rglob("*.yaml"),
        ROOT / "Dockerfile",
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
    floating = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"ghcr\.io/\S+:latest|tag:\s*\"?latest", line)
    ]
    assert floating == []
    deployment = _documents(INFRA / "manifests" / "bento.yaml")[0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].rsplit(":", 1)[1] == "0.1.0"
    env = {e["name"] for e in container["env"]}
    assert {"FLIGHTLINE_BENTO_TAG", "FLIGHTLINE_BENTO_URI"} <= env
