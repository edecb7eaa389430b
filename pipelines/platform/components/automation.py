"""Automation of a task: its partitions job (landed files), its retrain job, the landing sensor
turning new files into partition runs and backfills, the drift sensor launching retrains, and
the nightly retrain schedule. Everything is the task's own: one task never launches another's."""

import os
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from pipelines.platform.compat import backfill_subset
from pipelines.platform.components.definition import Task
from pipelines.platform.components.ingestion import landing_dir
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.landing_watch import dump_state, load_state, scan_landing
from pipelines.platform.lib.retrain_policy import DriftCursor, decide
from pipelines.platform.lib.task import TaskSpec
from pipelines.platform.resources import LakeResource, LandingZone, RetrainPolicy

RETRAIN_TAG = "flightline/retrain"  # the instance's run queue admits one run per value at a time
# How often the sensors look (landing folder, drift reports); tests of the daemon shorten it.
TICK_SECONDS = int(os.environ.get("FLIGHTLINE_SENSOR_TICK_SECONDS", "15"))


def model_keys(spec: TaskSpec) -> list[dg.AssetKey]:
    from pipelines.platform.lib.modeling.families import asset_name

    prefix = list(spec.asset_prefix)
    return [dg.AssetKey([*prefix, asset_name(f)]) for f in spec.families] + [
        dg.AssetKey([*prefix, "model_evaluation"])
    ]


def retrain_selection(task: Task) -> dg.AssetSelection:
    """Both model families, the evaluation and its gate, the champion, the Bento built from it,
    the service Deployment rolled to it and the drift reference of the new champion: the task's
    own, nothing else."""
    return dg.AssetSelection.assets(
        *model_keys(task.spec),
        task.key("champion"),
        task.key("bento"),
        task.key("deployment"),
        task.key("drift_reference"),
    )


def retrain_run_config(spec: TaskSpec, until: str, cut: str | None = None) -> dict:
    """Models and evaluation read the same days: everything up to `until` whose label was known
    at the instant `cut` (the retrain's start), when given."""
    config = {"until": until} | ({"cut": cut} if cut else {})
    return {
        "ops": {key.to_python_identifier(): {"config": dict(config)} for key in model_keys(spec)}
    }


def partitions_job_name(task: Task | str) -> str:
    return f"{getattr(task, 'name', task)}_partitions"


def retrain_job_name(task: Task | str) -> str:
    return f"{getattr(task, 'name', task)}_retrain"


def reference_job_name(task: Task | str) -> str:
    return f"{getattr(task, 'name', task)}_reference_data"


def _landing_sensor(task: Task, selection: dg.AssetSelection) -> dg.SensorDefinition:
    tables = [t.name for t in task.definition.landing_tables]

    # Targets the partitioned assets by selection (not a job): only such a sensor may request
    # backfills.
    @dg.sensor(
        name=f"{task.name}_landing_sensor",
        asset_selection=selection,
        minimum_interval_seconds=TICK_SECONDS,
        description=f"New {task.name} files become partition runs (a gap of several partitions "
        "one backfill); a replaced file re-runs its partition",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
        previous = load_state(context.cursor)
        changes = scan_landing(landing_dir(landing, task), previous, tables)
        for key, missing in changes.incomplete_days.items():
            context.log.info(f"{key}: waiting for {', '.join(missing)}")
        if changes.nothing_new:
            waiting = f"; waiting for {len(changes.incomplete_days)} incomplete partition(s)"
            return dg.SkipReason(
                "no new or replaced files" + (waiting if changes.incomplete_days else "")
            )
        graph = context.repository_def.asset_graph
        keys = selection.resolve(graph)
        requests: list[dg.RunRequest] = []
        for start, end in changes.new_ranges(task.next_partition):
            if start == end:
                requests.append(
                    dg.RunRequest(
                        partition_key=start,
                        run_key=f"{task.name}:{start}:{changes.fingerprint(start)}",
                        tags={"flightline/trigger": "landed", **task.tags},
                    )
                )
                continue
            # A gap of several partitions: one backfill, which the backfill daemon runs as one
            # ranged run (every partitioned asset has a single-run backfill policy).
            partitions = task.partitions_def.get_partition_keys_in_range(
                dg.PartitionKeyRange(start, end)
            )
            subset = backfill_subset(keys, partitions, graph)
            requests.append(
                dg.RunRequest.for_asset_graph_subset(
                    subset,
                    tags={
                        "flightline/trigger": "landed",
                        "flightline/days": f"{start}..{end}",
                        **task.tags,
                    },
                )
            )
        for key in changes.replaced_days:
            context.log.info(f"{key}: a replaced file; re-running its partition")
            requests.append(
                dg.RunRequest(
                    partition_key=key,
                    run_key=f"{task.name}:{key}:{changes.fingerprint(key)}",
                    tags={"flightline/trigger": "replaced", **task.tags},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=dump_state(changes.state))

    return landing_sensor


def _failed_days(instance: dg.DagsterInstance, job_name: str, since: float) -> list[str]:
    """Daily runs that failed since the last tick, with the checks that failed in them."""
    messages = []
    records = instance.get_run_records(
        dg.RunsFilter(
            job_name=job_name,
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(since, tz=UTC),
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


def _drift_sensor(task: Task, retrain_job) -> dg.SensorDefinition:
    spec = task.spec
    partitions_job = partitions_job_name(task)
    report_key = task.key("drift_report")

    @dg.sensor(
        name=f"{task.name}_drift_sensor",
        jobs=[retrain_job],
        minimum_interval_seconds=TICK_SECONDS,
        description=f"Drift or falling live performance of the {task.name} champion launches its "
        "retrain (one run key per champion and partition, with a cooldown); the run's tags say why",
    )
    def drift_sensor(
        context: dg.SensorEvaluationContext, lake: LakeResource, retrain_policy: RetrainPolicy
    ):
        cursor = DriftCursor.parse(context.cursor)
        instance = context.instance
        started = time.time()
        failed = _failed_days(instance, partitions_job, cursor.checked_at)
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=report_key, after_storage_id=cursor.storage_id or None),
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
        reports = lake.lake.read_partitions(task.table("drift_report"), days, allow_missing=True)
        live_table = task.table("live_performance")
        live = lake.lake.read_partitions(
            live_table, lake.lake.partitions(live_table), allow_missing=True
        )
        decision = decide(days, reports, live, retrain_policy.thresholds(), cursor.last_trigger_day)
        for line in failed + decision.skipped:
            context.log.info(line)
        if decision.trigger_day is None:
            return dg.SensorResult(
                skip_reason="; ".join(failed + decision.skipped[-5:]), cursor=cursor.dump()
            )
        in_flight = _retrain_in_flight(instance, retrain_job.name)
        if in_flight:
            # Not recorded as triggered: a later report re-evaluates once this retrain is done.
            return dg.SensorResult(
                skip_reason=f"{decision.trigger_day}: {'; '.join(decision.reasons)}, but retrain "
                f"run {in_flight} is already queued or running",
                cursor=cursor.dump(),
            )
        report = reports.set_index(PARTITION_COLUMN).loc[decision.trigger_day]
        champion = str(report["reference_version"])
        cursor.last_trigger_day = decision.trigger_day
        context.log.info(f"retrain: {decision.trigger_day}: {'; '.join(decision.reasons)}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    job_name=retrain_job.name,
                    run_key=f"drift:{spec.name}:v{champion}:{decision.trigger_day}",
                    run_config=retrain_run_config(spec, decision.trigger_day),
                    tags={
                        RETRAIN_TAG: spec.name,
                        **task.tags,
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

    return drift_sensor


def _nightly_schedule(task: Task, job) -> dg.ScheduleDefinition:
    automation = task.definition.automation

    @dg.schedule(
        name=f"{task.name}_nightly_retrain",
        job=job,
        cron_schedule=automation.retrain_cron,
        execution_timezone=automation.timezone,
        description=f"Retrain {task.name} ({automation.retrain_cron}, {automation.timezone}) on "
        "everything labelled up to the day before",
    )
    def _nightly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
        return dg.RunRequest(
            run_key=f"nightly:{task.name}:{yesterday}",
            run_config=retrain_run_config(
                task.spec, yesterday, context.scheduled_execution_time.isoformat()
            ),
            tags={
                RETRAIN_TAG: task.name,
                **task.tags,
                "flightline/trigger": "schedule",
                "flightline/until": yesterday,
            },
        )

    return _nightly


def automation_defs(
    task: Task, partitioned: list[dg.AssetKey], reference: dg.AssetSelection
) -> dg.Definitions:
    """`partitioned`: the task's partitioned assets (landing to monitoring), which a landed
    partition (or range) runs as one run. `reference`: the unpartitioned assets upstream of
    them (reference tables, Feast definitions), run once and when they change."""
    selection = dg.AssetSelection.assets(*partitioned)
    reference_job = dg.define_asset_job(
        name=reference_job_name(task),
        selection=reference,
        tags=task.tags,
        description=f"{task.name}'s reference tables and Feast definitions: before the first "
        "partitions, and again when the source or the feature declarations change",
    )
    partitions_job = dg.define_asset_job(
        name=partitions_job_name(task),
        selection=selection,
        tags=task.tags,
        description=f"Landed {task.name} partitions: ingestion, validation, features, training "
        "rows, drift, live performance",
    )
    # Tagged so that the instance's run queue runs at most one retrain of a task at a time:
    # two concurrent retrains could otherwise both pass the gate against the same champion.
    retrain_job = dg.define_asset_job(
        name=retrain_job_name(task),
        selection=retrain_selection(task),
        tags={RETRAIN_TAG: task.name, **task.tags},
        description=f"Retrain, evaluate, gate, promote and package task {task.name}",
    )
    # Re-roll the service to what `bento` packaged last (a cluster fixed, a rollout retried),
    # without retraining. Its own job: an op-subset of an asset job does not load inputs.
    deployment_job = dg.define_asset_job(
        name=f"{task.name}_deployment",
        selection=dg.AssetSelection.assets(task.key("deployment")),
        tags=task.tags,
        description=f"Roll the {task.name} service Deployment to the last packaged Bento",
    )
    return dg.Definitions(
        jobs=[reference_job, partitions_job, retrain_job, deployment_job],
        sensors=[_landing_sensor(task, selection), _drift_sensor(task, retrain_job)],
        schedules=[_nightly_schedule(task, retrain_job)],
    )
