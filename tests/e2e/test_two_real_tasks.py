"""Both real tasks in one code location, one Dagster instance and one data root: flight delay
(the nine-day fixture) and wind power (78 days of La Haute Borne SCADA readings, a prediction
every 10 minutes of a turbine's ramp-up in the hour starting an hour ahead).

Wind power's first challenger is a null model (trained on shuffled labels): the gate compares
it with the strongest declared baseline and refuses it. A real challenger then becomes champion,
both services answer, each task's drift sensor launches only its own retrain, and no training row
of wind power carries a reading stamped after its prediction time."""

import importlib
import json
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from starlette.testclient import TestClient

from pipelines.definitions import defs
from pipelines.platform.cli import materialize_window, run_succeeded
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.lake import Lake
from pipelines.platform.resources import LakeResource, RetrainPolicy
from pipelines.platform.resources_config import embedded_resources
from pipelines.tasks.wind_power.source import read_scada
from tests.sensor_ticks import champion_described_as
from tests.tasks.wind_power.readings import (
    assert_rows_carry_the_last_complete_reading,
    scada_readings,
)

WIND, FLIGHTS = "wind_power", "flight_delay"
START, END = date(2014, 7, 30), date(2014, 10, 15)  # the definition's run window
SPLIT = {"validation_days": 4, "holdout_days": 7}
MODEL_ASSETS = {
    "lgbm_model",
    "torch_model",
    "model_evaluation",
    "champion",
    "bento",
    "drift_reference",
}
# The first test pays for both tasks' builds (flight delay's fixture if no earlier test did).
pytestmark = pytest.mark.timeout(1200)


def _config(**model) -> dict:
    return {
        "ops": {
            f"{WIND}__lgbm_model": {"config": {**SPLIT, **model}},
            f"{WIND}__torch_model": {"config": {**SPLIT, "max_epochs": 8, **model}},
            f"{WIND}__model_evaluation": {
                "config": {**SPLIT, "bootstrap_samples": 300, "min_holdout_rows": 100}
            },
        }
    }


def _gate(results) -> list:
    return [
        e.event_specific_data
        for r in results
        for e in r.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == "model_evaluation_gate"
    ]


def _registry():
    return embedded_resources()["mlflow"].registry()


@pytest.fixture(scope="module")
def together(built):
    """Wind power lived next to the built flight task: a null challenger, then a real one."""
    paths, instance, flight_results = built
    assert run_succeeded(flight_results)
    load_task(WIND).domain.replay(paths.landing_for(WIND), START, END)
    # A shuffled-label model can only tie a baseline by luck: the gate must refuse it.
    null = materialize_window(
        START, END, instance, task=WIND, run_config=_config(label_permutation_seed=1)
    )
    # The refused challenger's evaluation, read before the real one's replaces it in the lake.
    null_report = json.loads(Path(paths.lake, WIND, "model_evaluation", "data.json").read_text())
    real = materialize_window(
        START, END, instance, task=WIND, only=MODEL_ASSETS, run_config=_config()
    )
    return paths, instance, (null, null_report), real


@pytest.mark.slow
def test_the_gate_refuses_a_first_challenger_below_the_strongest_baseline(together):
    _, _, (null, report), _ = together
    assert run_succeeded(null)  # a refusal is an outcome, not an error
    [gate] = _gate(null)
    assert not gate.passed
    metrics = report["metrics"]
    baselines = set(report["baselines"])
    assert baselines == {
        "baseline",
        "baseline_momentum",
        "baseline_power_variability",
        "baseline_wind_trend",
    }
    strongest = max(baselines, key=lambda b: metrics[b]["roc_auc"])
    assert report["reference"] == report["strongest_baseline"] == strongest
    assert f"reference: the {strongest}" in gate.description
    assert metrics[strongest]["roc_auc"] > 0.6  # a baseline that means something


@pytest.mark.slow
def test_a_real_challenger_becomes_champion_and_flight_delay_keeps_its_own(together):
    paths, _, _, real = together
    assert run_succeeded(real)
    [gate] = _gate(real)
    assert gate.passed, gate.description
    assert "reference: the baseline" in gate.description  # the strongest baseline: no champion yet
    registry = _registry()
    wind, flight = registry.alias(WIND, "champion"), registry.alias(FLIGHTS, "champion")
    assert wind is not None and flight is not None
    assert wind.tags["task"] == WIND and flight.tags["task"] == FLIGHTS
    for task in (WIND, FLIGHTS):
        assert (paths.root / "serving" / task / "latest.json").exists()
    built = {e.asset_key.path[0] for r in real for e in r.get_asset_materialization_events()}
    assert built == {WIND}


@pytest.mark.slow
def test_no_training_row_carries_a_reading_stamped_after_its_prediction_time(together):
    """The row made at t carries the reading of [t - 10 min, t), stamped t; the reading of
    [t, t + 10 min) is stamped t + 10 min and must never appear in it."""
    paths, _, _, _ = together
    lake = Lake(paths.lake)
    table = f"{WIND}/training_set"
    training = lake.read_partitions(table, lake.partitions(table))
    assert len(training) > 20_000
    assert_rows_carry_the_last_complete_reading(
        training, training["predicted_at"], scada_readings(read_scada())
    )
    assert (training["event_timestamp"] == training["predicted_at"]).all()


def _service(monkeypatch, paths, task: str):
    latest = json.loads((paths.root / "serving" / task / "latest.json").read_text())
    monkeypatch.setenv("FLIGHTLINE_TASK", task)
    monkeypatch.setenv("FLIGHTLINE_BENTO_MODEL", latest["model"])
    sys.modules.pop("serving.service", None)
    return importlib.import_module("serving.service").PredictionService


@pytest.mark.slow
def test_both_services_answer_with_their_own_schema(together, monkeypatch):
    paths, _, _, _ = together
    flight = {
        "carrier": "UA",
        "flight": 1545,
        "tailnum": "N14228",
        "origin": "EWR",
        "dest": "IAH",
        "sched_dep": "2013-01-09T17:00:00",
        "distance": 1400,
    }
    turbine_now = {"turbine": "R80711", "predicted_at": "2014-10-16T00:10:00+02:00"}
    try:
        with TestClient(_service(monkeypatch, paths, WIND).to_asgi()) as client:
            ok = client.post("/predict", json={"turbine_now": turbine_now})
            assert ok.status_code == 200, ok.text
            body = ok.json()
            assert 0 <= body["ramp_up_probability"] <= 1 and body["model_name"] == WIND
            assert set(body["feature_age_seconds"]) == {"turbine_recent_scada"}
            bad = client.post(
                "/predict", json={"turbine_now": {**turbine_now, "turbine": "R99999"}}
            )
            assert bad.status_code == 400 and "turbine" in bad.text
            wrong_task = client.post("/predict", json={"flight": flight})
            assert wrong_task.status_code == 400 and "turbine_now" in wrong_task.text
        with TestClient(_service(monkeypatch, paths, FLIGHTS).to_asgi()) as client:
            ok = client.post("/predict", json={"flight": flight})
            assert ok.status_code == 200, ok.text
            assert ok.json()["model_name"] == FLIGHTS and "delay_probability" in ok.json()
    finally:
        sys.modules.pop("serving.service", None)


def _drift_tick(definitions, instance, paths, task: str):
    context = dg.build_sensor_context(
        instance=instance,
        definitions=definitions,
        resources={
            "lake": LakeResource(lake_root=paths.lake),
            "retrain_policy": RetrainPolicy(drift_share=0.0),  # any report crosses it
        },
    )
    return definitions.get_sensor_def(f"{task}_drift_sensor")(context)


@pytest.mark.slow
def test_each_drift_sensor_launches_only_its_own_retrain(together):
    paths, instance, _, _ = together
    definitions = defs()
    # Two days of reports against the new champion: 576 rows a day, enough to be judged.
    days = ["2014-10-14", "2014-10-15"]
    job = definitions.resolve_job_def(f"{WIND}_partitions").get_subset(
        asset_selection={
            dg.AssetKey([WIND, "prediction_log"]),
            dg.AssetKey([WIND, "drift_report"]),
        }
    )
    for day in days:
        result = job.execute_in_process(
            instance=instance,
            partition_key=day,
            run_config={"ops": {f"{WIND}__drift_report": {"config": {"evidently_html": False}}}},
        )
        assert result.success
        [report] = result.asset_materializations_for_node(f"{WIND}__drift_report")
        assert report.metadata["status"].value in ("drift", "no_drift"), report.metadata
    # The champion's validation days run to 10-09: a 7-day holdout ending on 10-14/15 would hold
    # them (the sensor waits, see test_sensors). As if it had trained on less, it launches.
    with champion_described_as(paths.lake, WIND, first_day="2014-07-01", last_day="2014-10-01"):
        wind = _drift_tick(definitions, instance, paths, WIND)
    assert len(wind.run_requests or []) == 1, wind.skip_reason
    [request] = wind.run_requests
    assert request.job_name == f"{WIND}_retrain"
    assert request.tags["flightline/retrain"] == WIND
    assert {op.split("__")[0] for op in request.run_config["ops"]} == {WIND}
    # Flight delay's sensor reads flight delay's reports only: whatever it decides, it never
    # launches wind power's retrain.
    flight = _drift_tick(definitions, instance, paths, FLIGHTS)
    assert all(r.job_name == f"{FLIGHTS}_retrain" for r in flight.run_requests or [])
    assert all(r.tags["flightline/retrain"] == FLIGHTS for r in flight.run_requests or [])
