"""The code location of the tuning-in-pods test: the tests' toy task (tests/tasks/toy_sensor),
its LightGBM search spread over worker pods. Code of the image, as a task's defs.yaml would be:
every pod of the run loads it (`-m tests.infra.tuned_location`)."""

from pathlib import Path

import dagster as dg

from pipelines.platform.components.definition import resolve
from pipelines.platform.components.task import build_task_defs, load_definition
from pipelines.platform.executors import configured_executor
from pipelines.platform.resources_config import embedded_resources

TOY_DEFS = Path(__file__).resolve().parents[1] / "tasks" / "toy_sensor" / "defs.yaml"
TASK = "toy_sensor"
# Enough trials that the step pod and its worker pod each run several; no pruning, so that the
# trials a pod begins end COMPLETE (the test counts pods among complete trials).
SEARCH = {
    "space": {
        "num_leaves": {"low": 3, "high": 15},
        "learning_rate": {"low": 0.03, "high": 0.3, "log": True},
    },
    "n_trials": 10,
    "startup_trials": 2,
    "prune": False,
    "workers": 2,
}


def tuned_toy():
    definition = load_definition(TOY_DEFS)
    models = definition.models.model_copy(update={"tuning": {"lightgbm": SEARCH}})
    return resolve(definition.model_copy(update={"models": models}))


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        build_task_defs(tuned_toy()),
        dg.Definitions(resources=embedded_resources(), executor=configured_executor()),
    )
