"""Trials of one study in several pods (issue 25): the family's step pod starts `workers - 1`
Kubernetes Jobs that copy its own pod (image, env, service account, resources, placement) and run
`python -m pipelines.platform.lib.tuning_pods <handoff> <index>` against the same study; the
step runs trials too, waits for its workers, then refits the best trial itself.

Pods share no disk: the step hands its workers the exact arrays it tunes on, and what they need
to know, through the lake (the object store); the study lives in the instance's PostgreSQL
database; trials are MLflow child runs of the step's run. No Dagster here.
"""

import contextlib
import hashlib
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

WORKER_LABEL = "flightline/tuning-worker"
STEP_LABEL = "flightline/tuning-step"
HANDOFF_TABLE = "_tuning"
# Labels Kubernetes puts on a Job's pods: a copied one would clash with the new Job's selector.
_OWN_LABELS = ("controller-uid", "job-name", "batch.kubernetes.io/")


class TuningWorkerError(RuntimeError):
    """A worker pod that failed, or did not start or finish in time; the message names it."""


@dataclass(frozen=True)
class Handoff:
    """What a worker needs besides the arrays (no secrets: storage URLs come from its env)."""

    family: str
    spec: str  # tuning.spec_to_json
    base_params: dict[str, Any]
    study_name: str
    seed: int
    n_trials: int | None
    mlflow: dict[str, str | None]  # tracking_uri, artifact_root, registry_uri
    parent_run_id: str
    tags: dict[str, str]


def write_handoff(lake, handoff: Handoff, args: tuple) -> str:
    """The handoff and the family's (train_x, train_y, valid_x, valid_y, categorical) in the
    lake, under the step's MLflow run id (one per tuning step); returns its name."""
    name = f"{HANDOFF_TABLE}/{handoff.parent_run_id}"
    lake.write_file(name, "args", ".pickle", pickle.dumps(args, protocol=5))
    lake.write_json(name, asdict(handoff))
    return name


def read_handoff(lake, name: str) -> tuple[Handoff, tuple]:
    # Unpickled: the step of the same run wrote it to the platform's own lake.
    args = pickle.loads(lake.read_file(name, "args", ".pickle"))
    return Handoff(**lake.read_json(name)), args


def _api_client():
    """The cluster as the pod's service account sees it (FLIGHTLINE_KUBECONFIG where the token is
    a file, as on the tests' control plane); None outside a cluster."""
    from kubernetes import client, config

    kubeconfig = os.environ.get("FLIGHTLINE_KUBECONFIG")
    if kubeconfig:
        return config.new_client_from_config(kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        return None
    return client.ApiClient()


class TuningPods:
    """Worker Jobs cloned from the pod this process runs in."""

    def __init__(self, api, namespace: str, pod):
        from kubernetes import client

        self.core, self.batch = client.CoreV1Api(api), client.BatchV1Api(api)
        self.namespace, self.pod = namespace, pod
        self.jobs: list[str] = []

    @classmethod
    def here(cls) -> "TuningPods | None":
        """This process's pod, when it runs in one: FLIGHTLINE_K8S_NAMESPACE names the namespace
        and HOSTNAME (Kubernetes sets it to the pod's name) a pod there. None otherwise."""
        from kubernetes.client.exceptions import ApiException

        namespace, name = os.environ.get("FLIGHTLINE_K8S_NAMESPACE"), os.environ.get("HOSTNAME")
        api = _api_client() if namespace and name else None
        if api is None:
            return None
        pods = cls(api, namespace, None)
        try:
            pods.pod = pods.core.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status == 404:  # a process outside the cluster with the namespace configured
                return None
            raise
        return pods

    def launch(self, count: int, handoff: str) -> list[str]:
        """`count` worker Jobs, each running the worker entry point on `handoff`."""
        from kubernetes import client

        me = self.pod
        labels = {
            k: v for k, v in (me.metadata.labels or {}).items() if not k.startswith(_OWN_LABELS)
        } | {WORKER_LABEL: "true", STEP_LABEL: me.metadata.name[:63]}
        key = hashlib.sha256(f"{me.metadata.name}/{handoff}".encode()).hexdigest()[:10]
        source = me.spec.containers[0]
        for index in range(1, count + 1):
            container = client.V1Container(
                name="tuning-worker",
                image=source.image,
                image_pull_policy=source.image_pull_policy,
                command=["python", "-m", "pipelines.platform.lib.tuning_pods"],
                args=[handoff, str(index)],
                env=source.env,
                env_from=source.env_from,
                resources=source.resources,  # a GPU step's workers ask for a GPU each
                volume_mounts=source.volume_mounts,
                working_dir=source.working_dir,
                security_context=source.security_context,
            )
            spec = me.spec
            pod_spec = client.V1PodSpec(
                containers=[container],
                restart_policy="Never",
                service_account_name=spec.service_account_name,
                node_selector=spec.node_selector,
                tolerations=spec.tolerations,
                affinity=spec.affinity,
                volumes=spec.volumes,
                image_pull_secrets=spec.image_pull_secrets,
                security_context=spec.security_context,
            )
            name = f"tuning-{key}-{index}"
            body = client.V1Job(
                metadata=client.V1ObjectMeta(name=name, labels=labels),
                spec=client.V1JobSpec(
                    # A failed worker is reported, not retried: its cut-off trial turns FAIL
                    # when its heartbeat goes stale, the others go on.
                    backoff_limit=0,
                    ttl_seconds_after_finished=86400,  # as the step Jobs (infra/dagster-instance.yaml)
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec
                    ),
                ),
            )
            self.batch.create_namespaced_job(self.namespace, body)
            self.jobs.append(name)
        return list(self.jobs)

    def _pods(self, job: str) -> list:
        return self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}").items

    def _failed(self, job: str) -> str | None:
        status = self.batch.read_namespaced_job_status(job, self.namespace).status
        if status.failed:
            return f"tuning worker {self.describe(job)} failed"
        return None

    def _succeeded(self, job: str) -> bool:
        return bool(self.batch.read_namespaced_job_status(job, self.namespace).status.succeeded)

    def describe(self, job: str) -> str:
        """Job, pod name(s) and what Kubernetes says of them (phase, exit code, waiting)."""
        parts = []
        for pod in self._pods(job):
            state = ""
            for cs in (pod.status and pod.status.container_statuses) or []:
                if cs.state.terminated:
                    t = cs.state.terminated
                    state = f", exit code {t.exit_code} ({t.reason or 'no reason'})"
                elif cs.state.waiting:
                    w = cs.state.waiting
                    state = f", waiting: {w.reason} {w.message or ''}".rstrip()
            parts.append(f"pod {pod.metadata.name} ({pod.status.phase}{state})")
        return f"job {job}: " + ("; ".join(parts) or "no pod yet")

    def wait_started(self, begun: Callable[[], set[str]], timeout_s: float) -> None:
        """Until each worker has begun a trial (or finished): the step's own trials start after
        its workers', so that a quick study is not spent before the pods are up."""

        def started(job: str, names: set[str]) -> bool:
            return bool({p.metadata.name for p in self._pods(job)} & names) or self._succeeded(job)

        self._wait(begun, started, "started", timeout_s)

    def wait_finished(self, timeout_s: float) -> None:
        self._wait(lambda: None, lambda job, _: self._succeeded(job), "finished", timeout_s)

    def _wait(self, poll, done, what: str, timeout_s: float) -> None:
        """Until `done(job, poll())` holds for every worker Job; a failed one, or the deadline,
        raises naming the pods."""
        pending = set(self.jobs)
        deadline = time.monotonic() + timeout_s
        while pending:
            seen = poll()
            for job in sorted(pending):
                if failure := self._failed(job):
                    raise TuningWorkerError(failure)
                if done(job, seen):
                    pending.discard(job)
            if pending and time.monotonic() > deadline:
                raise TuningWorkerError(
                    f"tuning workers not {what} within {timeout_s:.0f}s: "
                    + "; ".join(self.describe(j) for j in sorted(pending))
                )
            if pending:
                time.sleep(1)

    def delete(self) -> None:
        """Stop the workers (the step failed): their running trials turn FAIL by heartbeat."""
        for job in self.jobs:
            # Best effort: the step's own error is the one to report.
            with contextlib.suppress(Exception):
                self.batch.delete_namespaced_job(
                    job, self.namespace, propagation_policy="Background"
                )


def storage_url_from_env() -> str:
    """The shared study's database as a worker pod finds it: FLIGHTLINE_TUNING_STORAGE, else the
    production profile's PostgreSQL (what the step's tuning_storage picks on the cluster)."""
    from pipelines.platform.lib.services import ProductionServices

    url = os.environ.get("FLIGHTLINE_TUNING_STORAGE") or ProductionServices.from_env().postgres_url
    if not url:
        raise TuningWorkerError(
            "no shared study storage: set FLIGHTLINE_POSTGRES_URL or FLIGHTLINE_TUNING_STORAGE"
        )
    return url


def run_worker(handoff_name: str, index: int, log: Callable[[str], None] = print) -> int:
    """Trials of the step's study until its budget is spent; returns the trials run here."""
    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.modeling.families import family
    from pipelines.platform.lib.settings import DataPaths
    from pipelines.platform.lib.tracking import ModelRegistry
    from pipelines.platform.lib.tuning import (
        NoTrialCompleted,
        TrialRuns,
        open_storage,
        spec_from_json,
        tune,
        worker_name,
    )

    handoff, args = read_handoff(Lake(DataPaths.from_env().lake), handoff_name)
    registry = ModelRegistry(**handoff.mlflow)
    trial_log = TrialRuns(
        registry,
        handoff.parent_run_id,
        handoff.study_name,
        handoff.tags | {"optuna.worker": worker_name()},
    )
    try:
        result = tune(
            family(handoff.family),
            spec_from_json(handoff.spec),
            args,
            handoff.base_params,
            storage=open_storage(storage_url_from_env()),
            study_name=handoff.study_name,
            seed=handoff.seed,
            trial_log=trial_log,
            log=log,
            n_trials=handoff.n_trials,
            worker=index,
        )
    except NoTrialCompleted as exc:  # the step reports that, for the whole study
        log(str(exc))
        return 0
    log(f"worker {worker_name()}: ran {result.ran_here} trials of {handoff.study_name}")
    return result.ran_here


if __name__ == "__main__":
    run_worker(sys.argv[1], int(sys.argv[2]), log=lambda m: print(m, flush=True))
