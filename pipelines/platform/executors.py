"""Which executor runs a run's steps, chosen by configuration.

Unset `FLIGHTLINE_EXECUTOR` runs steps in the run's own process (the embedded profile, tests,
`make run`, daemon-launched runs: the multiprocess default re-imports the world per step, ~10 s);
`multiprocess` is Dagster's default;
`FLIGHTLINE_EXECUTOR=k8s` runs each step as its own Kubernetes Job through `k8s_job_executor`,
which takes image, namespace, env and service account from the instance's `K8sRunLauncher`
(run config `execution: config:` can still override, e.g. `per_step_k8s_config`).
"""

import os

import dagster as dg

from pipelines.platform.lib.kubernetes import GpuPlacement

K8S_CONFIG_TAG = "dagster-k8s/config"


def configured_executor() -> dg.ExecutorDefinition:
    kind = os.environ.get("FLIGHTLINE_EXECUTOR", "").strip().lower()
    if kind in ("", "in_process"):
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "k8s":
        return _k8s_executor()
    raise ValueError(
        f"FLIGHTLINE_EXECUTOR={kind!r}: expected unset, 'in_process', 'multiprocess' or 'k8s'"
    )


def _k8s_executor() -> dg.ExecutorDefinition:
    """dagster-k8s's `k8s_job_executor` (same name, config and behaviour), except that a step
    whose pod died says why: dagster-k8s reports only "Discovered failed Kubernetes job"; this
    adds the pod's status (exit code, reason, waiting state) and its last log lines.
    """
    # Imported here: the Kubernetes client is not needed by the embedded profile.
    from pipelines.platform.compat import check_step_health_result

    CheckStepHealthResult = check_step_health_result()
    from dagster_k8s import k8s_job_executor
    from dagster_k8s.executor import K8sStepHandler

    class ExplainingK8sStepHandler(K8sStepHandler):
        def check_step_health(self, step_handler_context):
            result = super().check_step_health(step_handler_context)
            if result.is_healthy:
                return result
            namespace = self._get_container_context(step_handler_context).namespace
            job_name = self._get_k8s_step_job_name(step_handler_context)
            try:
                pods = self._api_client.get_pod_names_in_job(job_name, namespace=namespace)
                details = "\n".join(
                    self._api_client.get_pod_debug_info(pod, namespace) for pod in pods
                )
            except Exception as exc:  # the failure itself must still be reported
                details = f"(no pod details: {type(exc).__name__}: {exc})"
            return CheckStepHealthResult.unhealthy(f"{result.unhealthy_reason}\n{details}")

    @dg.executor(
        name=k8s_job_executor.name,
        config_schema=k8s_job_executor.config_schema,
        requirements=k8s_job_executor.get_requirements,
    )
    def flightline_k8s_executor(init_context):
        executor = k8s_job_executor.executor_creation_fn(init_context)
        # The handler is built from the executor config by dagster-k8s; only its class changes.
        executor._step_handler.__class__ = ExplainingK8sStepHandler
        return executor

    return flightline_k8s_executor


def training_op_tags(family: str) -> dict | None:
    """Op tags of a family's training step: GPU placement for the GPU families, else none.

    Ignored by the in-process and multiprocess executors; read by `k8s_job_executor`.
    """
    from pipelines.platform.lib.modeling.families import family as lookup

    if not lookup(family).gpu:
        return None
    return {K8S_CONFIG_TAG: GpuPlacement.from_env().k8s_config()}
