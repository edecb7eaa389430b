"""The training set: labelled flights joined point-in-time to their features through Feast."""

import dagster as dg
import pandas as pd

from pipelines.defs.features.assets import FEATURE_TABLES, feast_definitions
from pipelines.platform.lib.feature_store import historical_features
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.plots import markdown_image, training_set_summary
from pipelines.platform.partitions import daily_partitions, single_run_backfill
from pipelines.platform.resources import FeastResource
from pipelines.tasks.flight_delay.features import entity_rows, request_features
from pipelines.tasks.flight_delay.flights import PredictionTiming

FEATURE_SERVICE = "flight_delay_v1"


class TrainingSetConfig(dg.Config):
    """How training rows are cut; editable in the Launchpad."""

    lead_minutes: int = 60  # the prediction is made this long before scheduled departure
    feature_service: str = FEATURE_SERVICE


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    group_name="training",
    kinds={"pandas", "feast"},
    code_version="1",
    deps=[feast_definitions, *FEATURE_TABLES],
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    flight_timeline: pd.DataFrame,
    feast: FeastResource,
) -> pd.DataFrame:
    """Labelled flights (cancelled and diverted ones have no label and are left out) with the
    features known at prediction time, retrieved through the versioned FeatureService."""
    timing = PredictionTiming(config.lead_minutes)
    labelled = flight_timeline.loc[flight_timeline["label"].notna()].reset_index(drop=True)
    entities = entity_rows(labelled, timing)
    joined = historical_features(feast.store(), entities, config.feature_service)
    request = request_features(labelled).drop(columns=["carrier", "origin"])
    table = pd.concat(
        [
            joined,
            request.reset_index(drop=True),
            labelled[["sched_dep_ts", "label", PARTITION_COLUMN]].reset_index(drop=True),
        ],
        axis=1,
    )
    table["label"] = table["label"].astype("int64")
    feature_columns = [c for c in joined.columns if c not in entities.columns]
    coverage = table[feature_columns].notna().mean().sort_values()
    context.add_output_metadata(
        {
            "rows": len(table),
            "excluded_unlabelled": int(len(flight_timeline) - len(labelled)),
            "delay_rate": float(table["label"].mean()) if len(table) else float("nan"),
            "feature_service": config.feature_service,
            "lead_minutes": config.lead_minutes,
            "feature_coverage": dg.MetadataValue.md(
                coverage.rename("non-null share").to_frame().to_markdown()
            ),
        }
    )
    if len(table):
        chart = training_set_summary(table, feature_columns, PARTITION_COLUMN)
        context.add_output_metadata(
            {"summary_chart": dg.MetadataValue.md(markdown_image(chart, "training set summary"))}
        )
    return table
