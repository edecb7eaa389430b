"""Two tasks in one code location: flight delay (daily) and the tests' toy sensor task (hourly,
tests/tasks/toy_sensor). The toy task's whole life materializes from its definition alone, and
neither task's jobs, sensors, models, Bentos or folders touch the other's."""

import importlib
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from starlette.testclient import TestClient

from pipelines.definitions import defs
from pipelines.platform.cli import _partitions_between, materialize_window, run_succeeded
from pipelines.platform.components.task import DEFS_PATH_ENV, build_task_defs, load_task
from pipelines.platform.lib.settings import DataPaths
from tests.sensor_ticks import landing_tick, skip_message

ROOT = Path(__file__).resolve().parents[2]
TOY_DEFS = ROOT / "tests" / "tasks"
TOY, FLIGHTS = "toy_sensor", "flight_delay"
START, END = date(2024, 3, 1), date(2024, 3, 14)


@pytest.fixture(scope="module")
def env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DEFS_PATH_ENV, str(TOY_DEFS))
        yield mp


@pytest.fixture(scope="module")
def both(env):
    """The code location's definitions plus the toy task, as a second defs.yaml would add it."""
    return dg.Definitions.merge(defs(), build_task_defs(load_task(TOY)))


def _keys(definitions, job: str) -> set[dg.AssetKey]:
    return set(definitions.resolve_job_def(job).asset_layer.selected_asset_keys)


def test_each_task_has_its_own_jobs_sensors_and_schedule(both):
    for task in (TOY, FLIGHTS):
        for job in (f"{task}_retrain", f"{task}_partitions"):
            keys = _keys(both, job)
            assert keys and {k.path[0] for k in keys} == {task}, job
        retrain = {k.path[-1] for k in _keys(both, f"{task}_retrain")}
        assert retrain == {
            "lgbm_model",
            "torch_model",
            "model_evaluation",
            "champion",
            "bento",
            "deployment",
            "drift_reference",
        }
        tags = both.resolve_job_def(f"{task}_retrain").tags
        assert tags["flightline/retrain"] == task  # one retrain per task at a time, tasks apart
        assert both.get_sensor_def(f"{task}_landing_sensor")
        assert both.get_schedule_def(f"{task}_nightly_retrain")
        drift = both.get_sensor_def(f"{task}_drift_sensor")
        assert [t.job_name for t in drift.targets] == [f"{task}_retrain"]
    graph = both.resolve_asset_graph()
    toy_raw = graph.get(dg.AssetKey([TOY, "raw_readings"]))
    assert toy_raw.partitions_def.get_partition_keys()[:2] == [
        "2024-03-01-00:00",
        "2024-03-01-01:00",
    ]
    assert graph.get(dg.AssetKey([TOY, "training_set"])).group_name == f"{TOY}_training"


def test_one_tasks_landed_files_never_launch_the_other(both, instance, data_paths):
    task = load_task(TOY)
    task.domain.replay(data_paths.landing_for(TOY), date(2024, 3, 1), date(2024, 3, 1))
    flight = landing_tick(both, instance, FLIGHTS, data_paths)
    assert not flight.run_requests and "nothing landed" in skip_message(flight)
    toy = landing_tick(both, instance, TOY, data_paths)
    [backfill] = toy.run_requests  # 24 new hours: one backfill of the toy's partitioned assets
    subset = backfill.asset_graph_subset
    assert {k.path[0] for k in subset.partitions_subsets_by_asset_key} == {TOY}
    assert set(subset.partitions_subsets_by_asset_key) == _keys(both, f"{TOY}_partitions")
    key = dg.AssetKey([TOY, "raw_readings"])
    hours = sorted(subset.get_partitions_subset(key).get_partition_keys())
    assert hours[0] == "2024-03-01-00:00" and hours[-1] == "2024-03-01-23:00" and len(hours) == 24

    task.domain.replay(data_paths.landing_for(TOY), date(2024, 3, 2), date(2024, 3, 2))
    more = landing_tick(both, instance, TOY, data_paths, toy.cursor)
    [next_day] = more.run_requests  # nothing ingested yet in this test: both days, one backfill
    assert backfill.tags["flightline/task"] == next_day.tags["flightline/task"] == TOY


def test_a_window_is_clipped_to_a_tasks_calendar():
    daily = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")
    assert _partitions_between(daily, date(2012, 12, 30), date(2013, 1, 2)) == [
        "2013-01-01",
        "2013-01-02",
    ]
    assert _partitions_between(daily, date(2013, 12, 31), date(2014, 1, 5)) == ["2013-12-31"]
    assert _partitions_between(daily, START, END) == []  # the toy's days are not flight delay's


def test_a_window_without_a_task_runs_each_task_that_has_partitions_in_it(
    env, instance, data_paths
):
    """Tasks keep their own calendars: the toy's days are nothing to flight delay (2013)."""
    load_task(TOY).domain.replay(data_paths.landing_for(TOY), START, START)
    both = dg.Definitions.merge(defs(), build_task_defs(load_task(TOY)))
    results = materialize_window(
        START, START, instance, only={"raw_readings", "raw_flights"}, definitions=both
    )
    [run] = results
    assert run.success
    built = {e.asset_key.path[0] for e in run.get_asset_materialization_events()}
    assert built == {TOY}


@pytest.fixture(scope="module")
def toy_built(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("two_tasks")
    (root / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        env.setenv("FLIGHTLINE_DATA_ROOT", str(root / "data"))
        paths = DataPaths.from_env()
        task = load_task(TOY)
        task.domain.replay(paths.landing_for(TOY), START, END)
        # Resources follow the data root at definition time: the definitions come after it.
        both = dg.Definitions.merge(defs(), build_task_defs(load_task(TOY)))
        results = materialize_window(START, END, instance, task=TOY, definitions=both)
        yield paths, instance, results, both


@pytest.mark.slow
def test_the_toy_task_lives_its_whole_life_from_its_definition(toy_built):
    paths, _, results, _ = toy_built
    assert run_succeeded(results), [r.success for r in results]
    built = {
        key
        for r in results
        for key in (
            e.step_materialization_data.materialization.asset_key
            for e in r.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"
        )
    }
    names = {k.path[-1] for k in built}
    assert {k.path[0] for k in built} == {TOY}  # nothing of flight delay ran
    assert {
        "raw_readings",
        "reading_features",
        "examples",
        "feast_definitions",
        "online_features",
        "training_set",
        "lgbm_model",
        "torch_model",
        "model_evaluation",
        "champion",
        "bento",
        "drift_reference",
        "prediction_log",
        "drift_report",
        "live_performance",
    } <= names
    checks = {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for r in results
        for e in r.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks["raw_readings_on_partition_day"] and checks["bento_feature_skew"]
    # Hourly partitions, a two-hour label: 14 days of readings, the first two hours unlabelled.
    training = pd.concat(
        pd.read_parquet(p)
        for p in sorted((Path(paths.lake) / TOY / "training_set").glob("*.parquet"))
    )
    assert len(training) == 14 * 24 * 4
    assert (training["event_timestamp"] == training["predicted_at"]).all()
    assert training["temperature"].notna().mean() > 0.95

    from pipelines.platform.resources_config import embedded_resources

    registry = embedded_resources()["mlflow"].registry()
    assert registry.alias(TOY, "champion") is not None
    assert registry.alias(FLIGHTS, "champion") is None
    assert (paths.root / "serving" / TOY / "latest.json").exists()
    assert not (paths.root / "serving" / FLIGHTS).exists()


def test_the_toy_task_tunes_lightgbm_from_its_definition(toy_built):
    """Its defs.yaml declares 3 trials for LightGBM: child runs of the family's run, the best
    refitted and registered, a card and a reproduction record beside it; torch trains once."""
    from pipelines.platform.lib.model_card import CARD_MD
    from pipelines.platform.lib.reproduce import RECORD_ARTIFACT
    from pipelines.platform.resources_config import embedded_resources

    registry = embedded_resources()["mlflow"].registry()
    versions = registry.client.search_model_versions(f"name = '{TOY}'")
    tuned = [v for v in versions if v.tags.get("tuning.study")]
    assert tuned and all(v.tags["model_family"] == "lightgbm" for v in tuned)
    experiment = registry.client.get_run(tuned[0].run_id).info.experiment_id
    runs = {v.run_id for v in tuned}
    for study in {v.tags["tuning.study"] for v in tuned}:  # a re-run of a window resumes its study
        trials = registry.client.search_runs(
            [experiment], filter_string=f"tags.`optuna.study` = '{study}'"
        )
        assert len(trials) == 3
        assert {t.data.tags["mlflow.parentRunId"] for t in trials} <= runs
    assert "Known limits" in registry.read_artifact(tuned[0].run_id, CARD_MD)
    assert registry.read_artifact(tuned[0].run_id, RECORD_ARTIFACT)


@pytest.mark.slow
def test_the_toy_tasks_own_drift_minimum_judges_an_hour_of_four_readings(toy_built):
    """An hourly partition holds 4 readings, under the platform's 200-row minimum: the toy's
    definition sets its own (monitoring.drift_min_rows: 4), so, once a champion exists, an hour's
    drift is judged rather than "insufficient"."""
    _, instance, _, both = toy_built
    job = both.resolve_job_def(f"{TOY}_partitions").get_subset(
        asset_selection={dg.AssetKey([TOY, "prediction_log"]), dg.AssetKey([TOY, "drift_report"])}
    )
    result = job.execute_in_process(
        instance=instance,
        partition_key="2024-03-14-20:00",
        run_config={"ops": {f"{TOY}__drift_report": {"config": {"evidently_html": False}}}},
    )
    [report] = result.asset_materializations_for_node(f"{TOY}__drift_report")
    assert report.metadata["status"].value in ("drift", "no_drift"), report.metadata
    assert report.metadata["current_rows"].value == 4


@pytest.mark.slow
def test_the_toy_service_answers_and_refuses_with_its_own_schema(toy_built, env):
    import json

    paths, _, _, _ = toy_built
    latest = json.loads((paths.root / "serving" / TOY / "latest.json").read_text())
    env.setenv("FLIGHTLINE_TASK", TOY)
    env.setenv("FLIGHTLINE_BENTO_MODEL", latest["model"])
    sys.modules.pop("serving.service", None)
    service = importlib.import_module("serving.service")
    try:
        with TestClient(service.PredictionService.to_asgi()) as client:
            ok = client.post(
                "/predict",
                json={"reading": {"machine": "m2", "predicted_at": "2024-03-14T20:00:00Z"}},
            )
            assert ok.status_code == 200, ok.text
            body = ok.json()
            assert 0 <= body["hot_probability"] <= 1 and body["model_name"] == TOY
            assert set(body["feature_age_seconds"]) == {"toy_machine_latest"}
            bad = client.post(
                "/predict",
                json={"reading": {"machine": "m9", "predicted_at": "2024-03-14T20:00:00Z"}},
            )
            assert bad.status_code == 400 and "machine" in bad.text
            batch = client.post(
                "/predict_batch",
                json={
                    "readings": [
                        {"machine": m, "predicted_at": "2024-03-14T20:00:00Z"} for m in ("m1", "m3")
                    ]
                },
            )
            assert batch.status_code == 200 and len(batch.json()) == 2
    finally:
        sys.modules.pop("serving.service", None)
