"""Launching runs on the test cluster and waiting for them (shared by the Kubernetes tests)."""

import time
import uuid

import dagster as dg

from tests.infra import platform

RUN_TIMEOUT = 900


def instance(k8s_platform) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(k8s_platform["home"]))


def wait_finished(instance: dg.DagsterInstance, run_id: str, timeout: float = RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(1)
    raise TimeoutError(f"run {run_id} not finished after {timeout}s: {run and run.status}")


def failure_messages(instance: dg.DagsterInstance, run_id: str) -> str:
    records = instance.all_logs(run_id)
    return "\n".join(
        r.dagster_event.message or ""
        for r in records
        if r.dagster_event is not None and r.dagster_event.event_type_value in (
            "RUN_FAILURE", "STEP_FAILURE", "ENGINE_EVENT", "PIPELINE_FAILURE")
    ) + "\n".join(str(r.dagster_event.event_specific_data) for r in records if r.dagster_event
                  and r.dagster_event.event_type_value in ("RUN_FAILURE", "STEP_FAILURE", "ENGINE_EVENT"))  # fmt: skip


def launch(k8s_platform, run_config: dict, tags: dict | None = None) -> str:
    run_id = str(uuid.uuid4())
    result = platform.launch(k8s_platform["env"], run_id, run_config, tags)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_id
