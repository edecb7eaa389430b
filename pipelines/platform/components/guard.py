"""Consumers of raw data refuse partitions whose validation failed, even in a later run.

Blocking checks stop downstream steps of the *same* run; this guard covers the rest: a feature
asset materialized on its own (from the UI, a backfill) looks up, for each raw day it consumes,
the checks evaluated against that day's latest materialization, and fails, naming the day and
the check, if any failed or never ran.

A ranged run evaluates each check once for all its days (Dagster records such an evaluation
without a partition), so evaluations are matched to days through the run of the materialization
they targeted.
"""

from collections.abc import Sequence

import dagster as dg

from pipelines.platform.compat import check_execution_statuses
from pipelines.platform.lib.validation import CHECKS

AssetCheckExecutionRecordStatus = check_execution_statuses()

HISTORY_LIMIT = 5000


def _latest_materialization_runs(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, days: Sequence[str]
) -> dict[str, str]:
    runs: dict[str, str] = {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(days)), limit=HISTORY_LIMIT
    ).records
    for record in records:  # newest first
        runs.setdefault(record.partition_key, record.run_id)
    return runs


def _check_status_by_target_run(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey
) -> dict[tuple[str, str | None], AssetCheckExecutionRecordStatus]:
    """(run of the targeted materialization, partition or None) -> status of the newest evaluation."""
    status = {}
    for record in instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=HISTORY_LIMIT
    ):
        evaluation = (
            record.event.dagster_event.event_specific_data
            if record.event and record.event.dagster_event
            else None
        )
        target = getattr(evaluation, "target_materialization_data", None)
        if target is None or record.status == AssetCheckExecutionRecordStatus.PLANNED:
            continue
        status.setdefault((target.run_id, evaluation.partition), record.status)
    return status


def assert_partitions_validated(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, days: Sequence[str]
) -> None:
    instance = context.instance
    runs = _latest_materialization_runs(instance, asset_key, days)
    problems = []
    for check in CHECKS:
        check_key = dg.AssetCheckKey(asset_key, f"{asset_key.path[-1]}_{check}")
        status = _check_status_by_target_run(instance, check_key)
        for day in days:
            run = runs.get(day)
            outcome = status.get((run, day), status.get((run, None))) if run else None
            if run is None:
                problems.append(f"{day}: {asset_key.to_user_string()} has not been materialized")
            elif outcome is None:
                problems.append(
                    f"{day}: {check_key.name} has not run on the latest {asset_key.to_user_string()}"
                )
            elif outcome == AssetCheckExecutionRecordStatus.FAILED:
                problems.append(f"{day}: {check_key.name} failed")
    if problems:
        shown = (
            problems
            if len(problems) <= 10
            else [*problems[:10], f"... and {len(problems) - 10} more"]
        )
        raise dg.Failure(
            description=f"{asset_key.to_user_string()} is not validated for every day of this run; "
            "re-land a corrected file and re-materialize it:\n" + "\n".join(shown),
            metadata={"unvalidated": dg.MetadataValue.json(problems)},
        )
