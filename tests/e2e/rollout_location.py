"""The code location of the staged-rollout acceptance test (tests/e2e/test_rollout.py): flight
delay as pipelines/defs declares it, with its `rollout` block switched on, as a task's defs.yaml
would (the daemon loads it: `-m tests.e2e.rollout_location`)."""

from pathlib import Path

import dagster as dg

from pipelines.platform.components.definition import resolve
from pipelines.platform.components.task import build_task_defs, load_definition
from pipelines.platform.executors import configured_executor
from pipelines.platform.resources_config import embedded_resources

DEFS = Path(__file__).resolve().parents[2] / "pipelines" / "defs" / "flight_delay" / "defs.yaml"
# A stage is decided on a day or two of live traffic; about a third of the aircraft see the canary.
ROLLOUT = {
    "enabled": True,
    "min_labelled_rows": 300,
    "max_labelled_rows": 2000,
    "canary_share": 0.3,
}
# The live gate's calibration tolerance for a day of rows (the offline one is for a holdout of
# thousands): the ECE of 250 rows moves by a few points between two resamples.
GATE = {"max_ece_increase": 0.06}


def rollout_task():
    definition = load_definition(DEFS)
    rollout = definition.rollout.model_copy(update=ROLLOUT)
    return resolve(
        definition.model_copy(update={"rollout": rollout, "gate": {**definition.gate, **GATE}})
    )


def rollout_definitions() -> dg.Definitions:
    return dg.Definitions.merge(
        build_task_defs(rollout_task()),
        dg.Definitions(resources=embedded_resources(), executor=configured_executor()),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return rollout_definitions()
