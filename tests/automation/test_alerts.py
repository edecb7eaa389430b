"""Every alert kind end to end: instance state (real runs, check evaluations, materializations
and lake tables) -> the alert sensors -> a real HTTP receiver and a real SMTP server process.
Each kind is told exactly once per incident and once when it resolves."""

from collections import Counter

import dagster as dg
import pandas as pd
import pytest

from pipelines.platform.components import alerts as alerts_component
from pipelines.platform.components.alerts import (
    RUN_FAILURE_SENSOR,
    RUN_RECOVERY_SENSOR,
    alert_sensor_name,
    run_failure_alerts,
    run_recovery_alerts,
    task_alert_defs,
)
from pipelines.platform.components.definition import resolve
from pipelines.platform.components.task import load_definition, task_definition_paths
from pipelines.platform.lib.alerts import KINDS
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.resources import AlertSinks, LakeResource, LandingZone, RetrainPolicy
from tests.alert_sinks import SmtpServer, WebhookReceiver, wait_until

TASK = "flight_delay"
CADENCE_MINUTES = 60


@pytest.fixture
def task():
    definition = load_definition(task_definition_paths()[TASK])
    automation = definition.automation.model_copy(
        update={"landing_cadence_minutes": CADENCE_MINUTES}
    )
    return resolve(definition.model_copy(update={"automation": automation}))


@pytest.fixture
def sinks(tmp_path):
    with WebhookReceiver() as hook, SmtpServer(tmp_path / "maildir") as smtp:
        yield (
            hook,
            smtp,
            AlertSinks(
                webhook_url=hook.url,
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                smtp_sender="flightline@example.org",
                smtp_recipients=["oncall@example.org"],
            ),
        )


class ProbeConfig(dg.Config):
    fail_asset: bool = False
    fail_check: bool = False


def _probe_job(task):
    """A job under the task's prefix with a blocking check: real runs that fail or pass."""

    @dg.asset(key=task.key("alert_probe"))
    def probe(config: ProbeConfig) -> int:
        if config.fail_asset:
            raise RuntimeError("probe asked to fail")
        return 1

    @dg.asset_check(asset=probe, blocking=True, name="alert_probe_rows")
    def probe_rows(config: ProbeConfig) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=not config.fail_check, metadata={"rows": 0})

    job = dg.define_asset_job("alert_probe_job", selection=[probe.key])
    definitions = dg.Definitions(
        assets=[probe],
        asset_checks=[probe_rows],
        jobs=[job],
        sensors=task_alert_defs(task).sensors,
        resources={"io_manager": dg.InMemoryIOManager()},
    )
    return definitions, definitions.resolve_job_def("alert_probe_job")


def _run(job, instance, **config) -> dg.DagsterRun:
    ops = {
        "ops": {
            "flight_delay__alert_probe": {"config": config},
            "flight_delay__alert_probe_alert_probe_rows": {"config": config},
        }
    }
    result = job.execute_in_process(instance=instance, run_config=ops, raise_on_error=False)
    return instance.get_run_by_id(result.run_id)


def _run_sensors(instance, run, alerts):
    """What the daemon does for a finished run: the failure or the recovery sensor."""
    if run.status == dg.DagsterRunStatus.FAILURE:
        event = next(
            e.dagster_event
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        )
        context = dg.build_run_status_sensor_context(
            RUN_FAILURE_SENSOR, event, instance, run, resources={"alerts": alerts}
        ).for_run_failure()
        run_failure_alerts(context)
    else:
        event = next(
            e.dagster_event
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
        )
        context = dg.build_run_status_sensor_context(
            RUN_RECOVERY_SENSOR, event, instance, run, resources={"alerts": alerts}
        )
        run_recovery_alerts(context)


def _tick(definitions, instance, data_paths, alerts, cursor):
    sensor = definitions.resolve_sensor_def(alert_sensor_name(TASK))
    context = dg.build_sensor_context(
        instance=instance,
        definitions=definitions,
        cursor=cursor,
        resources={
            "alerts": alerts,
            "lake": LakeResource(lake_root=data_paths.lake),
            "landing": LandingZone(
                landing_dir=str(data_paths.landing), archive_dir=str(data_paths.root / "archive")
            ),
            "retrain_policy": RetrainPolicy(),
        },
    )
    result = sensor(context)
    return result.cursor


def _report(instance, lake, task, name, day, row):
    """A monitoring table's day written where its asset writes it, and its materialization."""
    lake.write(task.table(name), pd.DataFrame([{PARTITION_COLUMN: day, "day": day, **row}]), day)
    instance.report_runless_asset_event(dg.AssetMaterialization(task.key(name), partition=day))


def test_each_alert_kind_fires_once_per_incident_and_resolves(
    task, sinks, instance, data_paths, monkeypatch
):
    hook, smtp, alerts = sinks
    lake = LakeResource(lake_root=data_paths.lake).lake
    definitions, job = _probe_job(task)
    clock = [1_900_000_000.0]
    monkeypatch.setattr(alerts_component, "now", lambda: clock[0])
    cursor = None

    def tick():
        nonlocal cursor
        cursor = _tick(definitions, instance, data_paths, alerts, cursor)

    # run_failure: two failed runs of one job are one incident; a success resolves it.
    for _ in range(2):
        _run_sensors(instance, _run(job, instance, fail_asset=True), alerts)
    # check_failed: the blocking check fails in two runs (one incident), then passes.
    for _ in range(2):
        _run(job, instance, fail_check=True)
        tick()
    _run(job, instance)
    _run_sensors(instance, _run(job, instance), alerts)
    tick()

    # landing_overdue: something landed, then nothing for longer than the cadence.
    instance.report_runless_asset_event(dg.AssetMaterialization(task.key("raw_flights")))
    landed = instance.get_latest_materialization_event(task.key("raw_flights")).timestamp
    clock[0] = landed + 60 * (CADENCE_MINUTES - 1)
    tick()
    clock[0] = landed + 60 * (CADENCE_MINUTES + 1)
    tick()
    tick()
    instance.report_runless_asset_event(dg.AssetMaterialization(task.key("raw_flights")))
    clock[0] = instance.get_latest_materialization_event(task.key("raw_flights")).timestamp + 60
    tick()

    # stray_landing: a file named like no day, seen on two ticks (one incident), then moved away.
    stray = data_paths.landing_for(TASK) / "flights" / "latest.csv"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_text("not a day\n")
    tick()
    tick()
    stray.unlink()
    tick()

    # drift: a drifted day, a second drifted day (same incident), then a day within thresholds.
    drifted = {
        "status": "drift",
        "rows": 900,
        "drift_share": 0.8,
        "prediction_drifted": False,
        "prediction_distance": 0.01,
        "source": "live",
    }
    _report(instance, lake, task, "drift_report", "2013-02-01", drifted)
    tick()
    _report(instance, lake, task, "drift_report", "2013-02-02", drifted)
    tick()
    _report(
        instance,
        lake,
        task,
        "drift_report",
        "2013-02-03",
        {**drifted, "status": "no_drift", "drift_share": 0.1},
    )
    tick()

    # live_degradation: the 7-day live AUC falls 0.1 under the holdout's, then recovers.
    def live(day, auc):
        _report(
            instance,
            lake,
            task,
            "live_performance",
            day,
            {
                "status": "ok",
                "rows": 500,
                "roc_auc": auc,
                "champion_version": "3",
                "champion_holdout_roc_auc": 0.76,
            },
        )
        tick()

    live("2013-02-01", 0.75)
    live("2013-02-02", 0.60)
    live("2013-02-03", 0.62)
    live("2013-02-04", 0.95)  # the rolling mean climbs back over 0.71

    # rollout: v4 goes shadow -> canary -> champion; v5 goes shadow -> rollback.
    for version, stages in (("4", ["shadow", "canary", "champion"]), ("5", ["shadow", "rollback"])):
        for stage in stages:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    task.key("rollout"),
                    metadata={"stage": stage, "version": version, "decision": f"{stage} by test"},
                )
            )
            tick()

    expected = Counter({(k, s): 1 for k in KINDS for s in ("FIRING", "RESOLVED")})
    expected[("rollout", "FIRING")] = expected[("rollout", "RESOLVED")] = 2

    def told(titles):
        return Counter((t.split("] ")[1].split(":")[0], t.split()[1].rstrip("]")) for t in titles)

    assert told(hook.titles()) == expected, hook.titles()
    subjects = wait_until(
        lambda: len(smtp.messages()) == sum(expected.values()) and smtp.subjects(), "the mails"
    )
    assert told(subjects) == expected
    assert sorted(subjects) == sorted(hook.titles())
    rolled_back = [p for p in hook.posts if "v5" in p["text"] and "RESOLVED" in p["text"]]
    assert "resolved: rollback: rollback by test" in rolled_back[0]["attachments"][0]["text"]
    print(f"\nalerts told (kind, state): {dict(told(hook.titles()))}")


def test_alert_test_sends_one_of_each_kind_to_every_sink(sinks):
    """What `make alert-test` sends (firing and resolved of every kind), through the resource."""
    hook, smtp, alerts = sinks
    sent = alerts_component.send_test_alerts(alerts.sinks())
    assert len(sent) == 2 * len(KINDS)
    assert {(n.alert.kind, n.state) for n in sent} == {
        (k, s) for k in KINDS for s in ("firing", "resolved")
    }
    wait_until(lambda: len(smtp.messages()) == len(sent), "the mails")
    assert sorted(smtp.subjects()) == sorted(hook.titles()) == sorted(n.title for n in sent)


def test_alert_test_without_sinks_says_how_to_configure_them(monkeypatch):
    for name in ("FLIGHTLINE_ALERT_WEBHOOK_URL", "FLIGHTLINE_ALERT_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit, match="FLIGHTLINE_ALERT_WEBHOOK_URL"):
        alerts_component.main()
