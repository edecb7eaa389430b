"""Jobs that automation launches: the daily partitions of landed days, and each task's retrain."""

import dagster as dg

from pipelines.platform.lib.task import TaskSpec
from pipelines.tasks import TASKS

RETRAIN_TAG = "flightline/retrain"  # the instance's run queue admits one run per value at a time
DAILY_JOB = "daily_partitions"


def _model_keys(spec: TaskSpec) -> list[dg.AssetKey]:
    prefix = list(spec.asset_prefix)
    models = [f"{'lgbm' if f == 'lightgbm' else f}_model" for f in spec.families]
    return [dg.AssetKey([*prefix, name]) for name in (*models, "model_evaluation")]


def retrain_job(spec: TaskSpec):
    """Both model families, the evaluation and its gate, the champion, the Bento built from it
    and the drift reference of the new champion.

    Tagged so that the instance's run queue runs at most one retrain of a task at a time: two
    concurrent retrains could otherwise both pass the gate against the same champion.
    """
    prefix = list(spec.asset_prefix)
    return dg.define_asset_job(
        name=f"{spec.name}_retrain",
        selection=dg.AssetSelection.assets(
            *_model_keys(spec),
            dg.AssetKey([*prefix, "champion"]),
            dg.AssetKey("bento"),
            dg.AssetKey("drift_reference"),
        ),
        tags={RETRAIN_TAG: spec.name},
        description=f"Retrain, evaluate, gate, promote and package task {spec.name}",
    )


def retrain_run_config(spec: TaskSpec, until: str) -> dict:
    """Models and evaluation read the same days: everything labelled up to `until`."""
    return {
        "ops": {
            key.to_python_identifier(): {"config": {"until": until}} for key in _model_keys(spec)
        }
    }


# Assets outside the days: reference tables (built once), and what retrains build. A test checks
# that the daily job holds exactly the graph's daily-partitioned assets.
NOT_DAILY = dg.AssetSelection.assets(
    "planes", "airports", "airlines", "plane_features", "feast_definitions", "bento"
) | dg.AssetSelection.assets("drift_reference")

# Every daily-partitioned asset, landing to monitoring, with their checks: one day (or one range)
# of landed files becomes one run.
DAILY_SELECTION = (
    dg.AssetSelection.all().materializable()
    - NOT_DAILY
    - dg.AssetSelection.groups("evaluation")
    - dg.AssetSelection.assets(*(k for spec in TASKS for k in _model_keys(spec)))
)
daily_job = dg.define_asset_job(
    name=DAILY_JOB,
    selection=DAILY_SELECTION,
    description="Landed days: ingestion, validation, features, training rows, drift, live performance",
)

RETRAIN_JOBS = {spec.name: retrain_job(spec) for spec in TASKS}

defs = dg.Definitions(jobs=[daily_job, *RETRAIN_JOBS.values()])
