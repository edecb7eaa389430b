"""The Dagster code location: every definition under defs/, bound to the configured resources."""

from pathlib import Path

import dagster as dg

from pipelines.platform.components.alerts import run_alert_defs
from pipelines.platform.console import quiet_console
from pipelines.platform.executors import configured_executor
from pipelines.platform.resources_config import embedded_resources

quiet_console()


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # In-process by default (each step of the multiprocess executor re-imports the world,
        # ~10 s here); FLIGHTLINE_EXECUTOR=k8s in production: one Kubernetes Job per step.
        dg.Definitions(resources=embedded_resources(), executor=configured_executor()),
        run_alert_defs(),  # run failures of every task's jobs: one pair of run-status sensors
    )
