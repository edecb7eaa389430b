"""Hyper-parameter search: the search space from a task definition, pruning on the validation
curve, and a study that survives its process being killed mid-study (resumed, nothing repeated)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest

from pipelines.platform.lib.modeling.families import family
from pipelines.platform.lib.modeling.fit import prepare
from pipelines.platform.lib.tuning import (
    SearchSpec,
    TuningError,
    open_storage,
    parse_search,
    spec_from_json,
    spec_to_json,
    starting_point,
    suggest,
    tune,
)
from tests.defs.test_model_factory import TOY, toy_examples

SPACE = {
    "space": {
        "num_leaves": {"low": 3, "high": 31, "log": True},
        "learning_rate": {"low": 0.02, "high": 0.3, "log": True},
        "min_data_in_leaf": {"low": 5, "high": 60},
    },
    "n_trials": 8,
    "metric": "roc_auc",
    "startup_trials": 3,
}

# The worker the test kills: it tunes the toy table into the study, pausing inside each trial
# (in its log call, before the trial returns) so that the kill lands mid-study.
WORKER = """
import sys, time
from pipelines.platform.lib.modeling.families import family
from pipelines.platform.lib.modeling.fit import prepare
from pipelines.platform.lib.tuning import open_storage, parse_search, tune
from tests.defs.test_model_factory import TOY, toy_examples
from tests.lib.test_tuning import SPACE, BASE
fam = family("lightgbm")
prepared = prepare(TOY, toy_examples(), TOY.split)
tune(fam, parse_search(fam, SPACE, "t"), prepared.args, BASE,
     storage=open_storage(sys.argv[1], heartbeat_s=1, grace_s=2), study_name="toy",
     seed=3, log=lambda message: time.sleep(0.4))
"""
BASE = {"max_rounds": 200, "early_stopping_rounds": 20, "num_threads": 1}


def _finished(storage_url: str) -> list:
    storage = open_storage(storage_url, heartbeat_s=None, grace_s=None)
    if not any(s.study_name == "toy" for s in storage.get_all_studies()):
        return []
    study = optuna.load_study(study_name="toy", storage=storage)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


@pytest.mark.slow
def test_a_killed_study_resumes_without_repeating_a_trial(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, url],
        cwd=os.getcwd(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while len(_finished(url)) < 3:
        assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the worker finished no 3 trials in 180 s"
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    before = {t.number: (t.params, t.value, t.state) for t in _finished(url)}
    assert 3 <= len(before) < 8, "the kill must land mid-study"

    fam = family("lightgbm")
    prepared = prepare(TOY, toy_examples(), TOY.split)
    result = tune(
        fam,
        parse_search(fam, SPACE, "t"),
        prepared.args,
        BASE,
        storage=open_storage(url, heartbeat_s=1, grace_s=2),
        study_name="toy",
        seed=3,
    )
    after = _finished(url)
    assert len(after) == 8  # the budget counts the trials of both processes
    assert result.ran_here == 8 - len(before)  # only the missing ones ran again
    for t in after:  # the killed process's finished trials are kept as they were
        if t.number in before:
            assert (t.params, t.value, t.state) == before[t.number]
    params = [json.dumps(t.params, sort_keys=True) for t in after]
    assert len(set(params)) == len(params), "a parameter set was tried twice"
    best = max((t for t in after if t.value is not None), key=lambda t: t.value)
    assert result.best_trial == best.number and result.best_params == best.params
    # A trial the kill cut off is failed once its heartbeat is stale, never left running.
    storage = open_storage(url, heartbeat_s=1, grace_s=2)
    study = optuna.load_study(study_name="toy", storage=storage)
    deadline = time.monotonic() + 60
    while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        assert time.monotonic() < deadline
        optuna.storages.fail_stale_trials(study)
        time.sleep(0.5)


@pytest.mark.slow
def test_pruning_stops_poor_trials_on_the_validation_curve(tmp_path):
    """Trials of a hopeless learning rate are cut on LightGBM's validation AUC; the MLP's prune
    on its per-epoch curve."""
    prepared = prepare(TOY, toy_examples(), TOY.split)
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    lgbm = family("lightgbm")
    spec = parse_search(
        lgbm,
        {
            "space": {"learning_rate": {"choices": [0.2, 0.0001]}},
            "n_trials": 8,
            "startup_trials": 2,
            "metric": "log_loss",
        },
        "t",
    )
    result = tune(
        lgbm,
        spec,
        prepared.args,
        {"max_rounds": 60, "early_stopping_rounds": 60, "num_threads": 1},
        storage=storage,
        study_name="lgbm",
        seed=0,
    )
    assert result.best_params["learning_rate"] == 0.2
    assert result.trials.get("PRUNED", 0) >= 1
    mlp = family("torch")
    spec = parse_search(
        mlp,
        {
            "space": {"learning_rate": {"choices": [3e-3, 1e-7]}, "hidden": {"choices": [[8]]}},
            "n_trials": 6,
            "startup_trials": 2,
            "metric": "log_loss",
        },
        "t",
    )
    result = tune(
        mlp,
        spec,
        prepared.args,
        {"max_epochs": 6, "patience": 6},
        storage=storage,
        study_name="mlp",
        seed=0,
    )
    assert result.best_params == {"learning_rate": 3e-3, "hidden": (8,)}
    assert result.trials.get("PRUNED", 0) >= 1


@pytest.mark.parametrize(
    "doc, message",
    [
        (
            {"space": {"leaves": {"low": 1, "high": 3}}, "n_trials": 2},
            "space.leaves: not a lightgbm",
        ),
        ({"space": {"num_leaves": {"low": 9, "high": 3}}, "n_trials": 2}, "low < high"),
        ({"space": {"num_leaves": {"low": 3, "high": 9}}}, "give n_trials or timeout_s"),
        ({"space": {"num_leaves": {"low": 3, "high": 9}}, "n_trials": 2, "metric": "f1"}, "metric"),
        ({"space": {"seed": {"low": 1, "high": 9}}, "n_trials": 2}, "seed"),
        ({"space": {}, "n_trials": 2}, "empty"),
        ({"space": {"num_leaves": {"low": 3, "high": 9}}, "n_trials": 2, "workers": 0}, "workers"),
    ],
)
def test_bad_search_spaces_are_refused_naming_the_field(doc, message):
    with pytest.raises(TuningError, match=message):
        parse_search(family("lightgbm"), doc, "models.tuning.lightgbm")


def test_int_parameters_are_searched_as_ints_and_tuples_round_trip():
    lgbm, mlp = family("lightgbm"), family("torch")
    spec = parse_search(lgbm, SPACE, "t")
    assert isinstance(spec, SearchSpec) and spec.direction == "maximize"
    values = suggest(
        optuna.trial.FixedTrial({"num_leaves": 7, "learning_rate": 0.1, "min_data_in_leaf": 20}),
        lgbm,
        spec,
    )
    assert values == {"num_leaves": 7, "learning_rate": 0.1, "min_data_in_leaf": 20}
    assert isinstance(values["num_leaves"], int)
    hidden = parse_search(
        mlp, {"space": {"hidden": {"choices": [[16], [32, 16]]}}, "n_trials": 1}, "t"
    )
    assert suggest(optuna.trial.FixedTrial({"hidden": "[32, 16]"}), mlp, hidden) == {
        "hidden": (32, 16)
    }
    assert mlp.make_params({"hidden": (32, 16)}).hidden == (32, 16)


def test_a_new_study_starts_from_the_tasks_own_parameters(tmp_path):
    """Trial 0 is what the task trains today (its params over the family's defaults), so the best
    trial is never worse on validation than no tuning; values outside the space are sampled."""
    fam = family("lightgbm")
    spec = parse_search(fam, {**SPACE, "n_trials": 2}, "t")
    base = {**BASE, "num_leaves": 15, "min_data_in_leaf": 500}  # 500: outside [5, 60]
    assert starting_point(fam, spec, base) == {"num_leaves": 15, "learning_rate": 0.05}
    prepared = prepare(TOY, toy_examples(), TOY.split)
    url = f"sqlite:///{tmp_path}/optuna.db"
    tune(fam, spec, prepared.args, base, storage=open_storage(url), study_name="s", seed=3)
    first, second = optuna.load_study(study_name="s", storage=url).get_trials(deepcopy=False)
    assert first.params["num_leaves"] == 15 and first.params["learning_rate"] == 0.05
    assert 5 <= first.params["min_data_in_leaf"] <= 60
    assert second.params != first.params
    mlp = family("torch")
    hidden = parse_search(
        mlp, {"space": {"hidden": {"choices": [[16], [256, 128]]}}, "n_trials": 1}, "t"
    )
    assert starting_point(mlp, hidden, {}) == {"hidden": "[256, 128]"}  # MlpParams' default


def test_a_worker_gets_the_same_search_and_its_pod_clones_the_steps():
    """What travels to a worker pod: the search (as JSON), and a Job copied from the step's pod
    (image, env, service account, placement), running the worker entry point."""
    from unittest import mock

    from kubernetes import client

    from pipelines.platform.lib.tuning_pods import STEP_LABEL, WORKER_LABEL, TuningPods

    spec = parse_search(
        family("torch"),
        {"space": {"hidden": {"choices": [[16], [32, 16]]}}, "n_trials": 4, "workers": 3},
        "t",
    )
    assert spec_from_json(spec_to_json(spec)) == spec and spec.workers == 3
    # The number of workers is how the study runs, not which study it is.
    assert parse_search(family("torch"), {**SPACE_TORCH, "workers": 5}, "t").fingerprint() == (
        parse_search(family("torch"), SPACE_TORCH, "t").fingerprint()
    )
    step = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name="dagster-step-abc-x1",
            labels={"dagster/run-id": "r1", "job-name": "dagster-step-abc", "controller-uid": "u"},
        ),
        spec=client.V1PodSpec(
            service_account_name="flightline-dagster",
            node_selector={"flightline/accelerator": "nvidia-gpu"},
            containers=[
                client.V1Container(
                    name="dagster",
                    image="ghcr.io/flightline/flightline:1",
                    args=["dagster", "api", "execute_step"],
                    env=[client.V1EnvVar(name="FLIGHTLINE_POSTGRES_URL", value="postgresql://x")],
                    env_from=[
                        client.V1EnvFromSource(
                            config_map_ref=client.V1ConfigMapEnvSource(name="flightline-env")
                        )
                    ],
                )
            ],
        ),
    )
    pods = TuningPods(mock.MagicMock(), "flightline", step)
    pods.batch = mock.MagicMock()
    assert pods.launch(2, "_tuning/run1") == [pods.jobs[0], pods.jobs[1]]
    bodies = [c.args[1] for c in pods.batch.create_namespaced_job.call_args_list]
    assert [b.metadata.name for b in bodies] == pods.jobs and len(set(pods.jobs)) == 2
    for index, body in enumerate(bodies, start=1):
        pod = body.spec.template
        [container] = pod.spec.containers
        assert container.image == "ghcr.io/flightline/flightline:1"
        assert container.command == ["python", "-m", "pipelines.platform.lib.tuning_pods"]
        assert container.args == ["_tuning/run1", str(index)]
        assert container.env == step.spec.containers[0].env
        assert container.env_from == step.spec.containers[0].env_from
        assert pod.spec.service_account_name == "flightline-dagster"
        assert pod.spec.node_selector == {"flightline/accelerator": "nvidia-gpu"}
        assert pod.spec.restart_policy == "Never" and body.spec.backoff_limit == 0
        labels = pod.metadata.labels
        assert labels["dagster/run-id"] == "r1" and labels[WORKER_LABEL] == "true"
        assert labels[STEP_LABEL] == "dagster-step-abc-x1"
        assert "job-name" not in labels and "controller-uid" not in labels


SPACE_TORCH = {"space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}, "n_trials": 2}


@pytest.mark.slow
def test_a_worker_process_runs_trials_of_the_steps_study_from_the_handoff(tmp_path):
    """The worker pods' entry point, as a local process: it reads the hand-off and the arrays
    from the lake, and its trials join the study (counted against its budget, tagged with it)."""
    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.tracking import ModelRegistry
    from pipelines.platform.lib.tuning import ensure_study, workers_seen
    from pipelines.platform.lib.tuning_pods import Handoff, write_handoff

    url = f"sqlite:///{tmp_path}/optuna.db"
    spec = parse_search(family("lightgbm"), SPACE, "t")
    prepared = prepare(TOY, toy_examples(), TOY.split)
    study = ensure_study(open_storage(url), "toy", spec)
    mlflow = {
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "artifact_root": str(tmp_path / "artifacts"),
        "registry_uri": None,
    }
    registry = ModelRegistry(**mlflow)
    experiment = registry.client.create_experiment("toy")
    parent = registry.client.create_run(experiment).info.run_id
    handoff = Handoff("lightgbm", spec_to_json(spec), BASE, "toy", 3, 4, mlflow, parent, {})
    name = write_handoff(Lake(str(tmp_path / "data" / "lake")), handoff, prepared.args)
    env = {
        **os.environ,
        "FLIGHTLINE_DATA_ROOT": str(tmp_path / "data"),
        "FLIGHTLINE_TUNING_STORAGE": url,
        "HOSTNAME": "tuning-worker-pod-1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.platform.lib.tuning_pods", name, "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    finished = study.get_trials(deepcopy=False)
    assert len(finished) == 4 and workers_seen(study) == {"tuning-worker-pod-1"}
    children = registry.client.search_runs(
        [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    assert {r.data.tags["optuna.worker"] for r in children} == {"tuning-worker-pod-1"}
    assert len(children) == 4


def test_a_failed_or_late_worker_pod_is_named():
    from unittest import mock

    from kubernetes import client

    from pipelines.platform.lib.tuning_pods import TuningPods, TuningWorkerError

    pods = TuningPods(mock.MagicMock(), "flightline", None)
    pods.batch, pods.core, pods.jobs = mock.MagicMock(), mock.MagicMock(), ["tuning-abc-1"]
    dead = client.V1ContainerStatus(
        name="tuning-worker",
        image="i",
        image_id="",
        ready=False,
        restart_count=0,
        state=client.V1ContainerState(
            terminated=client.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")
        ),
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="tuning-abc-1-xyz"),
        status=client.V1PodStatus(phase="Failed", container_statuses=[dead]),
    )
    pods.core.list_namespaced_pod.return_value = client.V1PodList(items=[pod])
    pods.batch.read_namespaced_job_status.return_value = client.V1Job(
        status=client.V1JobStatus(failed=1)
    )
    message = "tuning worker job tuning-abc-1: pod tuning-abc-1-xyz (Failed, exit code 137 (OOMKilled)) failed"
    with pytest.raises(TuningWorkerError, match=re.escape(message)):
        pods.wait_finished(60)
    with pytest.raises(TuningWorkerError, match=re.escape(message)):
        pods.wait_started(set, 60)
    # Never began: the deadline names the pod and what Kubernetes says of it.
    pod.status = client.V1PodStatus(phase="Pending")
    pods.batch.read_namespaced_job_status.return_value = client.V1Job(status=client.V1JobStatus())
    with pytest.raises(
        TuningWorkerError, match=r"not started within 0s: .*tuning-abc-1-xyz \(Pending"
    ):
        pods.wait_started(set, 0)
    pods.delete()
    pods.batch.delete_namespaced_job.assert_called_once_with(
        "tuning-abc-1", "flightline", propagation_policy="Background"
    )


def test_off_kubernetes_workers_are_ignored_with_a_log_line(monkeypatch):
    from unittest import mock

    from pipelines.platform.components.model import _worker_pods

    monkeypatch.delenv("FLIGHTLINE_K8S_NAMESPACE", raising=False)
    context = mock.MagicMock()
    assert _worker_pods(context, family("lightgbm"), 3) is None
    assert "runs in no Kubernetes pod" in context.log.info.call_args.args[0]
    assert _worker_pods(context, family("lightgbm"), 1) is None
