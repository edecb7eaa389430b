"""Sensors and the schedule evaluated with Dagster's test contexts over real files and runs."""

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from pipelines.definitions import defs
from pipelines.platform.cli import materialize_window
from pipelines.platform.components.automation import RETRAIN_TAG, rejudge_config
from pipelines.platform.components.task import load_task
from pipelines.platform.resources import LakeResource, RetrainPolicy
from pipelines.tasks.flight_delay.replay import replay_days
from tests.conftest import source_day
from tests.sensor_ticks import champion_described_as, landing_tick, skip_message

TASK = "flight_delay"
DAILY_JOB = f"{TASK}_partitions"


@pytest.fixture(scope="module")
def definitions():
    """For evaluating sensors (their resources are passed explicitly), not for running jobs."""
    return defs()


def _ingest(instance, start: str, end: str | None = None) -> None:
    """Run the ingestion as any launcher would (here: `make run`'s own function)."""
    results = materialize_window(
        date.fromisoformat(start),
        date.fromisoformat(end or start),
        instance,
        only={"raw_flights", "raw_weather"},
    )
    assert results and all(r.success for r in results)


def test_new_day_then_nothing_new_then_a_replaced_file(definitions, instance, data_paths):
    replay_days(data_paths.landing_for("flight_delay"), date(2013, 1, 1), date(2013, 1, 1))
    first = landing_tick(definitions, instance, TASK, data_paths)
    [request] = first.run_requests
    assert request.partition_key == "2013-01-01"
    assert request.run_key.startswith(f"{TASK}:2013-01-01:")
    assert request.tags["flightline/trigger"] == "landed"

    _ingest(instance, "2013-01-01")
    # The cursor is only a cache of file hashes: with or without it, an ingested day is done.
    for cursor in (first.cursor, None):
        nothing = landing_tick(definitions, instance, TASK, data_paths, cursor)
        assert "nothing landed that is not ingested" in skip_message(nothing)

    flights = Path(data_paths.landing_for("flight_delay")) / "flights" / "2013-01-01.csv"
    source_day("flights", "2013-01-01").head(500).to_csv(flights, index=False, na_rep="NA")
    replaced = landing_tick(definitions, instance, TASK, data_paths, first.cursor)
    [rerun] = replaced.run_requests
    assert rerun.partition_key == "2013-01-01"
    assert rerun.tags["flightline/trigger"] == "replaced"
    assert rerun.run_key != request.run_key  # a new content, a new run key
    # New data for a judged day: its monitoring is asked to judge again, nothing else is.
    ops = rerun.run_config["ops"]
    assert {op: c["config"] for op, c in ops.items()} == {
        "flight_delay__drift_report": {"rejudge": True},
        "flight_delay__live_performance": {"rejudge": True},
    }


def test_after_make_run_the_first_tick_launches_nothing_already_ingested(
    definitions, instance, data_paths
):
    """What `make run` (or the UI, or another sensor) ingested is known to a sensor switched on
    later with an empty cursor: only the day landed since runs."""
    landing = data_paths.landing_for("flight_delay")
    replay_days(landing, date(2013, 1, 1), date(2013, 1, 3))
    _ingest(instance, "2013-01-01", "2013-01-03")
    replay_days(landing, date(2013, 1, 4), date(2013, 1, 4))
    first = landing_tick(definitions, instance, TASK, data_paths)  # cursor empty
    assert [r.partition_key for r in first.run_requests] == ["2013-01-04"]


def test_a_queued_run_is_not_requested_again(definitions, instance, data_paths):
    replay_days(data_paths.landing_for("flight_delay"), date(2013, 1, 1), date(2013, 1, 1))
    job = definitions.resolve_job_def(DAILY_JOB)
    run = instance.create_run_for_job(
        job, tags={"dagster/partition": "2013-01-01", "flightline/task": TASK}
    )
    assert run.status == dg.DagsterRunStatus.NOT_STARTED  # created, not finished: in flight
    waiting = landing_tick(definitions, instance, TASK, data_paths)
    assert "1 partition(s) already in a queued or running run" in skip_message(waiting)


def test_a_day_waits_for_an_earlier_day_in_flight_that_its_windows_read(
    definitions, instance, data_paths
):
    """Days run in order: a day whose windowed features read the days before waits while one of
    them is still in a queued run (or a backfill being submitted), else its features would be
    computed without that day, for good (the live path had it: live skew)."""
    replay_days(data_paths.landing_for("flight_delay"), date(2013, 1, 1), date(2013, 1, 2))
    job = definitions.resolve_job_def(DAILY_JOB)
    run = instance.create_run_for_job(
        job, tags={"dagster/partition": "2013-01-01", "flightline/task": TASK}
    )
    waiting = landing_tick(definitions, instance, TASK, data_paths)
    assert not waiting.run_requests
    assert "waiting for earlier days in flight: 2013-01-02" in skip_message(waiting)
    instance.delete_run(run.run_id)
    _ingest(instance, "2013-01-01")  # the earlier day done: the next tick runs the later one
    tick = landing_tick(definitions, instance, TASK, data_paths)
    assert [r.partition_key for r in tick.run_requests] == ["2013-01-02"]


def test_stray_files_are_reported_and_valid_days_still_run(definitions, instance, data_paths):
    landing = Path(data_paths.landing_for("flight_delay"))
    replay_days(str(landing), date(2013, 1, 1), date(2013, 1, 1))
    for table in ("flights", "weather"):
        for name in ("2013-02-30.csv", "2012-12-31.csv", "latest.csv", "2014-01-01.csv"):
            (landing / table / name).write_text("not a day\n")
    for _ in range(2):  # every later tick too: a stray file never blocks the sensor
        tick = landing_tick(definitions, instance, TASK, data_paths)
        assert [r.partition_key for r in tick.run_requests] == ["2013-01-01"]
    replay_days(str(landing), date(2013, 1, 2), date(2013, 1, 2))
    _ingest(instance, "2013-01-01", "2013-01-02")
    quiet = skip_message(landing_tick(definitions, instance, TASK, data_paths))
    for name in ("2013-02-30", "2012-12-31", "latest", "2014-01-01"):
        assert f"stray file flights/{name}.csv: not a partition of {TASK}; ignored" in quiet


def test_a_gap_of_days_becomes_one_backfill_of_every_daily_asset(definitions, instance, data_paths):
    replay_days(data_paths.landing_for("flight_delay"), date(2013, 1, 2), date(2013, 1, 5))
    result = landing_tick(definitions, instance, TASK, data_paths)
    [backfill] = result.run_requests
    assert backfill.requires_backfill_daemon()
    assert backfill.tags["flightline/days"] == "2013-01-02..2013-01-05"
    subset = backfill.asset_graph_subset
    daily = definitions.resolve_job_def(DAILY_JOB).asset_layer.selected_asset_keys
    assert set(subset.partitions_subsets_by_asset_key) == set(daily)
    for key in daily:
        assert sorted(subset.get_partitions_subset(key).get_partition_keys()) == [
            "2013-01-02",
            "2013-01-03",
            "2013-01-04",
            "2013-01-05",
        ]


def test_a_day_missing_a_table_waits(definitions, instance, data_paths):
    replay_days(data_paths.landing_for("flight_delay"), date(2013, 1, 1), date(2013, 1, 1))
    (Path(data_paths.landing_for("flight_delay")) / "weather" / "2013-01-01.csv").unlink()
    waiting = landing_tick(definitions, instance, TASK, data_paths)
    assert "2013-01-01: waiting for weather" in skip_message(waiting)


def _drift_tick(definitions, instance, paths, cursor=None, **policy):
    context = dg.build_sensor_context(
        instance=instance,
        definitions=definitions,
        cursor=cursor,
        resources={
            "lake": LakeResource(lake_root=paths.lake),
            "retrain_policy": RetrainPolicy(**policy),
        },
    )
    return definitions.get_sensor_def(f"{TASK}_drift_sensor")(context)


def test_failed_validation_produces_no_report_and_the_sensor_says_why(
    definitions, instance, data_paths
):
    day = "2013-01-02"
    replay_days(data_paths.landing_for("flight_delay"), date(2013, 1, 1), date(2013, 1, 2))
    assert all(
        r.success
        for r in materialize_window(
            date(2013, 1, 1), date(2013, 1, 1), instance, only={"raw_flights", "raw_weather"}
        )
    )
    good = source_day("flights", day)
    pd.concat([good, good.head(3)]).to_csv(
        Path(data_paths.landing_for("flight_delay")) / "flights" / f"{day}.csv",
        index=False,
        na_rep="NA",
    )
    # Definitions bind resources to the data root of the environment: build them for this test's.
    result = (
        defs()
        .resolve_job_def(DAILY_JOB)
        .execute_in_process(
            instance=instance,
            partition_key=day,
            tags={"flightline/trigger": "landed"},
            raise_on_error=False,
        )
    )
    assert not result.success
    assert day not in instance.get_materialized_partitions(
        dg.AssetKey(["flight_delay", "drift_report"])
    )
    tick = _drift_tick(definitions, instance, data_paths)
    assert not tick.run_requests
    assert f"{day}: validation failed (raw_flights_unique_rows): no drift report, no retrain" in (
        tick.skip_reason.skip_message
    )


@pytest.fixture(scope="module")
def reported(built, definitions):
    """The nine built days, with drift reports of the last two against the built champion."""
    paths, instance, _ = built
    job = defs().resolve_job_def(DAILY_JOB)
    for day in ("2013-01-08", "2013-01-09"):
        result = job.get_subset(
            asset_selection={
                dg.AssetKey(["flight_delay", "drift_report"]),
                dg.AssetKey(["flight_delay", "live_performance"]),
            }
        ).execute_in_process(
            instance=instance,
            partition_key=day,
            # Judged already when the pipeline was built: judged again, the verdict kept beside.
            run_config=rejudge_config(load_task(TASK)),
        )
        assert result.success
    return paths, instance


def _last_two_report_ids(instance) -> tuple[int, int]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["flight_delay", "drift_report"])), limit=2
    ).records
    assert [r.partition_key for r in records] == ["2013-01-09", "2013-01-08"]
    return records[1].storage_id, records[0].storage_id


def test_drift_over_the_threshold_launches_one_retrain_with_its_reasons(reported, definitions):
    from pipelines.platform.lib.lake import Lake

    paths, instance = reported
    first, latest = _last_two_report_ids(instance)
    before = first - 1
    cursor = f'{{"storage_id": {before}, "last_trigger_day": null, "checked_at": 0}}'
    # The champion trained through its validation days: a retrain until 01-08 or 01-09 would
    # score it on its own training days (a 7-day holdout). The sensor waits, and says until when.
    from pipelines.platform.lib.retrain_policy import fair_until

    described = Lake(str(paths.lake)).read_json(f"{TASK}/drift_reference")["description"]
    trained_through = described["last_day"]
    assert trained_through < "2013-01-09"
    # ... and a 7 + 7 day split needs 15 days of data from the first one.
    fair = max(fair_until(trained_through, 7), fair_until(described["first_day"], 14))
    waiting = _drift_tick(definitions, instance, paths, cursor, drift_share=0.0)
    assert not waiting.run_requests
    assert "but a fair holdout of 7 days after champion" in waiting.skip_reason.skip_message
    assert (
        f"(through {trained_through}) needs data until {fair}: waiting"
        in waiting.skip_reason.skip_message
    )
    # The first day the champion's own verdicts judged (a day it trained on is `trained_on`).
    trigger = "2013-01-09" if trained_through == "2013-01-08" else "2013-01-08"
    # A champion trained on less (through 01-01): the same evidence launches a fair retrain.
    with champion_described_as(paths.lake, TASK, first_day="2012-12-01", last_day="2013-01-01"):
        # A threshold every day crosses: the first new day triggers, the second is reported.
        tick = _drift_tick(definitions, instance, paths, cursor, drift_share=0.0)
    [request] = tick.run_requests
    report = pd.read_parquet(Path(paths.lake) / TASK / "drift_report" / f"{trigger}.parquet")
    report = report.iloc[[-1]]  # the newest verdict of the day
    version = report["reference_version"].iloc[0]
    assert {"status", "drift_share", "prediction_distance", "prediction_drifted"} <= set(report)
    assert report["status"].iloc[0] in ("drift", "no_drift")
    assert request.job_name == f"{TASK}_retrain"
    assert request.run_key == f"drift:{TASK}:v{version}:{trigger}"
    assert request.tags[RETRAIN_TAG] == TASK
    assert request.tags["flightline/trigger"] == "drift"
    assert request.tags["flightline/trigger_partition"] == trigger
    assert request.tags["flightline/drift_share"] == f"{report['drift_share'].iloc[0]:.4f}"
    assert "drift share" in request.tags["flightline/trigger_reason"]
    ops = request.run_config["ops"]
    assert {op["config"]["until"] for op in ops.values()} == {trigger}

    # The same evidence again: nothing new. A new report inside the cooldown: skipped, said why.
    again = _drift_tick(definitions, instance, paths, tick.cursor, drift_share=0.0)
    assert not again.run_requests and "no new drift reports" in again.skip_reason.skip_message
    replayed = tick.cursor.replace(f'"storage_id": {latest}', f'"storage_id": {first}')
    cooled = _drift_tick(definitions, instance, paths, replayed, drift_share=0.0)
    assert not cooled.run_requests
    assert f"cooldown after the retrain triggered by {trigger}" in cooled.skip_reason.skip_message


def test_reports_of_an_earlier_champion_never_trigger(reported, definitions):
    """Verdicts judged by v1 say nothing about the champion serving now."""

    paths, instance = reported
    first, _ = _last_two_report_ids(instance)
    cursor = f'{{"storage_id": {first - 1}, "last_trigger_day": null, "checked_at": 0}}'
    with champion_described_as(paths.lake, TASK, champion_version="99", last_day="2013-01-01"):
        tick = _drift_tick(definitions, instance, paths, cursor, drift_share=0.0)
    assert not tick.run_requests
    assert "no new verdicts of champion v99" in tick.skip_reason.skip_message


def test_thresholds_not_crossed_launch_nothing(reported, definitions):
    paths, instance = reported
    first, _ = _last_two_report_ids(instance)
    cursor = f'{{"storage_id": {first - 1}, "last_trigger_day": null, "checked_at": 0}}'
    tick = _drift_tick(
        definitions,
        instance,
        paths,
        cursor,
        drift_share=1.01,
        prediction_drift=False,
        max_live_auc_drop=1.0,
    )
    assert not tick.run_requests
    assert "within thresholds" in tick.skip_reason.skip_message


def _nightly_tick(definitions, instance, lake_root):
    schedule = definitions.get_schedule_def(f"{TASK}_nightly_retrain")
    moment = datetime(2026, 11, 23, 2, 0, tzinfo=ZoneInfo("America/New_York"))
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=moment,
        resources={"lake": LakeResource(lake_root=str(lake_root))},
    )
    return schedule.evaluate_tick(context)


def test_nightly_schedule_retrains_on_what_was_ingested_when_the_holdout_is_fair(
    definitions, instance, tmp_path
):
    """The replayed clock: "yesterday" is the last day every landing table has ingested (in
    live operation, yesterday), and the holdout before it must hold no day the champion trained on."""
    from pipelines.platform.lib.lake import Lake

    schedule = definitions.get_schedule_def(f"{TASK}_nightly_retrain")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "America/New_York"
    lake_root = tmp_path / "lake"
    assert "nothing of flight_delay ingested yet" in (
        _nightly_tick(definitions, instance, lake_root).skip_message
    )
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range("2013-01-01", "2013-01-20")]
    for table, last in (("raw_flights", "2013-01-20"), ("raw_weather", "2013-01-19")):
        for day in days:
            if day <= last:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(asset_key=dg.AssetKey([TASK, table]), partition=day)
                )
    lake = Lake(str(lake_root))
    reference = {"description": {"champion_version": "3", "last_day": "2013-01-15"}}
    lake.write_json(f"{TASK}/drift_reference", reference)
    unfair = _nightly_tick(definitions, instance, lake_root)
    assert "needs data until 2013-01-22" in unfair.skip_message
    reference["description"]["last_day"] = "2013-01-05"
    lake.write_json(f"{TASK}/drift_reference", reference)
    [request] = _nightly_tick(definitions, instance, lake_root).run_requests
    assert request.run_key == f"nightly:{TASK}:2013-01-19"  # weather ends there: complete days
    assert request.tags[RETRAIN_TAG] == TASK
    assert request.tags["flightline/trigger"] == "schedule"
    job = definitions.resolve_job_def(f"{TASK}_retrain")
    assert set(request.run_config["ops"]) == {
        f"{TASK}__lgbm_model",
        f"{TASK}__torch_model",
        f"{TASK}__model_evaluation",
    }
    assert {op["config"]["until"] for op in request.run_config["ops"].values()} == {"2013-01-19"}
    assert dg.validate_run_config(job, request.run_config)


def test_daily_job_holds_exactly_the_daily_partitioned_assets(definitions):
    graph = definitions.resolve_asset_graph()
    daily = {
        k
        for k in graph.materializable_asset_keys
        if graph.get(k).partitions_def is not None and k.path[0] == TASK
    }
    job = definitions.resolve_job_def(DAILY_JOB)
    assert set(job.asset_layer.selected_asset_keys) == daily


def test_the_landing_sensor_watches_the_bucket(
    definitions, instance, object_store, tmp_path, monkeypatch
):
    """Production profile: the replay lands in s3://<bucket>/landing and the sensor reads it there."""
    from pipelines.platform.lib.object_store import ObjectStoreUnavailable
    from pipelines.platform.lib.settings import DataPaths

    server, bucket = object_store
    monkeypatch.setenv("FLIGHTLINE_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("FLIGHTLINE_LANDING_DIR", raising=False)
    paths = DataPaths.from_env()
    assert paths.landing_for(TASK) == f"s3://{bucket}/landing/{TASK}"
    replay_days(paths.landing_for(TASK), date(2013, 1, 1), date(2013, 1, 1))
    first = landing_tick(definitions, instance, TASK, paths)
    [request] = first.run_requests
    assert request.partition_key == "2013-01-01"
    # Not ingested yet and no run in this test's instance: the sensor asks for it again.
    again = landing_tick(definitions, instance, TASK, paths, first.cursor)
    assert [r.partition_key for r in again.run_requests] == ["2013-01-01"]
    assert not (tmp_path / "data" / "landing").exists()  # nothing on the pod's disk
    server.relay.cut()
    with pytest.raises(ObjectStoreUnavailable, match=server.endpoint):
        landing_tick(definitions, instance, TASK, paths, first.cursor)
