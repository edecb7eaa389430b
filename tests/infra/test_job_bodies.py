"""Offline: the Job bodies the launcher and the executor would create from our configuration,
and the executor switch. The same bodies go to a real API server in test_k8s_retrain.py."""

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest

from pipelines.platform.executors import K8S_CONFIG_TAG, configured_executor, training_op_tags
from pipelines.platform.lib.kubernetes import GpuPlacement
from tests.infra.job_bodies import production_launcher, run_worker_body, step_body

IMAGE = "ghcr.io/flightline/flightline:1.0"
GPU = "nvidia.com/gpu"


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    return path


@pytest.fixture(scope="module")
def retrain_op_tags():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLIGHTLINE_EXECUTOR", "k8s")
        from pipelines.definitions import defs

        job = defs().resolve_job_def("flight_delay_retrain")
        assert job.executor_def.name == "k8s"
        return {node.name: dict(node.tags) for node in job.graph.node_dict.values()}


def _json(body) -> dict:
    return kubernetes.client.ApiClient().sanitize_for_serialization(body)


@pytest.fixture
def bodies(kubeconfig, instance, retrain_op_tags):
    launcher = production_launcher(kubeconfig, IMAGE)
    worker, run = run_worker_body(launcher, instance, "flight_delay_retrain")
    steps = {op: _json(step_body(launcher, run, op, tags)) for op, tags in retrain_op_tags.items()}
    return _json(worker), steps


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def test_bodies_are_valid_kubernetes_jobs(bodies):
    worker, steps = bodies
    for job in (worker, *steps.values()):
        kubernetes_validate.validate(
            {"apiVersion": "batch/v1", "kind": "Job", **job}, "1.37.0", strict=True
        )


def test_run_worker_body(bodies):
    worker, _ = bodies
    pod = _pod(worker)
    (container,) = pod["containers"]
    assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "run_worker"
    assert container["image"] == IMAGE
    assert " -m dagster api execute_run " in " ".join(container["args"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLIGHTLINE_EXECUTOR"] == "k8s"  # its steps become Jobs too
    assert {"configMapRef": {"name": "flightline-env"}} in container["envFrom"]
    assert {"secretRef": {"name": "flightline-secrets"}} in container["envFrom"]
    assert pod["serviceAccountName"] == "flightline-dagster"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    # CPU only: no GPU, no GPU selector or toleration (the GPU taint keeps it off GPU nodes).
    assert GPU not in container["resources"]["limits"]
    assert not pod.get("nodeSelector") and not pod.get("tolerations")
    assert worker["spec"]["backoffLimit"] == 0


def test_only_the_training_step_asks_for_a_gpu(bodies):
    _, steps = bodies
    training = _pod(steps.pop("flight_delay__torch_model"))
    (container,) = training["containers"]
    assert " -m dagster api execute_step" in " ".join(container["args"])
    assert container["image"] == IMAGE
    assert container["resources"]["limits"][GPU] == "1"
    assert container["resources"]["requests"][GPU] == "1"
    assert training["nodeSelector"] == {"flightline/accelerator": "nvidia-gpu"}
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in training["tolerations"]
    assert "flight_delay__lgbm_model" in steps and "flight_delay__champion" in steps
    for op, job in steps.items():
        pod = _pod(job)
        (container,) = pod["containers"]
        assert GPU not in container["resources"].get("limits", {}), op
        assert not pod.get("nodeSelector") and not pod.get("tolerations"), op
        assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}, op


def test_gpu_placement_is_configurable(monkeypatch):
    monkeypatch.setenv("FLIGHTLINE_GPU_NODE_SELECTOR", "cloud.google.com/gke-accelerator=nvidia-l4")
    monkeypatch.setenv("FLIGHTLINE_GPU_COUNT", "2")
    config = training_op_tags("torch")[K8S_CONFIG_TAG]
    assert config["pod_spec_config"]["node_selector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"
    }
    assert config["container_config"]["resources"]["limits"][GPU] == "2"
    assert training_op_tags("lightgbm") is None
    assert GpuPlacement().k8s_config()["container_config"]["resources"]["limits"][GPU] == "1"


def test_executor_switch(monkeypatch):
    monkeypatch.delenv("FLIGHTLINE_EXECUTOR", raising=False)
    assert configured_executor() is dg.in_process_executor  # the embedded profile
    monkeypatch.setenv("FLIGHTLINE_EXECUTOR", "multiprocess")
    assert configured_executor() is dg.multiprocess_executor
    monkeypatch.setenv("FLIGHTLINE_EXECUTOR", "k8s")
    assert configured_executor().name == "k8s"
    monkeypatch.setenv("FLIGHTLINE_EXECUTOR", "kubernetes-ish")
    with pytest.raises(ValueError, match="FLIGHTLINE_EXECUTOR"):
        configured_executor()
