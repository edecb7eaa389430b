"""Sensors: landed files become partition runs and backfills; monitoring evidence becomes retrains."""

import time

import dagster as dg
import pandas as pd
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from pipelines.defs.automation.jobs import (
    DAILY_JOB,
    DAILY_SELECTION,
    RETRAIN_JOBS,
    RETRAIN_TAG,
    retrain_run_config,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.landing_watch import dump_state, load_state, scan_landing
from pipelines.platform.lib.retrain_policy import DriftCursor, decide
from pipelines.platform.resources import LakeResource, LandingZone, RetrainPolicy
from pipelines.tasks import TASKS

SPEC = TASKS[0]
TICK_SECONDS = 15


def _daily_asset_keys(context: dg.SensorEvaluationContext) -> set[dg.AssetKey]:
    return DAILY_SELECTION.resolve(context.repository_def.asset_graph)


# Targets the daily assets by selection (not the job): only such a sensor may request backfills.
@dg.sensor(
    asset_selection=DAILY_SELECTION,
    minimum_interval_seconds=TICK_SECONDS,
    description="New day files become partition runs (a gap of several days one backfill); a "
    "replaced file re-runs its day",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    previous = load_state(context.cursor)
    changes = scan_landing(landing.landing_dir, previous)
    for day, missing in changes.incomplete_days.items():
        context.log.info(f"{day}: waiting for {', '.join(missing)}")
    if changes.nothing_new:
        waiting = f"; waiting for {len(changes.incomplete_days)} incomplete day(s)"
        return dg.SkipReason(
            "no new or replaced day files" + (waiting if changes.incomplete_days else "")
        )
    requests: list[dg.RunRequest] = []
    for start, end in changes.new_ranges():
        if start == end:
            requests.append(
                dg.RunRequest(
                    partition_key=start,
                    run_key=f"{start}:{changes.fingerprint(start)}",
                    tags={"flightline/trigger": "landed"},
                )
            )
            continue
        # A gap of several days: one backfill, which the backfill daemon runs as one ranged run
        # (every daily asset has a single-run backfill policy).
        days = pd.date_range(start, end).strftime("%Y-%m-%d")
        subset = AssetGraphSubset.from_asset_partition_set(
            {AssetKeyPartitionKey(key, day) for key in _daily_asset_keys(context) for day in days},
            context.repository_def.asset_graph,
        )
        requests.append(
            dg.RunRequest.for_asset_graph_subset(
                subset, tags={"flightline/trigger": "landed", "flightline/days": f"{start}..{end}"}
            )
        )
    for day in changes.replaced_days:
        context.log.info(f"{day}: a replaced file; re-running its partition")
        requests.append(
            dg.RunRequest(
                partition_key=day,
                run_key=f"{day}:{changes.fingerprint(day)}",
                tags={"flightline/trigger": "replaced"},
            )
        )
    return dg.SensorResult(run_requests=requests, cursor=dump_state(changes.state))


def _failed_days(instance: dg.DagsterInstance, since: float) -> list[str]:
    """Daily runs that failed since the last tick, with the checks that failed in them."""
    messages = []
    records = instance.get_run_records(
        dg.RunsFilter(
            job_name=DAILY_JOB,
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=pd.Timestamp(since, unit="s", tz="UTC").to_pydatetime(),
        ),
        limit=100,
    )
    for record in records:
        tags = record.dagster_run.tags
        days = tags.get("dagster/partition") or (
            f"{tags.get('dagster/asset_partition_range_start')}.."
            f"{tags.get('dagster/asset_partition_range_end')}"
        )
        failed_checks = sorted(
            {
                e.dagster_event.event_specific_data.check_name
                for e in instance.all_logs(
                    record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
                )
                if not e.dagster_event.event_specific_data.passed
            }
        )
        why = f"validation failed ({', '.join(failed_checks)})" if failed_checks else "run failed"
        messages.append(f"{days}: {why}: no drift report, no retrain trigger")
    return messages


def _retrain_in_flight(instance: dg.DagsterInstance, job_name: str) -> str | None:
    runs = instance.get_runs(
        dg.RunsFilter(
            job_name=job_name,
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
        ),
        limit=1,
    )
    return runs[0].run_id if runs else None


@dg.sensor(
    jobs=list(RETRAIN_JOBS.values()),
    minimum_interval_seconds=TICK_SECONDS,
    description="Drift or falling live performance of the champion launches a retrain (one run "
    "key per champion and day, with a cooldown); the run's tags say why",
)
def drift_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, retrain_policy: RetrainPolicy
):
    cursor = DriftCursor.parse(context.cursor)
    instance = context.instance
    started = time.time()
    failed = _failed_days(instance, cursor.checked_at)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("drift_report"), after_storage_id=cursor.storage_id or None
        ),
        limit=1000,
        ascending=True,
    ).records
    days = sorted({r.partition_key for r in records if r.partition_key})
    cursor.checked_at = started
    if records:
        cursor.storage_id = records[-1].storage_id
    if not days:
        return dg.SensorResult(
            skip_reason="; ".join(failed) if failed else "no new drift reports",
            cursor=cursor.dump(),
        )
    reports = lake.lake.read_partitions("drift_report", days, allow_missing=True)
    live = lake.lake.read_partitions(
        "live_performance", lake.lake.partitions("live_performance"), allow_missing=True
    )
    decision = decide(days, reports, live, retrain_policy.thresholds(), cursor.last_trigger_day)
    for line in failed + decision.skipped:
        context.log.info(line)
    if decision.trigger_day is None:
        return dg.SensorResult(
            skip_reason="; ".join(failed + decision.skipped[-5:]), cursor=cursor.dump()
        )
    in_flight = _retrain_in_flight(instance, RETRAIN_JOBS[SPEC.name].name)
    if in_flight:
        # Not recorded as triggered: a later report re-evaluates once this retrain is done.
        return dg.SensorResult(
            skip_reason=f"{decision.trigger_day}: {'; '.join(decision.reasons)}, but retrain run "
            f"{in_flight} is already queued or running",
            cursor=cursor.dump(),
        )
    report = reports.set_index(PARTITION_COLUMN).loc[decision.trigger_day]
    champion = str(report["reference_version"])
    cursor.last_trigger_day = decision.trigger_day
    context.log.info(f"retrain: {decision.trigger_day}: {'; '.join(decision.reasons)}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                job_name=RETRAIN_JOBS[SPEC.name].name,
                run_key=f"drift:{SPEC.name}:v{champion}:{decision.trigger_day}",
                run_config=retrain_run_config(SPEC, decision.trigger_day),
                tags={
                    RETRAIN_TAG: SPEC.name,
                    "flightline/trigger": "drift",
                    "flightline/trigger_partition": decision.trigger_day,
                    "flightline/trigger_reason": "; ".join(decision.reasons)[:250],
                    "flightline/champion_version": champion,
                    **{f"flightline/{k}": v for k, v in decision.scores.items()},
                },
            )
        ],
        cursor=cursor.dump(),
    )


defs = dg.Definitions(sensors=[landing_sensor, drift_sensor])
