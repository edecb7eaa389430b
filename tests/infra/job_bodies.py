"""The Job bodies `K8sRunLauncher` and `k8s_job_executor` create, built by dagster-k8s's own code
from our production instance config and our op tags, without a cluster."""

import sys
import uuid
from pathlib import Path
from unittest import mock

import dagster as dg
import yaml
from dagster._config import process_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config

ROOT = Path(__file__).resolve().parents[2]


def production_launcher(kubeconfig: Path, image: str, **overrides) -> K8sRunLauncher:
    """K8sRunLauncher as infra/dagster-instance.yaml configures it (out of cluster: a kubeconfig)."""
    config = yaml.safe_load((ROOT / "infra" / "dagster-instance.yaml").read_text())
    launcher_config = config["run_launcher"]["config"]
    launcher_config.update(
        load_incluster_config=False, kubeconfig_file=str(kubeconfig), job_image=image, **overrides
    )
    processed = process_config(K8sRunLauncher.config_type(), launcher_config)  # fills defaults
    assert processed.success, processed.errors
    return K8sRunLauncher(**processed.value, k8s_client_batch_api=mock.MagicMock())


def job_origin(job_name: str) -> JobPythonOrigin:
    return JobPythonOrigin(
        job_name,
        RepositoryPythonOrigin(
            executable_path=sys.executable,
            code_pointer=ModuleCodePointer(
                "pipelines.definitions", "defs", working_directory=str(ROOT)
            ),
        ),
    )


def run_worker_body(launcher: K8sRunLauncher, instance: dg.DagsterInstance, job_name: str):
    """What `launch_run` sends to the API server for a run of `job_name`."""
    launcher.register_instance(instance)
    run = instance.add_run(
        dg.DagsterRun(
            job_name=job_name, run_id=str(uuid.uuid4()), job_code_origin=job_origin(job_name)
        )
    )
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    batch = launcher._api_client.batch_api  # the MagicMock passed in
    return batch.create_namespaced_job.call_args.kwargs["body"], run


def step_body(launcher: K8sRunLauncher, run: dg.DagsterRun, step_key: str, op_tags: dict):
    """The step Job, merged in k8s_job_executor's order: launcher, executor, op tag, per step."""
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    context = context.merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags))
    )
    job_config = context.get_k8s_job_config(None, launcher)
    step_args = ExecuteStepArgs(
        job_origin=run.job_code_origin,
        run_id=run.run_id,
        step_keys_to_execute=[step_key],
        instance_ref=None,
    )
    return construct_dagster_k8s_job(
        job_config=job_config,
        args=step_args.get_command_args(skip_serialized_namedtuple=True),
        job_name=f"dagster-step-{uuid.uuid4().hex}",
        pod_name=step_key,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": run.job_name, "dagster/op": step_key, "dagster/run-id": run.run_id},
        env_vars=[
            *step_args.get_command_env(),
            {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key},
        ],
    )
