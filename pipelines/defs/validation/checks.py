"""Blocking data-quality checks beside each raw asset, run with Great Expectations.

A failed check stops everything downstream of that asset in the run, and the landed file stays
where it is (and in the archive), so a corrected file can be re-landed and re-materialized.
"""

from collections.abc import Sequence

import dagster as dg
import pandas as pd

from pipelines.defs.ingestion.assets import raw_flights, raw_weather
from pipelines.platform.lib import validation
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.partitions import daily_partitions, partition_keys
from pipelines.platform.resources import LakeResource

CHECK_DESCRIPTIONS = {
    "schema": "Expected columns are present with the expected types",
    "keys_not_null": "Key columns have no nulls",
    "values_in_range": "Values are plausible: valid clock times, positive distances, delays within a day",
    "unique_rows": "No duplicated rows for the same key",
    "on_partition_day": "Every row belongs to its partition's day",
    "row_count": "Row count is not anomalously low against the trailing days",
}


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def _check_result(
    asset: dg.AssetsDefinition, outcome: validation.CheckOutcome
) -> dg.AssetCheckResult:
    metadata = {"expectations_evaluated": outcome.evaluated, "summary": outcome.describe()}
    if not outcome.passed:
        metadata["failed_rows"] = outcome.failed_rows
        metadata["failures"] = dg.MetadataValue.json(_json_safe(outcome.failures))
    return dg.AssetCheckResult(
        asset_key=asset.key,
        check_name=f"{asset.key.path[-1]}_{outcome.name}",
        passed=outcome.passed,
        metadata=metadata,
        description=outcome.describe(),
    )


def _trailing_counts(
    lake: LakeResource, table: str, days: Sequence[str], trailing_days: int
) -> dict[str, int]:
    """Row counts of the days before the run's first day that are already in the lake."""
    first = pd.Timestamp(min(days))
    before = [
        (first - pd.Timedelta(days=i)).strftime("%Y-%m-%d") for i in range(trailing_days, 0, -1)
    ]
    return {day: lake.lake.row_count(table, day) for day in before if lake.lake.exists(table, day)}


def raw_table_checks(
    asset: dg.AssetsDefinition, contract: validation.TableContract
) -> dg.AssetChecksDefinition:
    name = asset.key.path[-1]
    specs = [
        dg.AssetCheckSpec(
            f"{name}_{check}",
            asset=asset,
            blocking=True,
            description=CHECK_DESCRIPTIONS[check],
            partitions_def=daily_partitions,
        )
        for check in validation.CHECKS
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"validate_{name}",
        ins={"raw": dg.AssetIn(asset.key)},
        compute_kind="great_expectations",
    )
    def _checks(context: dg.AssetCheckExecutionContext, raw: pd.DataFrame, lake: LakeResource):
        days = partition_keys(context)
        outcomes = validation.validate(raw, contract, days)
        counts = raw.groupby(PARTITION_COLUMN).size().reindex(days, fill_value=0).to_dict()
        rule = validation.RowCountRule()
        outcomes["row_count"] = validation.row_count_outcome(
            counts, _trailing_counts(lake, name, days, rule.trailing_days), rule
        )
        for check in validation.CHECKS:
            yield _check_result(asset, outcomes[check])

    return _checks


raw_flights_checks = raw_table_checks(raw_flights, validation.FLIGHTS)
raw_weather_checks = raw_table_checks(raw_weather, validation.WEATHER)
