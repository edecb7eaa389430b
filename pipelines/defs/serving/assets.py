"""Packaging and serving: the champion as a Bento, and the log of what the service answered."""

import dagster as dg
import pandas as pd

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.packaging import (
    bento_size_bytes,
    build_bento,
    import_champion,
    latest_bento_for,
    write_latest,
)
from pipelines.platform.lib.prediction_log import read_day
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.lib.skew import feature_skew
from pipelines.platform.partitions import daily_partitions, partition_keys, single_run_backfill
from pipelines.platform.resources import BentoResource, FeastResource, LakeResource, MlflowResource
from pipelines.tasks import TASKS
from pipelines.tasks.flight_delay.flights import day_start_utc

SPEC = TASKS[0]


@dg.asset(
    deps=[dg.AssetKey("champion")],
    group_name="serving",
    kinds={"bentoml"},
    code_version="1",
)
def bento(context: dg.AssetExecutionContext, mlflow: MlflowResource, bento: BentoResource) -> dict:
    """The current champion imported into BentoML's store and built into a Bento with its exact
    model tag pinned; an unchanged champion reuses the Bento already built for it."""
    from pathlib import Path

    bento.check_home()
    registry = mlflow.registry()
    registry.check_reachable()
    model, imported = import_champion(registry, SPEC.name)
    existing = latest_bento_for(str(model.tag))
    built = existing or build_bento(
        str(model.tag), {"task": SPEC.name, "mlflow_version": model.info.labels["mlflow_version"]}
    )
    write_latest(Path(bento.latest_pointer), built, model)
    version = model.info.labels["mlflow_version"]
    context.add_output_metadata(
        {
            "bento_tag": str(built.tag),
            "bento_model_tag": str(model.tag),
            "mlflow_model_version": f"{SPEC.name} v{version}",
            "mlflow_model": dg.MetadataValue.url(mlflow.model_version_url(SPEC.name, version)),
            "model_family": model.info.labels.get("model_family", "?"),
            "bento_size_bytes": bento_size_bytes(built),
            "rebuilt": existing is None,
            "model_imported": imported,
            "serve": "make serve",
        }
    )
    return {"bento": str(built.tag), "model": str(model.tag), "mlflow_version": version}


SKEW_SAMPLE = 200


@dg.asset_check(
    asset=bento,
    name="bento_feature_skew",
    blocking=True,
    description="For recent flights, the online path's feature vector equals historical retrieval's",
)
def bento_feature_skew(lake: LakeResource, feast: FeastResource) -> dg.AssetCheckResult:
    days = lake.lake.partitions("flight_timeline")
    if not days:
        return dg.AssetCheckResult(
            passed=False, description="no flight_timeline partition to sample"
        )
    flights = lake.lake.read("flight_timeline", days[-1])
    flights = flights.sample(min(SKEW_SAMPLE, len(flights)), random_state=0)
    # The online store's clock: the end of the last materialized day.
    as_of = day_start_utc(pd.Series([days[-1]])).iloc[0] + pd.Timedelta(days=1)
    differing, compared = feature_skew(feast.store(), SPEC, flights, as_of)
    return dg.AssetCheckResult(
        passed=not differing,
        description=(
            f"{compared} flights as of {as_of}: online and offline vectors agree"
            if not differing
            else f"features differ between online and offline: {sorted(differing)}"
        ),
        metadata={
            "flights_compared": compared,
            "differing_features": dg.MetadataValue.json(differing),
        },
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    group_name="serving",
    kinds={"pandas"},
    code_version="1",
)
def prediction_log(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """Every prediction the service answered for flights scheduled that day: request, features
    used, model version, latency. Monitoring reads it."""
    root = DataPaths.from_env().prediction_log
    frames, torn = [], 0
    for day in partition_keys(context) or [context.partition_key]:
        frame, skipped = read_day(root, day)
        torn += skipped
        frames.append(frame.assign(**{PARTITION_COLUMN: day}) if len(frame) else frame)
    table = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else pd.DataFrame({PARTITION_COLUMN: pd.Series(dtype=object)})
    )
    meta = {"torn_lines_skipped": torn, "predictions": len(table)}
    if len(table):
        meta |= {
            "model_versions": dg.MetadataValue.json(
                table["model_version"].value_counts().to_dict()
            ),
            "latency_ms_p50": float(table["latency_ms"].median()),
            "latency_ms_p99": float(table["latency_ms"].quantile(0.99)),
            "mean_delay_probability": float(table["delay_probability"].mean()),
            "unknown_tailnum_share": float(table["unknown_tailnum"].mean()),
        }
    context.add_output_metadata(meta)
    return table
