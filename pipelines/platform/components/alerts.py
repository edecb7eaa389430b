"""Alerts in the open: run failures (Dagster's run-status sensors) for the whole code location,
and per task a sensor that watches its blocking checks, its landing cadence, drift, live
performance and rollout decisions. Each incident is told once to the configured sinks and once
more when it clears; the ledger lives in the Dagster instance (pipelines/platform/lib/alerts.py)."""

import json
import time

import dagster as dg

from pipelines.platform.compat import check_evaluations, instance_kv
from pipelines.platform.components.automation import TICK_SECONDS
from pipelines.platform.components.definition import Task
from pipelines.platform.lib.alerts import KINDS, Alert, AlertLedger, Delivery, Notification
from pipelines.platform.resources import AlertSinks, LakeResource, LandingZone, RetrainPolicy

KV_PREFIX = "flightline/alerts/"
RUN_SCOPE = "runs"
RUN_FAILURE_SENSOR = "run_failure_alerts"
RUN_RECOVERY_SENSOR = "run_recovery_alerts"


def now() -> float:
    """The wall clock the landing cadence is measured on (a test moves it)."""
    return time.time()


def alert_sensor_name(task: Task | str) -> str:
    return f"{getattr(task, 'name', task)}_alert_sensor"


class InstanceStore:
    """The ledger's documents in the instance's key-value table (one key per scope)."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._get, self._set = instance_kv(instance)

    def load(self, scope: str) -> dict:
        return json.loads(self._get(KV_PREFIX + scope) or "{}")

    def save(self, scope: str, document: dict) -> None:
        self._set(KV_PREFIX + scope, json.dumps(document))


def ledger(instance: dg.DagsterInstance, alerts: AlertSinks, scope: str) -> AlertLedger:
    return AlertLedger(InstanceStore(instance), scope, alerts.sinks(), alerts.rate_limit())


def _said(delivery: Delivery, sinks: int) -> str:
    parts = [f"{n.state} {n.alert.id}" for n in delivery.sent]
    if delivery.deferred:
        parts.append(f"{len(delivery.deferred)} deferred by the rate limit")
    if delivery.errors:
        parts.append("sink errors: " + "; ".join(delivery.errors))
    if not sinks and delivery.sent:
        parts.append("no sinks configured: recorded only")
    return ", ".join(parts) or "nothing new"


def _run_incident(run: dg.DagsterRun) -> str:
    tags = run.tags
    partition = tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in tags
        else ""
    )
    return f"{run.job_name}[{partition}]" if partition else run.job_name


@dg.run_failure_sensor(
    name=RUN_FAILURE_SENSOR,
    minimum_interval_seconds=TICK_SECONDS,
    description="A failed run opens a run_failure incident (one per job and partition), told once",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertSinks):
    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    alert = Alert(
        "run_failure",
        _run_incident(run),
        f"run of {_run_incident(run)} failed",
        {
            "run_id": run.run_id,
            "task": run.tags.get("flightline/task", ""),
            "trigger": run.tags.get("flightline/trigger", ""),
            "error": message[:500],
        },
    )
    delivery = ledger(context.instance, alerts, RUN_SCOPE).fire([alert])
    context.log.info(_said(delivery, len(alerts.sinks())))


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name=RUN_RECOVERY_SENSOR,
    minimum_interval_seconds=TICK_SECONDS,
    description="A successful run of a job (and partition) resolves its open run_failure incident",
)
def run_recovery_alerts(context: dg.RunStatusSensorContext, alerts: AlertSinks):
    run = context.dagster_run
    book = ledger(context.instance, alerts, RUN_SCOPE)
    alert_id = f"run_failure:{_run_incident(run)}"
    if alert_id in book.open:
        delivery = book.resolve({alert_id: f"run {run.run_id} succeeded"})
        context.log.info(_said(delivery, len(alerts.sinks())))


def _run_partition(instance: dg.DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    return _run_incident(run).partition("[")[2].rstrip("]") if run else ""


def _check_alerts(
    task: Task, instance: dg.DagsterInstance, check_keys, seen: dict[str, int]
) -> tuple[list[Alert], dict[str, str]]:
    """Evaluations of the task's checks newer than `seen` (check -> last record id read, updated
    in place): the last word per check and partition wins; a blocking failure fires, a pass
    resolves."""
    prefix = list(task.prefix)
    last: dict[str, tuple[bool, Alert]] = {}
    for key in check_keys:
        if list(key.asset_key.path[: len(prefix)]) != prefix:
            continue
        name = key.to_user_string()
        for record_id, run_id, evaluation in check_evaluations(instance, key, limit=100):
            if record_id <= seen.get(name, 0):
                continue
            seen[name] = record_id
            if getattr(evaluation, "passed", None) is None:  # planned, not evaluated yet
                continue
            # A failure that stops nothing is no incident: a non-blocking check, or a WARN one
            # (the promotion gate's refusal is an outcome: the champion stays).
            stops = evaluation.blocking and evaluation.severity == dg.AssetCheckSeverity.ERROR
            if not evaluation.passed and not stops:
                continue
            partition = evaluation.partition or _run_partition(instance, run_id)
            evidence = [f"{k}: {v.value}" for k, v in (evaluation.metadata or {}).items()][:6]
            alert = Alert(
                "check_failed",
                f"{name}[{partition}]" if partition else name,
                f"blocking check {key.name} failed on {key.asset_key.to_user_string()}"
                + (f" [{partition}]" if partition else ""),
                {"run_id": run_id, "evidence": "; ".join(evidence)[:500]},
            )
            last[alert.id] = (evaluation.passed, alert)
    firing = [a for passed, a in last.values() if not passed]
    cleared = {i: "the check passed again" for i, (passed, _) in last.items() if passed}
    return firing, cleared


def _landing_alert(task: Task, instance: dg.DagsterInstance, now: float) -> list[Alert]:
    cadence = task.definition.automation.landing_cadence_minutes
    if cadence is None:
        return []
    tables = [t.name for t in task.definition.landing_tables]
    times = [
        e.timestamp
        for t in tables
        if (e := instance.get_latest_materialization_event(task.key(f"raw_{t}"))) is not None
    ]
    if not times:  # nothing has ever landed: nothing is late yet
        return []
    waited = (now - max(times)) / 60
    if waited <= cadence:
        return []
    return [
        Alert(
            "landing_overdue",
            task.name,
            f"{task.name}: nothing landed for {waited:.0f} min (cadence {cadence} min)",
            {"tables": ", ".join(tables)},
            severity="warning",
        )
    ]


def _stray_alerts(task: Task, landing: LandingZone) -> list[Alert]:
    """A file in the landing folder that names no partition: the landing sensor ignores it (and
    says so in its tick); this keeps one incident open per file until someone moves it."""
    from pipelines.platform.components.automation import is_partition_of
    from pipelines.platform.components.ingestion import landing_dir
    from pipelines.platform.lib.landing_watch import stray_files

    tables = [t.name for t in task.definition.landing_tables]
    folder = landing_dir(landing, task)
    return [
        Alert(
            "stray_landing",
            f"{task.name}:{key}",
            f"{task.name}: stray file {key} in the landing folder, not a partition; ignored",
            {"folder": str(folder), "file": key},
            severity="warning",
        )
        for key in stray_files(folder, tables, is_partition_of(task))
    ]


def _newest_day(lake, table: str) -> str | None:
    days = lake.partitions(table)
    return max(days) if days else None


def _drift_alerts(task: Task, lake, policy: RetrainPolicy) -> list[Alert]:
    from pipelines.platform.lib.retrain_policy import drift_reasons

    table = task.table("drift_report")
    day = _newest_day(lake, table)
    if day is None:
        return []
    report = lake.read_partitions(table, [day]).iloc[-1]
    reasons = drift_reasons(report, policy.thresholds())
    if not reasons:
        return []
    return [
        Alert(
            "drift",
            task.name,
            f"{task.name}: drift on {day}",
            {"day": day, "why": "; ".join(reasons)},
            severity="warning",
        )
    ]


def _live_alerts(task: Task, lake, policy: RetrainPolicy) -> list[Alert]:
    from pipelines.platform.lib.monitoring import rolling_view
    from pipelines.platform.lib.retrain_policy import live_reasons

    table = task.table("live_performance")
    days = lake.partitions(table)
    if not days:
        return []
    history = lake.read_partitions(table, days)
    history = history[history["status"].isin(["ok", "degraded"])]  # degraded: issue 23
    if not len(history):
        return []
    view = rolling_view(history.assign(day=history["partition_date"]), "roc_auc")
    row = view.iloc[-1]
    reasons = live_reasons(row, policy.thresholds())
    if not reasons:
        return []
    return [
        Alert(
            "live_degradation",
            task.name,
            f"{task.name}: live performance of champion v{row['champion_version']} fell",
            {"day": str(view.index[-1]), "why": "; ".join(reasons)},
        )
    ]


def _rollout_events(
    task: Task, instance: dg.DagsterInstance, after: int
) -> tuple[list[Alert], dict[str, str], int]:
    """Rollout materializations since `after`: a challenger entering shadow (or canary) opens
    its incident; its end (champion, or a rollback with the reason) resolves it."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=task.key("rollout"), after_storage_id=after or None),
        limit=1000,
        ascending=True,
    ).records
    firing: dict[str, Alert] = {}
    cleared: dict[str, str] = {}
    for record in records:
        after = record.storage_id
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        stage, version = str(meta.get("stage", "")), str(meta.get("version", ""))
        if not version:
            continue
        alert = Alert(
            "rollout",
            f"{task.name}:v{version}",
            f"{task.name}: v{version} rolling out",
            {"stage": stage, "decision": str(meta.get("decision", ""))},
            severity="info",
        )
        if stage in ("shadow", "canary"):
            firing[alert.id] = alert
            cleared.pop(alert.id, None)
        elif stage in ("champion", "rollback"):
            firing.pop(alert.id, None)
            cleared[alert.id] = f"{stage}: {meta.get('decision', '')}"
    return list(firing.values()), cleared, after


def _task_alert_sensor(task: Task) -> dg.SensorDefinition:
    drift_key, live_key = task.key("drift_report"), task.key("live_performance")

    @dg.sensor(
        name=alert_sensor_name(task),
        minimum_interval_seconds=TICK_SECONDS,
        description=f"Alerts for {task.name}: a blocking check failed, landing overdue, a stray "
        "landing file, drift, live degradation, rollout decisions; one message per incident and "
        "one when it clears",
    )
    def alert_sensor(
        context: dg.SensorEvaluationContext,
        alerts: AlertSinks,
        lake: LakeResource,
        landing: LandingZone,
        retrain_policy: RetrainPolicy,
    ):
        instance = context.instance
        cursor = json.loads(context.cursor) if context.cursor else {}
        book = ledger(instance, alerts, alert_sensor_name(task))
        graph = context.repository_def.asset_graph if context.repository_def else None
        check_keys = graph.asset_check_keys if graph is not None else []
        checks, checks_cleared = _check_alerts(
            task, instance, check_keys, cursor.setdefault("checks", {})
        )
        rollouts, rollouts_cleared, cursor["rollout"] = _rollout_events(
            task, instance, cursor.get("rollout", 0)
        )
        firing = [
            *checks,
            *rollouts,
            *_landing_alert(task, instance, now()),
            *_stray_alerts(task, landing),
        ]
        reconciled = ["landing_overdue", "stray_landing"]
        # Drift and live performance are re-read only when a new report was materialized.
        for kind, key, evaluate in (
            ("drift", drift_key, _drift_alerts),
            ("live_degradation", live_key, _live_alerts),
        ):
            latest = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key), limit=1
            ).records
            seen = latest[0].storage_id if latest else 0
            if seen != cursor.get(kind, 0):
                firing += evaluate(task, lake.lake, retrain_policy)
                reconciled.append(kind)  # unchanged evidence: what is open stays open
                cursor[kind] = seen
        deliveries = [
            book.fire(firing),
            book.resolve({**checks_cleared, **rollouts_cleared}),
            book.reconcile(reconciled, [a for a in firing if a.kind in reconciled], "cleared"),
        ]
        said = "; ".join(_said(d, len(alerts.sinks())) for d in deliveries if d.sent or d.errors)
        return dg.SensorResult(skip_reason=said or "nothing new", cursor=json.dumps(cursor))

    return alert_sensor


def task_alert_defs(task: Task) -> dg.Definitions:
    return dg.Definitions(sensors=[_task_alert_sensor(task)])


def run_alert_defs() -> dg.Definitions:
    """The code location's run-status alert sensors (every job of every task)."""
    return dg.Definitions(sensors=[run_failure_alerts, run_recovery_alerts])


def send_test_alerts(sinks: list) -> list[Notification]:
    """`make alert-test`: one firing and one resolved message of each kind to every sink, without
    touching any ledger (a way to see what the messages look like where they land)."""
    sent = []
    for kind in KINDS:
        alert = Alert(
            kind, "alert-test", f"test of the {kind} alert", {"sent_by": "make alert-test"}
        )
        for notification in (
            Notification(alert, "firing"),
            Notification(alert, "resolved", "test"),
        ):
            for sink in sinks:
                sink.send(notification)
            sent.append(notification)
    return sent


def main() -> None:
    from pipelines.platform.resources_config import alert_sinks

    sinks = alert_sinks().sinks()
    if not sinks:
        raise SystemExit(
            "no alert sinks configured: set FLIGHTLINE_ALERT_WEBHOOK_URL and/or "
            "FLIGHTLINE_ALERT_SMTP_HOST + FLIGHTLINE_ALERT_SMTP_TO (docs/rollout-and-alerts.md)"
        )
    sent = send_test_alerts(sinks)
    print(
        f"sent {len(sent)} messages ({len(KINDS)} kinds, firing + resolved) to "
        f"{', '.join(s.name for s in sinks)}"
    )


if __name__ == "__main__":
    main()
