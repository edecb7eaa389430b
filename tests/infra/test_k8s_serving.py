"""The champion reaches the cluster as lineage, and the serve -> log -> drift loop closes there.

After the retrain (test_k8s_retrain's `retrain`), its `deployment` step (a pod of its own) has
rolled the service Deployment of infra/manifests/bento.yaml to the champion's exact Bento, which
the service pod imported from the object store. Then: the service answers a request; its log
lands in the bucket; `drift_report` in yet another pod reads it. A rollout to a Bento that cannot
start fails the asset with Kubernetes' reason and leaves the previous one serving; a champion
rollback moves the Deployment back."""

import contextlib
import subprocess
import time
import uuid

import dagster as dg
import pytest
import requests

from pipelines.platform.lib.deployment import MODEL_ANNOTATION, ServiceDeployment
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.lib.tracking import ModelRegistry
from tests.infra import platform
from tests.infra.runs import RUN_TIMEOUT
from tests.infra.runs import failure_messages as _failure_messages
from tests.infra.runs import wait_finished as _wait_finished
from tests.serving.test_service import FLIGHT

TASK = "flight_delay"
DAY = FLIGHT["sched_dep"][:10]  # the prediction log's partition of this request
pytestmark = pytest.mark.timeout(2400)  # a retrain and four more runs on two busy cores


@contextlib.contextmanager
def profile_env(k8s_platform):
    with pytest.MonkeyPatch.context() as mp:
        for name, value in k8s_platform["profile"].env(k8s_platform["data_root"]).items():
            mp.setenv(name, value)
        yield DataPaths.from_env()


def _service(k8s_platform) -> ServiceDeployment:
    return ServiceDeployment(
        platform.NAMESPACE, platform.SERVICE, str(k8s_platform["cluster"].kubeconfig)
    )


def _ready_pod(k8s_platform, bento: str, timeout: float = 300):
    """The Deployment's Ready pod serving `bento`."""
    core = _service(k8s_platform).core
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(
            platform.NAMESPACE, label_selector=f"app.kubernetes.io/name={platform.SERVICE}"
        ).items
        for pod in pods:
            env = {e.name: e.value for e in pod.spec.containers[0].env or []}
            ready = any(
                c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
            )
            if (
                ready
                and env.get("FLIGHTLINE_BENTO_TAG") == bento
                and not pod.metadata.deletion_timestamp
            ):
                return pod
        time.sleep(1)
    raise TimeoutError(f"no Ready pod serving {bento}")


def _predict(k8s_platform, pod) -> dict:
    port = k8s_platform["kubelet"].host_port(pod.metadata.name, 3000)
    reply = requests.post(f"http://127.0.0.1:{port}/predict", json={"flight": FLIGHT}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _launch(k8s_platform, job: str, ops: list[str] | None, tags: dict | None = None):
    """A run of some of a job's assets (their ops), through the queue and the launcher."""
    run_id = str(uuid.uuid4())
    result = platform.launch(k8s_platform["env"], run_id, {}, tags, job=job, ops=ops)
    assert result.returncode == 0, result.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(str(k8s_platform["home"]))
    return _wait_finished(instance, run_id, RUN_TIMEOUT), instance


def _metadata(instance, run_id: str, asset: str) -> dict:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization.asset_key == dg.AssetKey([TASK, asset]):
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"{asset} not materialized in run {run_id}")


@pytest.fixture(scope="module")
def rolled(k8s_platform, retrain):
    run = retrain["run"]
    assert run.status == dg.DagsterRunStatus.SUCCESS, _failure_messages(
        retrain["instance"], run.run_id
    )
    with profile_env(k8s_platform) as paths:
        packaged = Lake(paths.lake).read_json(f"{TASK}/bento")
        champion = ModelRegistry(
            paths.mlflow_tracking_uri, paths.mlflow_artifact_root
        ).champion_version(TASK)
    return {
        "packaged": packaged,
        "champion": champion,
        "metadata": _metadata(retrain["instance"], run.run_id, "deployment"),
    }


def test_the_retrain_rolled_the_service_to_the_champions_exact_bento(k8s_platform, rolled):
    packaged, metadata = rolled["packaged"], rolled["metadata"]
    served = _service(k8s_platform).served()
    assert served.bento == packaged["bento"] == metadata["bento_tag"]
    assert served.uri == packaged["export"] and served.uri.startswith("s3://")
    assert served.model_version == rolled["champion"] == packaged["mlflow_version"]
    assert served.revision == metadata["revision"] and metadata["deployed"] is True
    assert served.image == platform.SERVICE_IMAGE  # pinned, never :latest
    bucket = k8s_platform["profile"].object_store["FLIGHTLINE_S3_BUCKET"]
    assert packaged["export"].removeprefix(f"s3://{bucket}/") in k8s_platform["s3"].keys(
        "bentos/", bucket
    )


def test_the_service_answers_and_drift_report_in_another_pod_reads_its_log(k8s_platform, rolled):
    pod = _ready_pod(k8s_platform, rolled["packaged"]["bento"])
    body = _predict(k8s_platform, pod)
    assert body["model_version"] == rolled["champion"]
    assert 0 < body["delay_probability"] < 1

    # The service pod's log reaches the bucket (it has no disk monitoring could read).
    server = k8s_platform["s3"]
    bucket = k8s_platform["profile"].object_store["FLIGHTLINE_S3_BUCKET"]
    prefix = f"prediction_log/{TASK}/{DAY}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not server.keys(prefix, bucket):
        time.sleep(0.5)
    assert server.keys(prefix, bucket), "the service's prediction log never reached the store"

    # prediction_log and drift_report for that day, as a run of their own: other pods.
    run, instance = _launch(
        k8s_platform,
        f"{TASK}_partitions",
        [f"{TASK}__prediction_log", f"{TASK}__drift_report"],
        tags={"dagster/partition": DAY},
    )
    assert run.status == dg.DagsterRunStatus.SUCCESS, _failure_messages(instance, run.run_id)
    with profile_env(k8s_platform) as paths:
        report = Lake(paths.lake).read(f"{TASK}/drift_report", DAY)
        logged = Lake(paths.lake).read(f"{TASK}/prediction_log", DAY)
    assert report["source"].tolist() == ["prediction_log"]
    assert int(report["rows"].iloc[0]) >= 1
    assert body["model_version"] in set(logged["model_version"])
    ran = {
        p["name"]
        for p in k8s_platform["kubelet"].started_pods
        if (p["labels"] or {}).get("dagster/run-id") == run.run_id
    }
    assert pod.metadata.name not in ran and len(ran) >= 2


def test_a_failed_rollout_fails_the_asset_and_the_previous_bento_keeps_serving(
    k8s_platform, rolled
):
    good = rolled["packaged"]
    broken = {**good, "bento": f"{TASK}_service:missing", "export": good["export"] + ".missing"}
    before = _service(k8s_platform).served()
    with profile_env(k8s_platform) as paths:
        lake = Lake(paths.lake)
        lake.write_json(f"{TASK}/bento", broken)  # what a bad `bento` would have handed over
        try:
            run, instance = _launch(k8s_platform, f"{TASK}_deployment", None)
        finally:
            lake.write_json(f"{TASK}/bento", good)
    assert run.status == dg.DagsterRunStatus.FAILURE
    messages = _failure_messages(instance, run.run_id)
    # Kubernetes' reason for the new pod, and the container's own last words.
    assert "CrashLoopBackOff" in messages and "does not exist" in messages, messages[-3000:]
    assert f"put back {good['bento']}" in messages
    after = _service(k8s_platform).served()
    assert (after.bento, after.uri) == (before.bento, before.uri)
    _service(k8s_platform).wait(120)
    pod = _ready_pod(k8s_platform, good["bento"])
    assert _predict(k8s_platform, pod)["model_version"] == rolled["champion"]


def _other_evaluated_version(registry: ModelRegistry, champion: str) -> str:
    """The other family's version (evaluated by the same retrain)."""
    versions = registry.client.search_model_versions(f"name='{TASK}'")
    # (MLflow hands versions back as int here, as str elsewhere.)
    return next(
        str(v.version)
        for v in versions
        if str(v.version) != champion and v.tags.get("evaluated_by_run")
    )


def test_a_champion_rollback_moves_the_deployment_back(k8s_platform, rolled):
    first = rolled["champion"]
    with profile_env(k8s_platform) as paths:
        registry = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
        # The other family's version becomes champion, as a later retrain's promotion would;
        # its Bento is built and rolled out by the assets.
        other = _other_evaluated_version(registry, first)
        registry.promote(TASK, other, first, {})
    run, instance = _launch(k8s_platform, f"{TASK}_retrain", [f"{TASK}__bento"])
    assert run.status == dg.DagsterRunStatus.SUCCESS, _failure_messages(instance, run.run_id)
    run, instance = _launch(k8s_platform, f"{TASK}_deployment", None)
    assert run.status == dg.DagsterRunStatus.SUCCESS, _failure_messages(instance, run.run_id)
    second = _service(k8s_platform).served()
    assert second.model_version == other and second.bento != rolled["packaged"]["bento"]

    out = subprocess.run(
        [str(platform.VENV_BIN / "flightline"), "rollback", "--task", TASK],
        env=k8s_platform["env"],  # the deployment target, as the user-code deployment has it
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    back = _service(k8s_platform).served()
    assert back.bento == rolled["packaged"]["bento"] and back.model_version == first
    assert int(back.revision) > int(second.revision)
    assert f"serves {back.bento} again" in out.stdout
    pod = _ready_pod(k8s_platform, back.bento)
    assert _predict(k8s_platform, pod)["model_version"] == first
    template = _service(k8s_platform)._read().spec.template
    assert template.metadata.annotations[MODEL_ANNOTATION] == first


def test_a_challenger_in_shadow_is_served_by_the_pod_and_an_abort_restores_the_exact_bento(
    k8s_platform, rolled
):
    """Issue 28: during a rollout the running service holds both models (the Bento carries the
    challenger, the Deployment rolls to it); an abort rolls back to the exact previous Bento."""
    from pipelines.platform.lib.prediction_log import read_day
    from pipelines.platform.lib.rollout import RolloutState, manual

    first = rolled["champion"]
    before = _service(k8s_platform).served()
    with profile_env(k8s_platform) as paths:
        registry = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
        other = _other_evaluated_version(registry, first)
        state = RolloutState("shadow", other, first, 0.5, "shadow on the cluster")
        registry.start_rollout(TASK, state, "test")

    def package_and_roll():
        for job, ops in ((f"{TASK}_retrain", [f"{TASK}__bento"]), (f"{TASK}_deployment", None)):
            run, instance = _launch(k8s_platform, job, ops)
            assert run.status == dg.DagsterRunStatus.SUCCESS, _failure_messages(
                instance, run.run_id
            )
        return _service(k8s_platform).served()

    shadowed = package_and_roll()
    assert shadowed.bento != before.bento and shadowed.model_version == first
    pod = _ready_pod(k8s_platform, shadowed.bento)
    assert _predict(k8s_platform, pod)["model_version"] == first  # the champion answers
    with profile_env(k8s_platform) as paths:
        deadline, rows = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            log, _ = read_day(paths.prediction_log_for(TASK), DAY)
            if "challenger_version" in log.columns:
                rows = log[log["challenger_version"].astype(str) == other]
                if len(rows):
                    break
            time.sleep(1)
    assert rows is not None and len(rows), "no answer of the pod logged the shadow's score"
    assert rows[["champion_score", "challenger_score"]].notna().all().all()
    assert set(rows["served_by"]) == {"champion"} and set(rows["rollout_stage"]) == {"shadow"}

    with profile_env(k8s_platform) as paths:
        registry = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
        registry.apply_rollout(TASK, manual(state, "abort", "test", "cluster check done"))
    back = package_and_roll()
    # The champion alone again, on the same pinned image and the same registered model (a step
    # pod has a BentoML store of its own, so the Bento may be rebuilt around it).
    assert back.image == before.image and back.model_version == first
    assert int(back.revision) > int(shadowed.revision) and back.bento != shadowed.bento
    pod = _ready_pod(k8s_platform, back.bento)
    assert _predict(k8s_platform, pod)["model_version"] == first
