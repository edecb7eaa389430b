"""A real `dagster-daemon` against a temporary instance: landed days become partition runs and
backfills, a restart resumes from the cursors without duplicates, and two retrains queued at once
run one after the other and promote once (nine days, as the e2e fixture: enough to beat the
baseline)."""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pipelines.platform.cli import materialize_window
from pipelines.platform.lib.settings import PROJECT_ROOT, DataPaths
from pipelines.platform.lib.tracking import ModelRegistry
from pipelines.platform.live_operation import Daemon, ticks_since
from pipelines.platform.sqlite_event_log import embedded_profile_yaml
from pipelines.tasks.flight_delay.replay import replay_days
from tests.conftest import source_day
from tests.pipeline_fixture import MODEL_RUN_CONFIG

# Deadlines of the waits on the daemon's work: a backfill of five days or a retrain takes 1-3
# min on a quiet 2-core machine, each run worker paying the code location's load (2.6 s quiet,
# 4-5 s at load average 4-5, benchmarks/cold_start.py); ~5x that for a machine shared by other
# sessions. The pytest timeout of a test is above the sum of its waits: they fail first, with
# the daemon's log.
RUN_WAIT = 900
pytestmark = [pytest.mark.slow, pytest.mark.timeout(4 * RUN_WAIT)]
BIN = Path(sys.executable).parent
REFERENCE_TABLES = {"planes", "airports", "airlines", "plane_features", "feast_definitions"}


def _cli(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "dagster"), *args, "-w", str(PROJECT_ROOT / "workspace.yaml")],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(condition, timeout: float, what: str, daemon_log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)
    tail = daemon_log.read_text()[-3000:] if daemon_log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}; daemon log tail:\n{tail}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("daemon")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(embedded_profile_yaml())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FLIGHTLINE_DATA_ROOT": str(root / "data"),
        "MLFLOW_LOGGING_LEVEL": "ERROR",
        "FLIGHTLINE_SENSOR_TICK_SECONDS": "5",  # the waits below count ticks: shorter ones
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        mp.setenv("FLIGHTLINE_DATA_ROOT", str(root / "data"))
        paths = DataPaths.from_env()
        instance = dg.DagsterInstance.get()
        # Reference tables are not daily: built once, as `make run` does.
        replay_days(paths.landing_for("flight_delay"), date(2013, 1, 1), date(2013, 1, 5))
        assert all(
            r.success
            for r in materialize_window(
                date(2013, 1, 1), date(2013, 1, 5), instance, only=REFERENCE_TABLES
            )
        )
        started = _cli(env, "sensor", "start", "--start-all")
        assert started.wait(timeout=RUN_WAIT) == 0, started.stdout.read()
        daemon = Daemon(env, root / "daemon.log")
        daemon.start()
        try:
            yield paths, instance, daemon, env
        finally:
            daemon.stop()


def _landing_runs(instance) -> list[dg.DagsterRun]:
    return [
        r for r in instance.get_runs() if r.tags.get("flightline/trigger") in ("landed", "replaced")
    ]


def _finished(runs) -> bool:
    return bool(runs) and all(r.is_finished for r in runs)


def _days_of(run: dg.DagsterRun) -> str:
    tags = run.tags
    return tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
    )


def test_landed_days_run_once_across_a_daemon_restart(site):
    paths, instance, daemon, _ = site
    log = daemon.log
    _wait(
        lambda: _finished(runs := _landing_runs(instance)) and runs,
        RUN_WAIT,
        "the backfill of the first five days",
        log,
    )
    [first] = _landing_runs(instance)
    assert first.status == dg.DagsterRunStatus.SUCCESS
    assert _days_of(first) == "2013-01-01..2013-01-05"
    assert first.tags.get("dagster/backfill")

    # The daemon goes down; four more days land and a corrected file replaces day 3.
    daemon.stop()
    replay_days(paths.landing_for("flight_delay"), date(2013, 1, 6), date(2013, 1, 9))
    # Same flights, another order: a new file (new hash) that leaves the data as the e2e fixture's.
    corrected = source_day("flights", "2013-01-03").iloc[::-1]
    corrected.to_csv(
        Path(paths.landing_for("flight_delay")) / "flights" / "2013-01-03.csv",
        index=False,
        na_rep="NA",
    )
    daemon.start()
    runs = _wait(
        lambda: len(runs := _landing_runs(instance)) >= 3 and _finished(runs) and runs,
        RUN_WAIT,
        "the new days and the re-run",
        log,
    )
    # More sensor ticks after the last run ended: nothing further may be launched. Counted, not
    # slept: a busy daemon ticks late.
    quiet_since = max(instance.get_run_record_by_id(r.run_id).end_time for r in runs)
    _wait(
        lambda: ticks_since(instance, "flight_delay_landing_sensor", quiet_since) >= 2,
        RUN_WAIT,
        "two landing-sensor ticks after the last run",
        log,
    )
    runs = _landing_runs(instance)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [
        (r.run_id, r.status) for r in runs
    ]
    by_days = Counter(_days_of(r) for r in runs)
    assert by_days == {"2013-01-01..2013-01-05": 1, "2013-01-06..2013-01-09": 1, "2013-01-03": 1}
    [rerun] = [r for r in runs if r.tags["flightline/trigger"] == "replaced"]
    assert _days_of(rerun) == "2013-01-03"
    assert len(instance.get_backfills()) == 2
    counts = Counter(
        r.partition_key
        for r in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["flight_delay", "training_set"])),
            limit=100,
        ).records
    )
    assert counts == {f"2013-01-0{d}": 2 if d == 3 else 1 for d in range(1, 10)}
    day3 = pd.read_parquet(Path(paths.lake) / "flight_delay" / "raw_flights" / "2013-01-03.parquet")
    assert day3["flight"].tolist() == corrected["flight"].tolist()  # the lake holds the new file


def test_two_retrains_queued_at_once_run_one_at_a_time_and_promote_once(site):
    paths, instance, daemon, env = site
    # The e2e fixture's configuration on the same nine days, which promotes over the baseline.
    config = {
        "ops": {
            name: {"config": {**op["config"], "until": "2013-01-09"}}
            for name, op in MODEL_RUN_CONFIG["ops"].items()
        }
    }
    launches = [
        _cli(
            env,
            "job",
            "launch",
            "-j",
            "flight_delay_retrain",
            "--config-json",
            json.dumps(config),
            "--tags",
            json.dumps({"flightline/trigger": "test"}),
        )
        for _ in range(2)
    ]
    for launch in launches:
        assert launch.wait(timeout=RUN_WAIT) == 0, launch.stdout.read()

    def retrains():
        return instance.get_runs(dg.RunsFilter(job_name="flight_delay_retrain"))

    runs = _wait(
        lambda: len(r := retrains()) == 2 and _finished(r) and r,
        2 * RUN_WAIT,
        "both retrains",
        daemon.log,
    )
    first, second = sorted(runs, key=lambda r: instance.get_run_record_by_id(r.run_id).start_time)
    first_record = instance.get_run_record_by_id(first.run_id)
    second_record = instance.get_run_record_by_id(second.run_id)
    # The run queue's tag limit: the second started only after the first ended.
    assert second_record.start_time >= first_record.end_time
    assert first.status == dg.DagsterRunStatus.SUCCESS, _gate(instance, first)
    assert first.status == dg.DagsterRunStatus.SUCCESS
    # Same data, same seed: the second challenger is no better than the champion it now faces.
    # A refusal is an outcome: the run succeeds, the champion stays, nothing downstream rebuilt.
    assert second.status == dg.DagsterRunStatus.SUCCESS
    champion_events = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["flight_delay", "champion"])), limit=10
    ).records
    assert [e.run_id for e in champion_events] == [first.run_id]
    registry = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
    champion = registry.alias("flight_delay", "champion")
    assert champion.tags["promoted_by_run"] == first.run_id
    gate = _gate(instance, second)
    assert [g.passed for g in gate] == [False]
    assert "refuse" in gate[0].description


def _gate(instance, run) -> list:
    return [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
