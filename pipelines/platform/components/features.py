"""Feature tables of a task (its own functions, stamped with when each value became known),
their registration in Feast and the online store."""

from typing import TYPE_CHECKING

import dagster as dg

from pipelines.platform.components.definition import FeatureTableModel, Task, accepts
from pipelines.platform.components.guard import assert_partitions_validated
from pipelines.platform.frame_type import DataFrame
from pipelines.platform.lib.feature_store import apply_definitions, materialize_up_to
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.partitions import partition_keys, ranged_backfill
from pipelines.platform.resources import FeastResource

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py). Asset
# signatures name frame_type.DataFrame, the Dagster type of pd.DataFrame without pandas.
if TYPE_CHECKING:
    import pandas as pd

EVENT_TIMESTAMP = "event_timestamp"


def _summary(frame: "pd.DataFrame", entity: str | None) -> dict:
    meta: dict = {"dagster/row_count": len(frame)} if PARTITION_COLUMN not in frame else {}
    if entity and entity in frame:
        meta["entities"] = int(frame[entity].nunique())
    if EVENT_TIMESTAMP in frame and len(frame):
        meta |= {
            "first_event": str(frame[EVENT_TIMESTAMP].min()),
            "last_event": str(frame[EVENT_TIMESTAMP].max()),
        }
    return meta


def _feature_asset(
    task: Task, table: FeatureTableModel, partitioned: set[str]
) -> dg.AssetsDefinition:
    fn = task.function(table)
    inputs = table.table_inputs()
    is_partitioned = any(i.table in partitioned for i in inputs)
    ins = {}
    for source in inputs:
        if source.window:
            ins[source.table] = dg.AssetIn(
                task.key(source.table),
                partition_mapping=dg.TimeWindowPartitionMapping(
                    start_offset=-source.window,
                    end_offset=0,
                    allow_nonexistent_upstream_partitions=True,
                ),
                metadata={"allow_missing_partitions": True},
            )
        else:
            ins[source.table] = dg.AssetIn(task.key(source.table))
    raw_inputs = [
        task.key(i.table) for i in inputs if i.table.removeprefix("raw_") in task.contracts
    ]
    windowed = [i.table for i in inputs if i.window]

    @dg.asset(
        key=task.key(table.name),
        ins=ins,
        partitions_def=task.partitions_def if is_partitioned else None,
        backfill_policy=ranged_backfill if is_partitioned else None,
        group_name=task.group("features"),
        kinds={"pandas", "feast"} if table.feast_source else {"pandas"},
        code_version="1",
        tags=task.tags,
        description=table.description or None,
    )
    def _table(context: dg.AssetExecutionContext, **frames: DataFrame) -> DataFrame:
        keys = partition_keys(context)
        # Raw partitions whose validation failed (in this run or an earlier one) never feed it.
        for key in raw_inputs:
            assert_partitions_validated(context, key, keys)
        for name in windowed:
            present = set(frames[name][PARTITION_COLUMN].unique()) if len(frames[name]) else set()
            if not set(keys) <= present:
                raise dg.Failure(
                    f"{name} is missing for {sorted(set(keys) - present)[:5]}: materialize it first"
                )
            context.log.info(
                f"{name}: the window rests on {len(present - set(keys))} earlier partition(s)"
            )
        extra = {"partition_keys": keys} if accepts(fn, "partition_keys") else {}
        result = fn(*(frames[i.table] for i in inputs), **extra)
        context.add_output_metadata(_summary(result, table.entity))
        return result

    return _table


def _partitioned_tables(task: Task) -> set[str]:
    partitioned = {f"raw_{t.name}" for t in task.definition.landing_tables}
    for table in task.definition.feature_tables:
        if any(i.table in partitioned for i in table.table_inputs()):
            partitioned.add(table.name)
    return partitioned


def features_defs(task: Task) -> dg.Definitions:
    partitioned = _partitioned_tables(task)
    tables = [_feature_asset(task, t, partitioned) for t in task.definition.feature_tables]
    feast_tables = [task.key(t.name) for t in task.definition.feature_tables if t.feast_source]
    unpartitioned = [
        task.key(t.name)
        for t in task.definition.feature_tables
        if t.feast_source and t.name not in partitioned
    ]

    @dg.asset(
        key=task.key("feast_definitions"),
        group_name=task.group("features"),
        kinds={"feast"},
        code_version="1",
        tags=task.tags,
        deps=unpartitioned,
        description=f"Entities, feature views and the versioned FeatureService of task {task.name} "
        "registered in Feast's registry",
    )
    def feast_definitions(
        context: dg.AssetExecutionContext, feast: FeastResource
    ) -> dg.MaterializeResult:
        registered = apply_definitions(
            feast.store(), task.feast_objects(feast.lake_root), task.name
        )
        return dg.MaterializeResult(
            metadata={
                **{kind: dg.MetadataValue.json(names) for kind, names in registered.items()},
                "registry": feast.registry_path,
            }
        )

    @dg.asset(
        key=task.key("online_features"),
        partitions_def=task.partitions_def,
        backfill_policy=ranged_backfill,
        group_name=task.group("features"),
        kinds={"feast", "sqlite"},
        code_version="1",
        tags=task.tags,
        deps=[feast_definitions.key, *feast_tables],
        description="Latest feature values in the online store, materialized incrementally up "
        "to the end of the run's last partition",
    )
    def online_features(
        context: dg.AssetExecutionContext, feast: FeastResource
    ) -> dg.MaterializeResult:
        end = task.partition_end(max(partition_keys(context)))
        result = materialize_up_to(feast.store(), end, task.feature_view_names())
        return dg.MaterializeResult(
            metadata={
                "materialized_up_to": str(end),
                "views_materialized": dg.MetadataValue.json(result.materialized_views),
                "views_already_fresher": dg.MetadataValue.json(result.skipped_views),
                "seconds": round(result.seconds, 2),
                "seconds_reading_offline": round(result.read_seconds, 2),
                "seconds_writing_online": round(result.write_seconds, 2),
                "online_rows_written": result.online_rows,
                "writer_per_view": dg.MetadataValue.json(result.writers or {}),
                "online_store": feast.location.online_store,
            }
        )

    return dg.Definitions(assets=[*tables, feast_definitions, online_features])
