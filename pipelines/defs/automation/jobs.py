"""Jobs that automation launches: the retrain of each task (schedule, drift sensor, Kubernetes)."""

import dagster as dg

from pipelines.lib.task import TaskSpec
from pipelines.tasks import TASKS


def retrain_job(spec: TaskSpec):
    """Both model families, the evaluation and its gate, the champion and the Bento built from it.

    Tagged so that the instance's run queue runs at most one retrain of a task at a time: two
    concurrent retrains could otherwise both pass the gate against the same champion.
    """
    prefix = list(spec.asset_prefix)
    models = [f"{'lgbm' if f == 'lightgbm' else f}_model" for f in spec.families]
    keys = [dg.AssetKey([*prefix, name]) for name in (*models, "model_evaluation", "champion")]
    return dg.define_asset_job(
        name=f"{spec.name}_retrain",
        selection=dg.AssetSelection.assets(*keys, dg.AssetKey("bento")),
        tags={"flightline/retrain": spec.name},
        description=f"Retrain, evaluate, gate, promote and package task {spec.name}",
    )


defs = dg.Definitions(jobs=[retrain_job(spec) for spec in TASKS])
