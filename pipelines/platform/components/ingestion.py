"""Ingestion and validation of a task: one raw asset per landing table (a file per partition in
the task's landing folder) with its blocking Great Expectations checks, and the reference tables
its source ships with."""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from pipelines.platform.compat import check_targets
from pipelines.platform.components.definition import Task
from pipelines.platform.frame_type import DataFrame
from pipelines.platform.lib import validation
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.landing import LandingError, archive_landed_file, read_landed_day
from pipelines.platform.lib.landing_watch import LANDED_SHA256
from pipelines.platform.lib.object_store import under
from pipelines.platform.metadata import add_run_metadata
from pipelines.platform.partitions import partition_keys, ranged_backfill
from pipelines.platform.resources import LakeResource, LandingZone

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py). Asset
# signatures name frame_type.DataFrame, the Dagster type of pd.DataFrame without pandas.
if TYPE_CHECKING:
    import pandas as pd

CHECK_DESCRIPTIONS = {
    "schema": "Expected columns are present with the expected types",
    "keys_not_null": "Key columns have no nulls",
    "values_in_range": "Values are plausible (the contract's ranges and allowed values)",
    "unique_rows": "No duplicated rows for the same key",
    "on_partition_day": "Every row belongs to its partition",
    "row_count": "Row count is not anomalously low against the trailing partitions",
}


def landing_dir(landing: LandingZone, task: Task) -> Path | str:
    """Each task lands its files in a folder (a prefix, on the object store) of its own."""
    return under(landing.landing_dir, task.name)


def _ingest(
    context: dg.AssetExecutionContext, landing: LandingZone, task: Task, table: str
) -> "pd.DataFrame":
    """Read every partition file of the run as it landed; a bad file fails the run with its reason."""
    import pandas as pd

    frames, files, errors, digests = [], [], [], []
    for key in partition_keys(context):
        try:
            landed = read_landed_day(landing_dir(landing, task), table, key)
        except LandingError as exc:
            errors.append(str(exc))
            continue
        archived = archive_landed_file(landed, f"{landing.archive_dir.rstrip('/')}/{task.name}")
        frames.append(landed.frame.assign(**{PARTITION_COLUMN: key}))
        digests.append(landed.sha256)
        files.append(
            {
                "partition": key,
                "file": str(landed.path),
                "rows": len(landed.frame),
                "sha256": landed.sha256[:12],
                "archived_as": str(archived),
            }
        )
    if errors:
        raise dg.Failure(
            description=f"{len(errors)} {table} file(s) cannot be ingested:\n" + "\n".join(errors),
            metadata={"errors": dg.MetadataValue.json(errors)},
        )
    # What was ingested is instance state, whoever launched the run (make run, the UI, a sensor):
    # one observation per partition with the landed content's hash, which the landing sensor
    # compares with the folder (a new or changed file runs; an ingested one never again).
    for entry, digest in zip(files, digests, strict=True):
        context.log_event(
            dg.AssetObservation(
                asset_key=context.asset_key,
                partition=entry["partition"],
                metadata={LANDED_SHA256: digest},
            )
        )
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    shown = files if len(files) <= 31 else [*files[:15], *files[-15:]]
    add_run_metadata(
        context,
        {
            "partitions": len(files),
            "landed_files": dg.MetadataValue.md(pd.DataFrame(shown).to_markdown(index=False)),
            "columns": dg.MetadataValue.json({c: str(t) for c, t in frame.dtypes.items()}),
        },
    )
    return frame


def _raw_asset(task: Task, table: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=task.key(f"raw_{table}"),
        partitions_def=task.partitions_def,
        backfill_policy=ranged_backfill,
        group_name=task.group("ingestion"),
        kinds={"pandas", "parquet"},
        code_version="1",
        tags=task.tags,
        description=description or f"{table} as it landed, one file per partition",
    )
    def _raw(context: dg.AssetExecutionContext, landing: LandingZone) -> DataFrame:
        return _ingest(context, landing, task, table)

    return _raw


def _reference_asset(task: Task, name: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=task.key(name),
        group_name=task.group("ingestion"),
        kinds={"pandas", "parquet"},
        code_version="1",
        tags=task.tags,
        description=f"Reference table {name!r} as the source ships it",
    )
    def _reference(context: dg.AssetExecutionContext) -> DataFrame:
        if task.domain.read_reference is None:
            raise dg.Failure(f"task {task.name} declares reference tables but no read_reference")
        frame = task.domain.read_reference(name).copy()
        context.add_output_metadata(
            {"preview": dg.MetadataValue.md(frame.head(5).to_markdown(index=False))}
        )
        return frame

    return _reference


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


def _evaluation(
    key: dg.AssetKey, outcome: validation.CheckOutcome, partition: str, target
) -> dg.AssetCheckEvaluation:
    """One check's result on one partition: a ranged run records each day's result under its
    day, so that the Checks tab shows passed or failed per partition."""
    metadata = {"expectations_evaluated": outcome.evaluated, "summary": outcome.describe()}
    if not outcome.passed:
        metadata["failed_rows"] = outcome.failed_rows
        metadata["failures"] = dg.MetadataValue.json(_json_safe(outcome.failures))
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=f"{key.path[-1]}_{outcome.name}",
        passed=outcome.passed,
        metadata=metadata,
        target_materialization_data=target,
        description=outcome.describe(),
        blocking=True,
        partition=partition,
    )


def _trailing_counts(
    lake: LakeResource, task: Task, table: str, keys: Sequence[str], trailing: int
) -> dict[str, int]:
    """Row counts of the partitions before the run's first one that are already in the lake."""
    before = task.previous_partitions(min(keys), trailing)
    path = task.table(table)
    return {k: lake.lake.row_count(path, k) for k in before if lake.lake.exists(path, k)}


def raw_table_checks(
    task: Task, asset: dg.AssetsDefinition, contract: validation.TableContract
) -> dg.AssetChecksDefinition:
    name = asset.key.path[-1]
    specs = [
        dg.AssetCheckSpec(
            f"{name}_{check}",
            asset=asset,
            blocking=True,
            description=CHECK_DESCRIPTIONS[check],
            partitions_def=task.partitions_def,
        )
        for check in validation.CHECKS
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{task.name}_validate_{name}",
        ins={"raw": dg.AssetIn(asset.key)},
        compute_kind="great_expectations",
    )
    def _checks(context: dg.AssetCheckExecutionContext, raw: DataFrame, lake: LakeResource):
        keys = partition_keys(context)
        days = validation.by_partition(
            raw, contract, keys, validation.validate(raw, contract, keys)
        )
        counts = raw.groupby(PARTITION_COLUMN).size().reindex(keys, fill_value=0).to_dict()
        rule = validation.RowCountRule()
        row_count = validation.row_count_outcome(
            counts, _trailing_counts(lake, task, name, keys, rule.trailing_days), rule
        )
        layer = context.job_def.asset_layer
        targets = check_targets(context.instance, asset.key, keys)
        for spec in specs:
            if spec.key not in context.selected_asset_check_keys:
                continue
            check = spec.name.removeprefix(f"{name}_")
            for day in keys:
                outcome = (
                    validation.partition_outcome(row_count, day)
                    if check == "row_count"
                    else days[day][check]
                )
                yield _evaluation(asset.key, outcome, day, targets.get(day))
            # The check's output (what blocked steps wait on), with no evaluation of its own.
            yield dg.Output(None, output_name=layer.get_op_output_name(spec.key))

    return _checks


def ingestion_defs(task: Task) -> dg.Definitions:
    raws = {t.name: _raw_asset(task, t.name, t.description) for t in task.definition.landing_tables}
    checks = [raw_table_checks(task, raws[n], task.contracts[n]) for n in raws]
    references = [_reference_asset(task, n) for n in task.definition.reference_tables]
    return dg.Definitions(assets=[*raws.values(), *references], asset_checks=checks)
