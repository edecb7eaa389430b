"""Which executor runs a run's steps, chosen by configuration.

Unset `FLIGHTLINE_EXECUTOR` keeps Dagster's default (the embedded profile, tests, `make run`);
`FLIGHTLINE_EXECUTOR=k8s` runs each step as its own Kubernetes Job through `k8s_job_executor`,
which takes image, namespace, env and service account from the instance's `K8sRunLauncher`
(run config `execution: config:` can still override, e.g. `per_step_k8s_config`).
"""

import os

import dagster as dg

from pipelines.lib.kubernetes import GpuPlacement

K8S_CONFIG_TAG = "dagster-k8s/config"
TRAINING_ON_GPU = frozenset({"torch"})  # families whose training step asks for a GPU


def configured_executor() -> dg.ExecutorDefinition | None:
    kind = os.environ.get("FLIGHTLINE_EXECUTOR", "").strip().lower()
    if kind in ("", "default"):
        return None
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "k8s":
        # Imported here: the Kubernetes client is not needed by the embedded profile.
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"FLIGHTLINE_EXECUTOR={kind!r}: expected unset, 'in_process' or 'k8s'")


def training_op_tags(family: str) -> dict | None:
    """Op tags of a family's training step: GPU placement for the GPU families, else none.

    Ignored by the in-process and multiprocess executors; read by `k8s_job_executor`.
    """
    if family not in TRAINING_ON_GPU:
        return None
    return {K8S_CONFIG_TAG: GpuPlacement.from_env().k8s_config()}
