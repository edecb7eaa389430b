"""The training set of a task: its labelled examples joined point-in-time to their features
through the versioned FeatureService, plus the features computed from the example itself (the
same task code serving runs on a request)."""

from typing import TYPE_CHECKING

import dagster as dg

from pipelines.platform.components.definition import Task
from pipelines.platform.frame_type import DataFrame
from pipelines.platform.lib.feature_store import historical_features
from pipelines.platform.lib.labels import LABEL_KNOWN_AT
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.plots import training_set_summary
from pipelines.platform.metadata import add_run_metadata, metric_table, picture
from pipelines.platform.partitions import ranged_backfill
from pipelines.platform.resources import FeastResource, MlflowResource

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py). Asset
# signatures name frame_type.DataFrame, the Dagster type of pd.DataFrame without pandas.
if TYPE_CHECKING:
    import pandas as pd

EVENT_TIMESTAMP = "event_timestamp"


def prediction_entities(
    task: Task, examples: "pd.DataFrame", lead_minutes: int
) -> "tuple[pd.DataFrame, pd.DataFrame]":
    """Examples -> (normalized rows, the frame Feast joins on: the task's keys, the example id and
    the prediction time by the task's rule)."""
    ex = task.definition.examples
    rows = task.domain.request_frame(examples)
    entities = task.domain.entity_keys(rows)
    entities[ex.id_column] = examples[ex.id_column].to_numpy()
    entities[EVENT_TIMESTAMP] = task.spec.prediction_time(rows[ex.timestamp], lead_minutes).astype(
        "datetime64[us, UTC]"
    )
    return rows, entities


def build_training_rows(
    task: Task, examples: "pd.DataFrame", store, lead_minutes: int, feature_service: str
) -> "tuple[pd.DataFrame, list[str]]":
    """Labelled examples -> training rows (features known at each prediction time, label,
    timestamp, partition); also returns the columns that came from the feature store."""
    import pandas as pd

    ex = task.definition.examples
    labelled = examples.loc[examples[ex.label].notna()].reset_index(drop=True)
    rows, entities = prediction_entities(task, labelled, lead_minutes)
    joined = historical_features(store, entities, feature_service)
    request = task.domain.request_features(rows).reset_index(drop=True)
    known = [ex.label_known_at] if ex.label_known_at else []
    table = pd.concat(
        [joined, request, labelled[[ex.timestamp, ex.label, *known, PARTITION_COLUMN]]], axis=1
    )
    table = table.loc[:, ~table.columns.duplicated(keep="first")]
    if ex.label_known_at and ex.label_known_at != LABEL_KNOWN_AT:
        table = table.rename(columns={ex.label_known_at: LABEL_KNOWN_AT})
    table[ex.label] = table[ex.label].astype("int64")
    stored = [c for c in joined.columns if c not in entities.columns]
    return table, stored


def _summary_picture(
    context: dg.AssetExecutionContext,
    chart: bytes,
    table: "pd.DataFrame",
    positive_rate: float,
    mlflow: MlflowResource,
):
    """The summary chart, logged to a run of the task's data experiment so that the asset page
    shows it inline from the MLflow UI."""
    registry = mlflow.registry()
    days = table[PARTITION_COLUMN].astype(str)
    _, run_id = registry.log_report(
        f"{context.asset_key.path[0]}-data",
        f"{context.asset_key.to_user_string().replace('/', '-')}-{days.min()}..{days.max()}",
        {"rows": len(table), "positive_rate": positive_rate},
        {
            "dagster.run_id": context.run.run_id,
            "dagster.asset": context.asset_key.to_user_string(),
        },
        pictures={"training_set_summary.png": chart},
    )
    return picture(
        chart, "training set summary", mlflow.artifact_url(run_id, "training_set_summary.png")
    )


def training_defs(task: Task) -> dg.Definitions:
    ex = task.definition.examples
    service = task.definition.features.feature_service

    class TrainingSetConfig(dg.Config):
        """How training rows are cut; editable in the Launchpad."""

        lead_minutes: int = ex.lead_minutes  # the prediction is made this long before the timestamp
        feature_service: str = service

    @dg.asset(
        key=task.key("training_set"),
        ins={"examples": dg.AssetIn(task.key(ex.table))},
        partitions_def=task.partitions_def,
        backfill_policy=ranged_backfill,
        group_name=task.group("training"),
        kinds={"pandas", "feast"},
        code_version="1",
        tags=task.tags,
        deps=[task.key("feast_definitions")]
        + [task.key(t.name) for t in task.definition.feature_tables if t.feast_source],
        description=f"Labelled {ex.table} rows (unlabelled ones are left out) with the features "
        "known at prediction time, retrieved through the versioned FeatureService",
    )
    def training_set(
        context: dg.AssetExecutionContext,
        config: TrainingSetConfig,
        examples: DataFrame,
        feast: FeastResource,
        mlflow: MlflowResource,
    ) -> DataFrame:
        table, stored = build_training_rows(
            task, examples, feast.store(), config.lead_minutes, config.feature_service
        )
        coverage = table[stored].notna().mean().sort_values()
        positive_rate = float(table[ex.label].mean()) if len(table) else float("nan")
        context.add_output_metadata(
            {
                "excluded_unlabelled": int(len(examples) - len(table)),
                "positive_rate": positive_rate,
                "feature_service": config.feature_service,
                "lead_minutes": config.lead_minutes,
            }
        )
        coverage_table = metric_table(
            coverage.rename("non_null_share").to_frame(), digits=3, index="feature"
        )
        add_run_metadata(context, {"feature_coverage": coverage_table})
        if len(table):
            chart = training_set_summary(table, stored, PARTITION_COLUMN, ex.label)
            add_run_metadata(
                context,
                {"summary_chart": _summary_picture(context, chart, table, positive_rate, mlflow)},
            )
        return table

    return dg.Definitions(assets=[training_set])
