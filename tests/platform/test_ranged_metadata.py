"""A ranged run's metadata stays small: Dagster copies a ranged run's metadata into every
partition's materialization, so a year's per-day list would be stored 364 times per asset, and
what describes the whole run (its column schema, its landed files) goes on its newest partition
only, the one the asset page shows."""

import dagster as dg
import pandas as pd

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.metadata import add_run_metadata
from pipelines.platform.resources import LakeIOManager, ranged_row_counts


def test_a_month_lists_each_day_and_a_year_summarizes_them():
    month = {f"2013-01-{d:02d}": 900 + d for d in range(1, 32)}
    assert ranged_row_counts(month) == {
        "rows_in_run": sum(month.values()),
        "rows_by_day": dg.MetadataValue.json(month),
    }
    year = {str(day.date()): 900 for day in pd.date_range("2013-01-01", periods=364)}
    year["2013-07-04"], year["2013-12-25"] = 12, 0
    meta = ranged_row_counts(year)
    assert meta["rows_in_run"] == sum(year.values()) and meta["days"] == 364
    assert meta["rows_per_day"].data == {"min": 0, "median": 900, "max": 900}
    assert list(meta["smallest_days"].data) == ["2013-12-25", "2013-07-04", *sorted(year)[:3]]
    assert "rows_by_day" not in meta


DAYS = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-03-01")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def counts(context: dg.AssetExecutionContext) -> pd.DataFrame:
    keys = context.partition_keys
    add_run_metadata(context, {"built_from": f"{len(keys)} days"})
    return pd.DataFrame({"n": range(len(keys)), PARTITION_COLUMN: keys})


def _materialize_counts(tmp_path, **which) -> list:
    """`counts` through the lake's IO manager; its materialization events."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [counts],
            instance=instance,
            resources={"io_manager": LakeIOManager(lake_root=str(tmp_path))},
            **which,
        )
        return result.asset_materializations_for_node("counts")


def test_a_ranged_materialization_carries_the_summary(tmp_path):
    events = _materialize_counts(
        tmp_path,
        tags={
            "dagster/asset_partition_range_start": "2013-01-01",
            "dagster/asset_partition_range_end": "2013-02-09",
        },
    )
    assert len(events) == 40
    assert all(e.metadata["days"].value == 40 for e in events)
    assert all("rows_by_day" not in e.metadata for e in events)
    # The run's column schema, its path and what the asset adds about the run: on the newest
    # partition only.
    carrying = [e.partition for e in events if "dagster/column_schema" in e.metadata]
    assert carrying == ["2013-02-09"]
    [newest] = [e for e in events if e.partition == "2013-02-09"]
    assert [c.name for c in newest.metadata["dagster/column_schema"].schema.columns] == [
        "n",
        PARTITION_COLUMN,
    ]
    assert newest.metadata["path"].value.endswith("counts/*.parquet")
    assert newest.metadata["built_from"].value == "40 days"
    assert all("built_from" not in e.metadata for e in events if e.partition != "2013-02-09")


def test_a_one_partition_run_carries_the_run_metadata_itself(tmp_path):
    [event] = _materialize_counts(tmp_path, partition_key="2013-01-05")
    assert event.metadata["dagster/row_count"].value == 1
    assert "dagster/column_schema" in event.metadata and "path" in event.metadata
    assert event.metadata["built_from"].value == "1 days"
