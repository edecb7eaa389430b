"""Against the real 1.20 API server: RBAC (`kubectl auth can-i`), server-side dry runs of our
manifests, and the scheduler's verdict on GPU requests the cluster cannot meet."""

import json
import time
import uuid

import pytest
import yaml
from kubernetes import client, config

from pipelines.platform.executors import K8S_CONFIG_TAG, training_op_tags
from pipelines.platform.lib.kubernetes import GpuPlacement
from tests.infra import platform
from tests.infra.job_bodies import production_launcher, run_worker_body, step_body

SA = f"system:serviceaccount:{platform.NAMESPACE}:{platform.SERVICE_ACCOUNT}"

ALLOWED = [
    ("create", "jobs.batch"),
    ("get", "jobs.batch"),
    ("list", "jobs.batch"),
    ("watch", "jobs.batch"),
    ("delete", "jobs.batch"),
    ("get", "pods"),
    ("list", "pods"),
    ("watch", "pods"),
    ("get", "pods/log"),
    ("list", "events"),
    # The deployment asset: its service's Deployment, by name, and the ReplicaSets behind it.
    ("get", "deployments.apps/flight-delay-service"),
    ("patch", "deployments.apps/flight-delay-service"),
    ("list", "replicasets.apps"),
]
DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("update", "jobs.batch"),
    ("patch", "jobs.batch"),
    ("create", "deployments.apps"),
    ("delete", "deployments.apps/flight-delay-service"),
    ("update", "deployments.apps/flight-delay-service"),
    ("patch", "deployments.apps/mlflow"),  # another Deployment: not by this name
    ("get", "deployments.apps/mlflow"),
    ("list", "deployments.apps"),
    ("patch", "deployments.apps/flight-delay-service", "scale"),
    ("delete", "replicasets.apps"),
    ("patch", "replicasets.apps"),
    ("patch", "services"),
    ("create", "configmaps"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "cronjobs.batch"),
]


@pytest.fixture(scope="module")
def cluster(k8s_cluster):
    platform.apply_base(k8s_cluster, {"FLIGHTLINE_DATA_ROOT": "/unused"})
    return k8s_cluster


def _can_i(
    cluster, verb: str, resource: str, subresource: str = "", namespace: str = platform.NAMESPACE
) -> bool:
    extra = ["--subresource", subresource] if subresource else []
    out = cluster.kubectl(
        "auth", "can-i", verb, resource, *extra, "-n", namespace, "--as", SA, check=False
    )
    assert out.stdout.strip() in {"yes", "no"}, out.stderr
    return out.stdout.strip() == "yes"


def test_rbac_grants_the_launcher_what_it_needs(cluster):
    assert [r for r in ALLOWED if not _can_i(cluster, *r)] == []


def test_rbac_grants_nothing_more(cluster):
    assert [r for r in DENIED if _can_i(cluster, *r)] == []
    # Namespaced: no rights in other namespaces, nothing cluster-wide.
    assert not _can_i(cluster, "create", "jobs.batch", namespace="default")
    assert not _can_i(cluster, "list", "pods", namespace="kube-system")
    out = cluster.kubectl("auth", "can-i", "list", "nodes", "--as", SA, check=False)
    assert out.stdout.strip() == "no"


def _for_1_20(doc: dict) -> dict:
    """autoscaling/v2 arrived in 1.23; 1.20 serves the same HPA body as v2beta2."""
    if doc["kind"] == "HorizontalPodAutoscaler" and doc["apiVersion"] == "autoscaling/v2":
        return {**doc, "apiVersion": "autoscaling/v2beta2"}
    return doc


@pytest.mark.parametrize(
    "manifest",
    ["manifests/namespace.yaml", "rbac.yaml", "manifests/mlflow.yaml", "manifests/bento.yaml"],
)
def test_manifests_pass_server_side_dry_run(cluster, manifest):
    docs = [_for_1_20(d) for d in yaml.safe_load_all((platform.INFRA / manifest).read_text()) if d]
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    out = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", "-o", "name", input=body, check=False
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == len(docs)


def test_dry_run_rejects_an_invalid_manifest(cluster):
    doc = next(yaml.safe_load_all((platform.INFRA / "manifests" / "bento.yaml").read_text()))
    doc["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    out = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(doc), check=False
    )
    assert out.returncode != 0 and "quantities must match" in out.stderr


def _submit_step(cluster, tmp_path, instance, op_tags: dict) -> client.V1Pod:
    """The training step's Job as k8s_job_executor builds it, sent to the API server."""
    launcher = production_launcher(cluster.kubeconfig, platform.TEST_IMAGE)
    _, run = run_worker_body(launcher, instance, "flight_delay_retrain")
    tags = {k: json.dumps(v) for k, v in op_tags.items()}  # op tags reach the executor as JSON
    body = step_body(launcher, run, "flight_delay__torch_model", tags)
    body.metadata.name = f"dagster-step-{uuid.uuid4().hex[:12]}"
    api = config.new_client_from_config(str(cluster.kubeconfig))
    client.BatchV1Api(api).create_namespaced_job(platform.NAMESPACE, body)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 180  # the scheduler is slow on busy cores
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(
            platform.NAMESPACE, label_selector=f"job-name={body.metadata.name}"
        ).items
        scheduled = [
            c for p in pods for c in (p.status.conditions or []) if c.type == "PodScheduled"
        ]
        if scheduled:
            return pods[0]
        time.sleep(0.3)
    raise TimeoutError("the scheduler never looked at the pod")


def test_two_gpus_leave_the_training_pod_pending(cluster, k8s_nodes, tmp_path, instance):
    op_tags = {K8S_CONFIG_TAG: GpuPlacement(count=2).k8s_config()}
    pod = _submit_step(cluster, tmp_path, instance, op_tags)
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    (condition,) = [c for c in pod.status.conditions if c.type == "PodScheduled"]
    assert condition.status == "False" and condition.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in condition.message


def test_without_the_toleration_the_gpu_node_refuses_the_pod(
    cluster, k8s_nodes, tmp_path, instance
):
    placement = training_op_tags("torch")[K8S_CONFIG_TAG]
    placement["pod_spec_config"].pop("tolerations")
    pod = _submit_step(cluster, tmp_path, instance, {K8S_CONFIG_TAG: placement})
    (condition,) = [c for c in pod.status.conditions if c.type == "PodScheduled"]
    assert condition.reason == "Unschedulable"
    assert "taint" in condition.message and "nvidia.com/gpu" in condition.message
