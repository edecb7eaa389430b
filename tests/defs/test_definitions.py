import subprocess
import sys
from pathlib import Path

import dagster as dg

from pipelines.definitions import defs

ROOT = Path(__file__).resolve().parents[2]


def _graph():
    return defs().resolve_asset_graph()


def test_one_graph_with_a_group_per_stage():
    graph = _graph()
    groups = {graph.get(k).group_name for k in graph.materializable_asset_keys}
    assert groups == {"ingestion", "features", "training", "evaluation", "serving", "monitoring"}
    training_set = dg.AssetKey("training_set")
    upstream = graph.get(training_set).parent_keys
    assert {
        dg.AssetKey("flight_timeline"),
        dg.AssetKey("feast_definitions"),
        dg.AssetKey("weather_features"),
    } <= upstream


def test_model_half_hangs_off_the_training_set_behind_a_blocking_gate():
    graph = _graph()
    for model in ("lgbm_model", "torch_model"):
        assert graph.get(dg.AssetKey(model)).parent_keys == {dg.AssetKey("training_set")}
    evaluation = dg.AssetKey("model_evaluation")
    assert {dg.AssetKey("lgbm_model"), dg.AssetKey("torch_model")} <= graph.get(
        evaluation
    ).parent_keys
    assert graph.get(dg.AssetKey("champion")).parent_keys == {evaluation}
    [gate] = [k for k in graph.asset_check_keys if k.asset_key == evaluation]
    assert gate.name == "model_evaluation_gate" and graph.get_check_spec(gate).blocking


def test_raw_assets_have_blocking_checks_for_every_property():
    graph = _graph()
    for table in ("raw_flights", "raw_weather"):
        checks = {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey(table)}
        assert checks == {
            f"{table}_{c}"
            for c in (
                "schema",
                "keys_not_null",
                "values_in_range",
                "unique_rows",
                "on_partition_day",
                "row_count",
            )
        }
    specs = [spec for ad in defs().asset_checks for spec in ad.check_specs]
    assert specs and all(spec.blocking for spec in specs)


def test_daily_partitions_cover_2013_and_ranges_run_once():
    graph = _graph()
    node = graph.get(dg.AssetKey("raw_flights"))
    keys = node.partitions_def.get_partition_keys()
    assert keys[0] == "2013-01-01" and keys[-1] == "2013-12-31" and len(keys) == 365
    assert node.backfill_policy == dg.BackfillPolicy.single_run()


def test_dagster_cli_validates_the_code_location():
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_monitoring_hangs_off_the_champion_and_the_days():
    graph = _graph()
    key = dg.AssetKey
    assert graph.get(key("drift_reference")).parent_keys == {key("champion"), key("training_set")}
    assert graph.get(key("drift_report")).parent_keys == {
        key("drift_reference"),
        key("training_set"),
        key("prediction_log"),
    }
    assert key("drift_reference") in graph.get(key("live_performance")).parent_keys
    for daily in ("drift_report", "live_performance"):
        assert graph.get(key(daily)).partitions_def is not None
