"""Automation of a task: its partitions job (landed files), its retrain job, the landing sensor
turning new files into partition runs and backfills, the drift sensor launching retrains, and
the nightly retrain schedule. Everything is the task's own: one task never launches another's."""

import os
import time
from datetime import UTC, datetime

import dagster as dg

from pipelines.platform.compat import backfill_subset, requested_backfills
from pipelines.platform.components.definition import Task
from pipelines.platform.components.ingestion import landing_dir
from pipelines.platform.components.rollout import rollout_keys
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.landing_watch import (
    LANDED_SHA256,
    dump_state,
    fingerprint_of,
    load_state,
    scan_landing,
)
from pipelines.platform.lib.monitoring import latest_verdicts
from pipelines.platform.lib.retrain_policy import DriftCursor, decide, fair_until
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
        *rollout_keys(task),
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


UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _records(instance: dg.DagsterInstance, fetch, records_filter) -> list:
    """Every record of a filter, page by page (newest first)."""
    out, cursor = [], None
    while True:
        page = fetch(records_filter, limit=1000, cursor=cursor)
        out.extend(page.records)
        if not page.has_more:
            return out
        cursor = page.cursor


def ingested_fingerprints(
    instance: dg.DagsterInstance, task: Task, tables: list[str], days: list[str]
) -> dict[str, str]:
    """Day -> fingerprint of the content the instance ingested for it (every table
    materialized, with the hash its ingestion observed), whoever launched that run."""
    if not days:
        return {}
    digests: dict[str, dict[str, str]] = {}
    for table in tables:
        key = task.key(f"raw_{table}")
        materialized = instance.get_materialized_partitions(key)
        records = _records(
            instance,
            instance.fetch_observations,
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=days),
        )
        for record in records:  # newest first: the first per day is what is there now
            day = record.partition_key
            observation = record.asset_observation
            if day not in materialized or observation is None or table in digests.get(day, {}):
                continue
            digest = observation.metadata.get(LANDED_SHA256)
            if digest is not None:
                digests.setdefault(day, {})[table] = str(digest.value)
    return {
        day: fingerprint_of(found) for day, found in digests.items() if len(found) == len(tables)
    }


def in_flight_days(instance: dg.DagsterInstance, task: Task) -> set[str]:
    """Days a queued or running run (or a backfill still being submitted) of the task covers."""
    days: set[str] = set()

    def add_range(start: str | None, end: str | None) -> None:
        if start and end:
            days.update(
                task.partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
            )

    for run in instance.get_runs(
        dg.RunsFilter(statuses=UNFINISHED, tags={"flightline/task": task.name})
    ):
        tags = run.tags
        if tags.get("dagster/partition"):
            days.add(tags["dagster/partition"])
        add_range(
            tags.get("dagster/asset_partition_range_start"),
            tags.get("dagster/asset_partition_range_end"),
        )
    for backfill in requested_backfills(instance):
        if backfill.tags.get("flightline/task") == task.name:
            start, _, end = backfill.tags.get("flightline/days", "").partition("..")
            add_range(start, end)
    return days


def is_partition_of(task: Task):
    def check(name: str) -> bool:
        try:
            return task.partitions_def.has_partition_key(name)
        except Exception:  # a name the partitions' format cannot parse ("latest", "2013-02-30")
            return False

    return check


def _landing_sensor(task: Task, selection: dg.AssetSelection) -> dg.SensorDefinition:
    tables = [t.name for t in task.definition.landing_tables]

    # Targets the partitioned assets by selection (not a job): only such a sensor may request
    # backfills.
    @dg.sensor(
        name=f"{task.name}_landing_sensor",
        asset_selection=selection,
        minimum_interval_seconds=TICK_SECONDS,
        description=f"{task.name} files whose content the instance has not ingested become "
        "partition runs (a gap of several partitions one backfill); a changed file re-runs its "
        "partition; stray files are reported and left alone",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
        instance = context.instance
        busy = in_flight_days(instance, task)
        # Decided from the instance (what was ingested, what is in flight), not from the cursor:
        # the cursor only caches file hashes, so an empty one re-runs nothing.
        changes = scan_landing(
            landing_dir(landing, task),
            load_state(context.cursor),
            tables,
            ingested=lambda days: ingested_fingerprints(instance, task, tables, days),
            is_partition=is_partition_of(task),
            in_flight=busy,
        )
        notes = [
            f"stray file {key}: not a partition of {task.name}; ignored" for key in changes.stray
        ]
        notes += [
            f"{key}: waiting for {', '.join(m)}" for key, m in changes.incomplete_days.items()
        ]
        if changes.in_flight:
            notes.append(
                f"{len(changes.in_flight)} partition(s) already in a queued or running run"
            )
        for note in notes:
            context.log.info(note)
        if changes.nothing_new:
            return dg.SensorResult(
                skip_reason="; ".join(["nothing landed that is not ingested", *notes])[:1000],
                cursor=dump_state(changes.state),
            )
        graph = context.repository_def.asset_graph
        keys = selection.resolve(graph)
        requests: list[dg.RunRequest] = []
        waiting: list[str] = []

        def held_back(label: str, first: str, what: str = "") -> bool:
            """Whether days from `first` wait for an earlier day in a queued or running run,
            which their windows read (logged, and listed in the skip reason)."""
            earlier = _earlier_in_flight(task, busy, first)
            if earlier:
                waiting.append(label)
                context.log.info(
                    f"{label}: {what}waiting for {', '.join(earlier)} (in flight), which its "
                    "windows read"
                )
            return bool(earlier)

        for start, end in changes.new_ranges(task.next_partition):
            if held_back(f"{start}..{end}" if start != end else start, start):
                continue
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
            if held_back(key, key, "changed, "):
                continue
            context.log.info(f"{key}: the landed content changed; re-running its partition")
            requests.append(
                dg.RunRequest(
                    partition_key=key,
                    run_key=f"{task.name}:{key}:{changes.fingerprint(key)}",
                    # New data for a judged day: its monitoring is judged again (the earlier
                    # verdict stays in the table's history, the asset's and MLflow's).
                    run_config=rejudge_config(task),
                    tags={"flightline/trigger": "replaced", **task.tags},
                )
            )
        if not requests:
            return dg.SensorResult(
                skip_reason=f"waiting for earlier days in flight: {', '.join(waiting)}",
                cursor=dump_state(changes.state),
            )
        return dg.SensorResult(run_requests=requests, cursor=dump_state(changes.state))

    return landing_sensor


def _earlier_in_flight(task: Task, busy: set[str], start: str) -> list[str]:
    """Days before `start` within its runs' windows that a queued or running run (or a
    backfill not yet submitted) still covers. A run of `start` now would read their partitions
    before they are written, and compute its windowed features without them, for good: it waits
    (a later tick requests it; nothing is recorded until it runs)."""
    if not busy or not task.window_lookback:
        return []
    return sorted(set(task.previous_partitions(start, task.window_lookback)) & busy)


def rejudge_config(task: Task) -> dict:
    """Run config that has the monitoring assets judge their days again."""
    return {
        "ops": {
            task.key(name).to_python_identifier(): {"config": {"rejudge": True}}
            for name in ("drift_report", "live_performance")
        }
    }


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
    runs = instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=UNFINISHED), limit=1)
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
        # Only the current champion's verdicts count: a report of an earlier champion says
        # nothing about the model that serves now.
        reference_table = task.table("drift_reference")
        if not lake.lake.has_json(reference_table):
            return dg.SensorResult(skip_reason="no champion yet", cursor=cursor.dump())
        champion = lake.lake.read_json(reference_table)["description"]
        version = str(champion["champion_version"])
        reports = latest_verdicts(
            lake.lake.read_partitions(task.table("drift_report"), days, allow_missing=True),
            version,
        )
        live_table = task.table("live_performance")
        live = latest_verdicts(
            lake.lake.read_partitions(
                live_table, lake.lake.partitions(live_table), allow_missing=True
            ),
            version,
        )
        stale = sorted(set(days) - set(reports.get(PARTITION_COLUMN, [])))
        if stale:
            context.log.info(
                f"{len(stale)} day(s) with no verdict of champion v{version} (judged by an "
                f"earlier champion or not yet): {', '.join(stale[:5])}"
            )
        # A fair retrain: its holdout (the last days up to the trigger) must hold no day the
        # champion trained on, or the champion is scored on its own training data. Evidence of an
        # earlier day is reported, and waits for a day whose retrain can be fair.
        split = task.spec.split
        fair_from = max(
            fair_until(champion["last_day"], split.holdout_days),
            # and enough data for the split at all: validation + holdout + a day to train on
            fair_until(champion["first_day"], split.validation_days + split.holdout_days),
        )
        judged = sorted(set(days) - set(stale))
        early = decide(
            [d for d in judged if d < fair_from],
            reports,
            live,
            retrain_policy.thresholds(),
            cursor.last_trigger_day,
        )
        decision = decide(
            [d for d in judged if d >= fair_from],
            reports,
            live,
            retrain_policy.thresholds(),
            cursor.last_trigger_day,
        )
        waiting = []
        if early.trigger_day is not None:
            waiting.append(
                f"{early.trigger_day}: {'; '.join(early.reasons)}, but a fair holdout of "
                f"{task.spec.split.holdout_days} days after champion v{version}'s training "
                f"(through {champion['last_day']}) needs data until {fair_from}: waiting"
            )
        for line in failed + early.skipped + waiting + decision.skipped:
            context.log.info(line)
        if decision.trigger_day is None:
            return dg.SensorResult(
                skip_reason="; ".join(failed + early.skipped[-5:] + waiting + decision.skipped[-5:])
                or f"no new verdicts of champion v{version}",
                cursor=cursor.dump(),
            )
        in_flight = _retrain_in_flight(instance, retrain_job.name)
        if in_flight:
            # Not recorded as triggered: a later report re-evaluates once this retrain is done.
            return dg.SensorResult(
                skip_reason=f"{decision.trigger_day}: {'; '.join(decision.reasons)}, but retrain "
                f"run {in_flight} is already queued or running",
                cursor=cursor.dump(),
            )
        champion = version
        cursor.last_trigger_day = decision.trigger_day
        context.log.info(f"retrain: {decision.trigger_day}: {'; '.join(decision.reasons)}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    job_name=retrain_job.name,
                    run_key=f"drift:{spec.name}:v{champion}:{decision.trigger_day}",
                    run_config=retrain_run_config(
                        spec,
                        decision.trigger_day,
                        task.partition_end(decision.trigger_day).isoformat(),  # labels known then
                    ),
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


def latest_ingested(instance: dg.DagsterInstance, task: Task, before: str) -> str | None:
    """The newest partition (before `before`) every landing table of the task has ingested: the
    last complete day of data, in live operation yesterday, on a replayed clock the last day
    replayed."""
    complete = None
    for table in task.definition.landing_tables:
        done = {
            p
            for p in instance.get_materialized_partitions(task.key(f"raw_{table.name}"))
            if p < before
        }
        complete = done if complete is None else complete & done
    return max(complete) if complete else None


def _nightly_schedule(task: Task, job) -> dg.ScheduleDefinition:
    automation = task.definition.automation
    # A compressed clock (the live-operation scenario) retrains more often than nightly.
    cron = os.environ.get("FLIGHTLINE_RETRAIN_CRON") or automation.retrain_cron

    @dg.schedule(
        name=f"{task.name}_nightly_retrain",
        job=job,
        cron_schedule=cron,
        execution_timezone=automation.timezone,
        description=f"Retrain {task.name} ({cron}, {automation.timezone}) on everything "
        "ingested up to the day before, when its holdout can be fair to the champion",
    )
    def _nightly(context: dg.ScheduleEvaluationContext, lake: LakeResource):
        today = context.scheduled_execution_time.strftime("%Y-%m-%d")
        until = latest_ingested(context.instance, task, today)
        if until is None:
            return dg.SkipReason(f"nothing of {task.name} ingested yet")
        reference_table = task.table("drift_reference")
        if lake.lake.has_json(reference_table):
            champion = lake.lake.read_json(reference_table)["description"]
            fair_from = fair_until(champion["last_day"], task.spec.split.holdout_days)
            if until < fair_from:
                return dg.SkipReason(
                    f"data until {until}: a fair holdout of {task.spec.split.holdout_days} days "
                    f"after champion v{champion['champion_version']}'s training (through "
                    f"{champion['last_day']}) needs data until {fair_from}"
                )
        return dg.RunRequest(
            run_key=f"nightly:{task.name}:{until}",
            # Labels known by the retrain's instant only (issue 24): the earlier of its scheduled
            # time and the end of the last ingested day (a compressed or replayed clock).
            run_config=retrain_run_config(
                task.spec,
                until,
                min(context.scheduled_execution_time, task.partition_end(until)).isoformat(),
            ),
            tags={
                RETRAIN_TAG: task.name,
                **task.tags,
                "flightline/trigger": "schedule",
                "flightline/until": until,
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
