import ast
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import defs
from pipelines.platform.components.definition import DefinitionError
from pipelines.platform.components.task import (
    DEFS_ROOT,
    load_definition,
    load_task,
    task_definition_paths,
)

ROOT = Path(__file__).resolve().parents[2]
TASK = "flight_delay"
# Every defs.yaml under pipelines/defs, read from the definitions: adding a task adds it here.
DEFINITIONS = {
    name: load_definition(path)
    for name, path in task_definition_paths().items()
    if path.is_relative_to(DEFS_ROOT)
}
TASKS = tuple(sorted(DEFINITIONS))


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey([TASK, name])


def _graph():
    return defs().resolve_asset_graph()


def test_one_graph_with_a_group_per_stage_under_the_task_prefix():
    graph = _graph()
    assert {k.path[0] for k in graph.materializable_asset_keys} == set(TASKS)
    groups = {graph.get(k).group_name for k in graph.materializable_asset_keys}
    stages = ("ingestion", "features", "training", "evaluation", "serving", "monitoring")
    assert groups == {f"{task}_{stage}" for task in TASKS for stage in stages}
    upstream = graph.get(key("training_set")).parent_keys
    assert {key("flight_timeline"), key("feast_definitions"), key("weather_features")} <= upstream


def test_model_half_hangs_off_the_training_set_behind_a_blocking_gate():
    graph = _graph()
    for model in ("lgbm_model", "torch_model"):
        assert graph.get(key(model)).parent_keys == {key("training_set")}
    evaluation = key("model_evaluation")
    assert {key("lgbm_model"), key("torch_model")} <= graph.get(evaluation).parent_keys
    assert graph.get(key("champion")).parent_keys == {evaluation}
    [gate] = [k for k in graph.asset_check_keys if k.asset_key == evaluation]
    assert gate.name == "model_evaluation_gate" and graph.get_check_spec(gate).blocking


def test_raw_assets_have_blocking_checks_for_every_property():
    graph = _graph()
    for table in ("raw_flights", "raw_weather"):
        checks = {k.name for k in graph.asset_check_keys if k.asset_key == key(table)}
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
    # The live skew check judges what was served (monitoring): it reports, it does not block.
    monitoring = [s for s in specs if s.name == "prediction_log_live_skew"]
    assert len(monitoring) == 2  # one per real task
    assert specs and all(s.blocking for s in specs if s.name != "prediction_log_live_skew")


def test_daily_partitions_cover_2013_and_ranges_run_once():
    graph = _graph()
    node = graph.get(key("raw_flights"))
    keys = node.partitions_def.get_partition_keys()
    assert keys[0] == "2013-01-01" and keys[-1] == "2013-12-31" and len(keys) == 365
    # A year runs as one run; longer ranges as one run per year of days (bounded memory).
    assert node.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=366)


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
    assert graph.get(key("drift_reference")).parent_keys == {key("champion"), key("training_set")}
    assert graph.get(key("drift_report")).parent_keys == {
        key("drift_reference"),
        key("training_set"),
        key("prediction_log"),
    }
    assert key("drift_reference") in graph.get(key("live_performance")).parent_keys
    for daily in ("drift_report", "live_performance"):
        assert graph.get(key(daily)).partitions_def is not None
    # The log hangs from what served it: bento -> deployment -> prediction_log -> drift_report.
    assert graph.get(key("prediction_log")).parent_keys == {key("deployment")}
    assert graph.get(key("deployment")).parent_keys == {key("bento")}


def test_each_task_owns_its_jobs_sensors_and_schedule():
    definitions = defs()
    assert {j.name for j in definitions.jobs} == {
        f"{task}_{job}"
        for task in TASKS
        for job in ("reference_data", "partitions", "retrain", "rollback", "deployment")
    }
    assert {s.name for s in definitions.sensors} == {
        f"{task}_{sensor}_sensor" for task in TASKS for sensor in ("landing", "drift", "alert")
    } | {"run_failure_alerts", "run_recovery_alerts"}
    schedules = {s.name: (s.cron_schedule, s.execution_timezone) for s in definitions.schedules}
    assert schedules == {
        f"{task}_nightly_retrain": (d.automation.retrain_cron, d.automation.timezone)
        for task, d in DEFINITIONS.items()
    }
    assert schedules[f"{TASK}_nightly_retrain"] == ("0 2 * * *", "America/New_York")
    for task in TASKS:  # a task's drift sensor retrains that task only
        [target] = definitions.get_sensor_def(f"{task}_drift_sensor").targets
        assert target.job_name == f"{task}_retrain"
        keys = definitions.resolve_job_def(f"{task}_retrain").asset_layer.selected_asset_keys
        assert {k.path[0] for k in keys} == {task}


def test_the_second_task_loads_from_its_definition():
    """wind_power: Paris days over 2014-2015 (10-minute predictions inside), its own run window,
    a rate baseline and three that score with a feature, its FeatureService read from
    declarations only, its model families' own default hyper-parameters."""
    graph = _graph()
    raw = graph.get(dg.AssetKey(["wind_power", "raw_scada"]))
    days = raw.partitions_def.get_partition_keys()
    assert days[0] == "2014-01-01" and days[-1] == "2015-12-31" and len(days) == 730
    assert raw.partitions_def.timezone == "Europe/Paris"
    features = graph.get(dg.AssetKey(["wind_power", "scada_features"]))
    assert features.parent_keys == {raw.key}
    task = load_task("wind_power")
    assert (task.definition.run_window.start, task.definition.run_window.end) == (
        "2014-07-30",
        "2014-10-15",
    )
    assert [(b.label, b.feature) for b in task.spec.declared_baselines()] == [
        ("baseline", None),
        ("baseline_momentum", "power_10m_vs_1h"),
        ("baseline_power_variability", "power_std_1h"),
        ("baseline_wind_trend", "wind_trend_1h"),
    ]
    assert "power_mean_1h" in task.spec.numeric_features
    assert task.spec.categorical_features == ("turbine",)
    assert task.definition.models.params["lightgbm"] == {"num_leaves": 7, "min_data_in_leaf": 400}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_platform_never_imports_a_task():
    """Platform code knows no task: tasks are referenced from their defs.yaml only."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in _imports(path) if n.startswith("pipelines.tasks")
        )
        for folder in ("pipelines/platform", "serving")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert {p: names for p, names in offenders.items() if names} == {}
    # The scaffold's templates (the task's modules and its test) import their own package
    # relatively or reach it through load_task, never a task by name.
    templates = {
        str(path.relative_to(ROOT)): line
        for path in (ROOT / "pipelines/platform/scaffold/template").rglob("*.py.tmpl")
        for line in path.read_text().splitlines()
        if line.startswith(("from pipelines.tasks", "import pipelines.tasks"))
    }
    assert templates == {}
    assert {p.name for p in (ROOT / "pipelines" / "defs").rglob("*.py")} <= {"__init__.py"}


def _write_definition(tmp_path: Path, change) -> Path:
    import yaml

    document = yaml.safe_load((ROOT / "pipelines/defs/flight_delay/defs.yaml").read_text())
    change(document["attributes"])
    path = tmp_path / "defs.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda a: a.update(lead_minute=60), "lead_minute"),
        (lambda a: a["examples"].update(lead_minutes="an hour"), "examples.lead_minutes"),
        (lambda a: a["partitions"].update(grain="weekly"), "partitions.grain"),
        (lambda a: a["models"].update(families=["lightgbm", "xgboost"]), "models.families"),
        (
            lambda a: a["feature_tables"][0].update(inputs=["raw_flight"]),
            "feature_tables.flight_timeline.inputs",
        ),
        (lambda a: a["serving"].update(earliest="2013-13-01"), "serving.earliest"),
        (lambda a: a["serving"].update(latest="2012-01-01"), "serving.earliest"),
        (lambda a: a["serving"].update(time_field=""), "serving.earliest"),
        (lambda a: a["serving"].update(max_body_bytes=0), "serving.max_body_bytes"),
        (
            lambda a: a.update(
                baselines=[{"name": "both", "rate_by": ["carrier"], "feature": "x"}]
            ),
            "baselines.both",
        ),
        (lambda a: a.update(run_window={"start": "2013-02-01", "end": "2013-01-01"}), "run_window"),
        (lambda a: a.update(monitoring={"drift_min_rows": 0}), "monitoring.drift_min_rows"),
        (lambda a: a.update(monitoring={"min_rows": 90}), "monitoring.min_rows"),
    ],
)
def test_a_malformed_definition_names_its_file_and_field(tmp_path, change, field):
    path = _write_definition(tmp_path, change)
    with pytest.raises(DefinitionError) as error:
        load_definition(path)
    assert str(path) in str(error.value) and field in str(error.value)


def test_declared_baselines_reach_the_spec(tmp_path):
    path = _write_definition(
        tmp_path,
        lambda a: a.update(baselines=[{"name": "distance_only", "feature": "distance"}]),
    )
    spec = load_task(TASK, path).spec
    assert [(b.label, b.columns) for b in spec.declared_baselines()] == [
        ("baseline", ("carrier", "sched_dep_hour")),
        ("baseline_distance_only", ("distance",)),
    ]
    # The label is no feature: a baseline scoring with it would see the future.
    late = _write_definition(
        tmp_path, lambda a: a.update(baselines=[{"name": "late", "feature": "label"}])
    )
    with pytest.raises(DefinitionError, match="baseline late reads non-features"):
        load_task(TASK, late)


def test_a_wrong_reference_names_the_field(tmp_path):
    path = _write_definition(
        tmp_path,
        lambda a: a["landing_tables"][0].update(
            contract="pipelines.tasks.flight_delay.contracts:FLIGHT"
        ),
    )
    task = load_task(TASK, path)
    with pytest.raises(
        DefinitionError, match=r"landing_tables\.flights\.contract: .* no attribute 'FLIGHT'"
    ):
        task.contracts  # noqa: B018 - resolving the reference is the point


def test_the_code_location_reports_a_malformed_definition_with_file_and_line(tmp_path, monkeypatch):
    """dg's loader (what the UI and `dagster` CLI use) names the file and line of a bad field."""
    project = tmp_path / "badproject"
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dg]\ndirectory_type = "project"\n[tool.dg.project]\n'
        'root_module = "badproject"\ndefs_module = "badproject.defs"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    defs_dir = project / "defs" / TASK
    defs_dir.mkdir(parents=True)
    (project / "defs" / "__init__.py").write_text("")
    (project / "__init__.py").write_text("")
    path = _write_definition(tmp_path, lambda a: a["examples"].update(lead_minutes="an hour"))
    (defs_dir / "defs.yaml").write_text(path.read_text())
    with pytest.raises(Exception) as error:
        dg.load_from_defs_folder(path_within_project=project / "defs")
    message = str(error.value) + str(error.value.__cause__)
    assert "defs.yaml" in message and "lead_minutes" in message
