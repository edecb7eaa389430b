"""Trials of one study in several pods (issue 25) on the real control plane: flight delay's tuned
LightGBM step runs as a Kubernetes Job, clones its pod into a worker Job, both run trials of the
study in the instance's PostgreSQL database, and the step refits the best trial."""

import time
import uuid

import dagster as dg
import pytest
import yaml
from kubernetes import client, config

from pipelines.platform.lib.tracking import ModelRegistry
from pipelines.platform.lib.tuning import open_storage
from pipelines.platform.lib.tuning_pods import WORKER_LABEL
from tests.infra import platform
from tests.infra.runs import RUN_TIMEOUT, failure_messages, wait_finished
from tests.infra.tuned_location import SEARCH, TASK
from tests.pipeline_fixture import MODEL_RUN_CONFIG

MODEL_STEP = f"{TASK}__lgbm_model"
pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 1500)


@pytest.fixture(scope="module")
def tuned_run(k8s_platform):
    """Flight delay's tuned LightGBM step (the session built its training set into the cluster's
    services), launched as a run whose every pod loads tests/infra/tuned_location.py."""
    # An instance on the cluster's PostgreSQL storage that launches at once (the daemon's
    # workspace does not hold this test's code location).
    home = k8s_platform["root"] / "home-tuning"
    instance_config = platform.instance_config(
        k8s_platform["launcher_kubeconfig"], home, postgres_url=k8s_platform["profile"].postgres_url
    )
    instance_config["run_coordinator"] = {
        "module": "dagster._core.run_coordinator",
        "class": "DefaultRunCoordinator",
    }
    platform.write_home(home, instance_config)
    workspace = home / "workspace.yaml"
    location = {"module_name": "tests.infra.tuned_location", "attribute": "defs"}
    location["location_name"] = "tuning_test"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": location}]}))
    env = {**k8s_platform["env"], "DAGSTER_HOME": str(home)}
    run_id, started = str(uuid.uuid4()), time.monotonic()
    run_config = {"ops": {MODEL_STEP: MODEL_RUN_CONFIG["ops"][MODEL_STEP]}}  # the nine days' split
    launched = platform.launch(
        env, run_id, run_config, job=f"{TASK}_retrain", ops=[MODEL_STEP], workspace=workspace
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(str(home))
    run = wait_finished(instance, run_id)
    print(f"tuning run {run.status} in {time.monotonic() - started:.0f}s")
    return {"run": run, "instance": instance}


def _study(k8s_platform):
    import optuna

    storage = open_storage(k8s_platform["profile"].postgres_url)
    [summary] = [s for s in storage.get_all_studies() if s.study_name.startswith(f"{TASK}.")]
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def test_trials_ran_in_several_pods_and_the_best_was_refitted(k8s_platform, tuned_run):
    run, instance = tuned_run["run"], tuned_run["instance"]
    assert run.status == dg.DagsterRunStatus.SUCCESS, failure_messages(instance, run.run_id)

    study = _study(k8s_platform)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))  # no trial repeated
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) >= SEARCH["n_trials"]
    by_pod: dict[str, int] = {}
    for t in complete:
        by_pod[t.user_attrs["worker"]] = by_pod.get(t.user_attrs["worker"], 0) + 1
    print(f"complete trials by pod: {by_pod}")
    assert len(by_pod) >= 2, by_pod
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(params) == len(set(params))  # seeded apart: no worker drew another's point

    # Each of those pods is one of the run's: the step's own and its worker Job's.
    api = config.new_client_from_config(str(k8s_platform["cluster"].kubeconfig))
    pods = client.CoreV1Api(api).list_namespaced_pod(
        platform.NAMESPACE, label_selector=f"dagster/run-id={run.run_id}"
    )
    labels = {p.metadata.name: p.metadata.labels for p in pods.items}
    assert set(by_pod) <= set(labels), (by_pod, sorted(labels))
    workers = {name for name, tags in labels.items() if tags.get(WORKER_LABEL) == "true"}
    assert len(workers) == SEARCH["workers"] - 1
    assert {labels[name].get("dagster/op") for name in by_pod} == {MODEL_STEP}
    assert set(by_pod) & workers and set(by_pod) - workers  # the step pod ran trials too
    ran = [p for p in k8s_platform["kubelet"].started_pods if p["name"] in by_pod]
    assert len({p["workdir"] for p in ran}) == len(ran)  # no disk shared between them

    # The registered version is the study's best trial, refitted by the step.
    event = instance.get_latest_materialization_event(dg.AssetKey([TASK, "lgbm_model"]))
    metadata = event.asset_materialization.metadata
    tuning = metadata["tuning"].value
    assert tuning["best_trial"] == study.best_trial.number
    assert tuning["trial_workers"] >= 2
    best = metadata["best_params"].value
    for name, value in study.best_params.items():
        assert best[name] == pytest.approx(value)
    env = k8s_platform["profile"].env(k8s_platform["data_root"])
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        from pipelines.platform.lib.settings import DataPaths

        paths = DataPaths.from_env()
        registry = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
        name, version = metadata["model_version"].value.rsplit(" v", 1)
        tags = registry.client.get_model_version(name, version).tags
        assert tags["tuning.best_trial"] == str(study.best_trial.number)
        # Every pod's trials are MLflow child runs of the step's run, tagged with the pod.
        parent = registry.client.get_model_version(name, version).run_id
        experiment = registry.client.get_run(parent).info.experiment_id
        children = registry.client.search_runs(
            [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
        )
        assert {r.data.tags["optuna.worker"] for r in children} >= set(by_pod)
