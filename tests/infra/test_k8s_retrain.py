"""The retrain job on a real Kubernetes API server: queued, launched by the daemon through
`K8sRunLauncher` (under the launcher's least-privilege service account), every step a Job of its
own through `k8s_job_executor`, the torch training step on the GPU node; and its failures."""

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
from kubernetes import client, config

from pipelines.platform.components.task import load_task
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.lib.tracking import ModelRegistry
from tests.infra import platform
from tests.infra.runs import (
    RUN_TIMEOUT,
)
from tests.infra.runs import (
    failure_messages as _failure_messages,
)
from tests.infra.runs import (
    instance as _instance,
)
from tests.infra.runs import (
    launch as _launch,
)
from tests.infra.runs import (
    wait_finished as _wait_finished,
)
from tests.pipeline_fixture import MODEL_RUN_CONFIG

SPEC = load_task("flight_delay").spec
GPU = "nvidia.com/gpu"
# The first test of the module pays the session's set-up (the control plane, the nine days of
# retrain inputs, ~3-5 min busy) and one retrain (up to RUN_TIMEOUT); the waits inside fail
# first, with their own messages, this only stops a hang.
pytestmark = pytest.mark.timeout(2 * RUN_TIMEOUT + 900)


def _apis(k8s_platform):
    api = config.new_client_from_config(str(k8s_platform["cluster"].kubeconfig))
    return client.CoreV1Api(api), client.BatchV1Api(api)


def _champion(k8s_platform) -> str | None:
    paths = _paths(k8s_platform)
    return ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root).champion_version(
        SPEC.registered_model
    )


def _paths(k8s_platform) -> DataPaths:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in k8s_platform["profile"].env(k8s_platform["data_root"]).items():
            mp.setenv(name, value)
        return DataPaths.from_env()


def test_retrain_completes_as_kubernetes_jobs(k8s_platform, retrain):
    run, instance = retrain["run"], retrain["instance"]
    assert run.status == dg.DagsterRunStatus.SUCCESS, _failure_messages(instance, run.run_id)
    assert run.tags["flightline/retrain"] == SPEC.name
    assert _champion(k8s_platform) is not None

    core, batch = _apis(k8s_platform)
    selector = f"dagster/run-id={run.run_id}"
    # The run is recorded as finished a moment before its worker process exits.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = batch.list_namespaced_job(platform.NAMESPACE, label_selector=selector).items
        if not any(j.status.active for j in jobs):
            break
        time.sleep(0.5)
    workers = [j for j in jobs if j.metadata.name.startswith("dagster-run-")]
    steps = [j for j in jobs if j.metadata.name.startswith("dagster-step-")]
    assert len(workers) == 1 and workers[0].status.succeeded == 1
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    executed = {s.key for s in plan.steps}
    # One Job per step, each succeeded.
    assert sorted(j.metadata.labels["dagster/op"] for j in steps) == sorted(executed)
    assert all(j.status.succeeded == 1 for j in steps)

    pods = core.list_namespaced_pod(platform.NAMESPACE, label_selector=selector).items
    by_op = {p.metadata.labels.get("dagster/op", "run_worker"): p for p in pods}
    training = by_op.pop("flight_delay__torch_model")
    assert training.spec.node_name == "gpu-node"
    limits = training.spec.containers[0].resources.limits
    assert limits[GPU] == "1" and training.spec.containers[0].resources.requests[GPU] == "1"
    assert training.spec.node_selector == {"flightline/accelerator": "nvidia-gpu"}
    assert any(t.key == GPU and t.effect == "NoSchedule" for t in training.spec.tolerations)
    assert set(by_op) == (executed - {"flight_delay__torch_model"}) | {"run_worker"}
    for op, pod in by_op.items():
        assert pod.spec.node_name == "cpu-node", op
        assert GPU not in (pod.spec.containers[0].resources.limits or {}), op
        assert pod.spec.service_account_name == platform.SERVICE_ACCOUNT
        assert pod.spec.containers[0].image == platform.TEST_IMAGE


def test_pods_shared_nothing_but_the_services(k8s_platform, retrain):
    """Every pod ran in its own empty directory and HOME; what one step handed the next went
    through PostgreSQL, Redis, MLflow and the object store."""
    run = retrain["run"]
    ran = [
        p
        for p in k8s_platform["kubelet"].started_pods
        if (p["labels"] or {}).get("dagster/run-id") == run.run_id
    ]
    assert len(ran) >= 5  # the run worker and one pod per step
    assert len({p["workdir"] for p in ran}) == len(ran)
    assert len({p["home"] for p in ran}) == len(ran)
    for pod in ran:
        pod_root = Path(pod["workdir"]).parent
        for shared in ("data/lake", "data/mlflow", "data/feast", "data/prediction_log"):
            assert not (pod_root / shared).exists(), f"{pod['name']} wrote {shared} locally"
    # The models, the champion's Bento and the drift reference are objects in the bucket.
    server, bucket = k8s_platform["s3"], k8s_platform["profile"].object_store
    keys = server.keys("", bucket["FLIGHTLINE_S3_BUCKET"])
    assert any(k.startswith("lake/flight_delay/drift_reference/") for k in keys)
    assert any(k.startswith("mlflow/") and k.endswith("MLmodel") for k in keys)
    assert not (k8s_platform["data_root"] / "lake").exists()


MISSING_IMAGE = "ghcr.io/flightline/flightline:does-not-exist"
IN_FLIGHT = {
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}


@pytest.fixture(scope="module")
def failed_retrains(k8s_platform, retrain):
    """Two retrains submitted together, both doomed: one whose run worker image does not exist,
    one whose training pod dies. The queue must run them one after the other (same task)."""
    champion = _champion(k8s_platform)
    # The training container dies (exit 137, as an OOM kill) before Dagster can report anything:
    # only Kubernetes knows; the executor must read it from the Job's status.
    crash = {"container_config": {"command": ["python", "-c", "import sys; sys.exit(137)"]}}
    crash_config = {
        **MODEL_RUN_CONFIG,
        # Both model steps die at once: nothing of the run waits on a real training.
        "execution": {
            "config": {
                "per_step_k8s_config": {
                    "flight_delay__torch_model": crash,
                    "flight_delay__lgbm_model": crash,
                }
            }
        },
    }
    image_tags = {"dagster-k8s/config": json.dumps({"container_config": {"image": MISSING_IMAGE}})}
    with ThreadPoolExecutor(2) as pool:
        image_future = pool.submit(_launch, k8s_platform, MODEL_RUN_CONFIG, image_tags)
        crash_future = pool.submit(_launch, k8s_platform, crash_config)
        image_run_id, crash_run_id = image_future.result(), crash_future.result()
    instance = _instance(k8s_platform)
    ids = (image_run_id, crash_run_id)
    samples = []  # statuses of both runs, until both are finished
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        statuses = tuple(instance.get_run_by_id(i).status for i in ids)
        samples.append(statuses)
        if all(s in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE) for s in statuses):
            break
        time.sleep(0.5)
    return {
        "instance": instance,
        "image_run": instance.get_run_by_id(image_run_id),
        "crash_run": instance.get_run_by_id(crash_run_id),
        "samples": samples,
        "champion_before": champion,
    }


def test_retrains_of_a_task_run_one_at_a_time(failed_retrains):
    samples = failed_retrains["samples"]
    assert not [s for s in samples if s[0] in IN_FLIGHT and s[1] in IN_FLIGHT]
    # And one really waited in the queue while the other held the task's slot.
    assert any(dg.DagsterRunStatus.QUEUED in s and set(s) & IN_FLIGHT for s in samples)
    assert failed_retrains["crash_run"].tags["flightline/retrain"] == SPEC.name


def test_a_failing_step_pod_fails_the_run_and_leaves_the_champion(k8s_platform, failed_retrains):
    run, instance = failed_retrains["crash_run"], failed_retrains["instance"]
    assert run.status == dg.DagsterRunStatus.FAILURE
    messages = _failure_messages(instance, run.run_id)
    assert "Discovered failed Kubernetes job dagster-step-" in messages
    assert "for step flight_delay__torch_model" in messages
    assert "Terminated with exit code 137" in messages  # the pod's status, from Kubernetes
    core, _ = _apis(k8s_platform)
    (pod,) = core.list_namespaced_pod(
        platform.NAMESPACE,
        label_selector=f"dagster/run-id={run.run_id},dagster/op=flight_delay__torch_model",
    ).items
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 137
    assert _champion(k8s_platform) == failed_retrains["champion_before"]


def test_a_missing_image_fails_the_run_with_the_pull_error(k8s_platform, failed_retrains):
    run, instance = failed_retrains["image_run"], failed_retrains["instance"]
    # The daemon's run monitoring gives up after platform.START_TIMEOUT_SECONDS.
    assert run.status == dg.DagsterRunStatus.FAILURE
    messages = _failure_messages(instance, run.run_id)
    assert "ErrImagePull" in messages and MISSING_IMAGE in messages
    assert _champion(k8s_platform) == failed_retrains["champion_before"]


def _direct_launch(k8s_platform, name: str, **launcher_overrides) -> tuple[dg.DagsterRun, str]:
    """An instance that launches at once (no queue), with a broken launcher setting."""
    home = k8s_platform["root"] / name
    config = platform.instance_config(
        k8s_platform["launcher_kubeconfig"], home, **launcher_overrides
    )
    # DefaultRunCoordinator: the CLI launches at once (Dagster's default is the daemon's queue).
    config["run_coordinator"] = {
        "module": "dagster._core.run_coordinator",
        "class": "DefaultRunCoordinator",
    }
    platform.write_home(home, config)
    env = {**k8s_platform["env"], "DAGSTER_HOME": str(home)}
    run_id = str(uuid.uuid4())
    platform.launch(env, run_id, MODEL_RUN_CONFIG)
    instance = dg.DagsterInstance.from_config(str(home))
    # A launch that fails at once, but the CLI and the launcher's retries are slow on 2 busy cores.
    return _wait_finished(instance, run_id, timeout=300), _failure_messages(instance, run_id)


def test_a_missing_namespace_fails_the_run(k8s_platform, retrain):
    champion = _champion(k8s_platform)
    # With an admin's kubeconfig the API server answers 404; with our least-privilege service
    # account it answers 403 first (no rights in that namespace): both fail the run.
    admin = str(k8s_platform["cluster"].kubeconfig)
    run, messages = _direct_launch(
        k8s_platform, "home-no-namespace", job_namespace="flightline-gone", kubeconfig_file=admin
    )
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert "flightline-gone" in messages and "not found" in messages
    assert _champion(k8s_platform) == champion


def test_an_unreachable_api_server_fails_the_run(k8s_platform, retrain, tmp_path):
    champion = _champion(k8s_platform)
    kubeconfig = tmp_path / "unreachable"
    text = k8s_platform["launcher_kubeconfig"].read_text()
    server = k8s_platform["cluster"].server
    kubeconfig.write_text(text.replace(server, "https://127.0.0.1:6499"))  # nothing listens
    run, messages = _direct_launch(
        k8s_platform, "home-unreachable", kubeconfig_file=str(kubeconfig)
    )
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert "Connection refused" in messages or "Max retries exceeded" in messages
    assert _champion(k8s_platform) == champion


def test_pods_start_within_the_run_monitoring_timeout(retrain):
    """Each pod's start (its Job created -> our code running in it) is what run monitoring's
    start_timeout_seconds must cover; measured from the successful retrain's event log, written
    where FLIGHTLINE_POD_OVERHEAD_JSON says (benchmarks/cold_start.py --cluster reads it)."""
    from benchmarks.cold_start import pod_overheads

    run, instance = retrain["run"], retrain["instance"]
    assert run.status == dg.DagsterRunStatus.SUCCESS, _failure_messages(instance, run.run_id)
    pods = pod_overheads(instance.all_logs(run.run_id))
    print(f"pod start overheads: {pods}")
    if out := os.environ.get("FLIGHTLINE_POD_OVERHEAD_JSON"):
        Path(out).write_text(json.dumps(pods, indent=2))
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    assert set(pods["step_pod_seconds"]) == {s.key for s in plan.steps}
    starts = [pods["run_worker_seconds"], *pods["step_pod_seconds"].values()]
    assert all(0 < seconds < platform.START_TIMEOUT_SECONDS for seconds in starts), pods
