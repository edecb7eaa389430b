"""The code location of the tuning-in-pods test: flight delay as pipelines/defs declares it, plus
a LightGBM search spread over worker pods. Code of the image, as a task's defs.yaml would be:
every pod of the run loads it (`-m tests.infra.tuned_location`). The Kubernetes session's
fixtures have already built flight delay's training set into the cluster's services."""

from pathlib import Path

import dagster as dg

from pipelines.platform.components.definition import resolve
from pipelines.platform.components.task import build_task_defs, load_definition
from pipelines.platform.executors import configured_executor
from pipelines.platform.resources_config import embedded_resources

DEFS = Path(__file__).resolve().parents[2] / "pipelines" / "defs" / "flight_delay" / "defs.yaml"
TASK = "flight_delay"
# Enough trials that the step pod and its worker pod each run several; no pruning, so that the
# trials a pod begins end COMPLETE (the test counts pods among complete trials).
SEARCH = {
    "space": {
        "num_leaves": {"low": 7, "high": 63, "log": True},
        "learning_rate": {"low": 0.03, "high": 0.3, "log": True},
    },
    "n_trials": 10,
    "startup_trials": 3,
    "prune": False,
    "workers": 2,
}


def tuned_task():
    definition = load_definition(DEFS)
    models = definition.models.model_copy(update={"tuning": {"lightgbm": SEARCH}})
    return resolve(definition.model_copy(update={"models": models}))


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        build_task_defs(tuned_task()),
        dg.Definitions(resources=embedded_resources(), executor=configured_executor()),
    )
