"""ingestion -> training_set materialized in-process on real days, then checked point-in-time."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pipelines.definitions import defs
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.resources_config import embedded_resources
from pipelines.tasks.flight_delay.features import EVENT_TIMESTAMP
from tests.e2e.conftest import DAYS


def _read(paths: DataPaths, table: str) -> pd.DataFrame:
    return Lake(paths.lake).read_partitions(f"flight_delay/{table}", DAYS)


def test_every_asset_is_materialized_for_every_day(built):
    _, instance, results = built
    assert all(r.success for r in results)
    for key in (
        "raw_flights",
        "raw_weather",
        "flight_timeline",
        "weather_features",
        "carrier_delay_stats",
        "online_features",
        "training_set",
    ):
        materialized = instance.get_materialized_partitions(dg.AssetKey(["flight_delay", key]))
        assert materialized == set(DAYS), key
    for key in ("planes", "plane_features", "feast_definitions"):
        assert (
            instance.get_latest_materialization_event(dg.AssetKey(["flight_delay", key]))
            is not None
        )


def test_training_set_holds_every_labelled_flight_once(built):
    paths, _, _ = built
    timeline = _read(paths, "flight_timeline")
    training = _read(paths, "training_set")
    labelled = timeline[timeline["label"].notna()]
    assert len(training) == len(labelled) and training["flight_id"].is_unique
    assert set(training["label"].unique()) <= {0, 1}
    assert 0.1 < training["label"].mean() < 0.5


def _asof(
    rows: pd.DataFrame, table: pd.DataFrame, key: str, column: str, ttl: pd.Timedelta
) -> pd.Series:
    """The value of `column` an honest point-in-time join gives each row (independent of Feast)."""
    left = rows[["flight_id", key, EVENT_TIMESTAMP]].sort_values(EVENT_TIMESTAMP)
    right = (
        table[[key, EVENT_TIMESTAMP, column]]
        .rename(columns={EVENT_TIMESTAMP: "feature_ts"})
        .sort_values("feature_ts")
    )
    joined = pd.merge_asof(
        left, right, left_on=EVENT_TIMESTAMP, right_on="feature_ts", by=key, direction="backward"
    )
    joined.loc[joined[EVENT_TIMESTAMP] - joined["feature_ts"] > ttl, column] = float("nan")
    return joined.set_index("flight_id")[column]


@pytest.mark.parametrize(
    ("table", "key", "column", "ttl"),
    [
        ("aircraft_last_arrival", "tailnum", "tail_prev_arr_delay", pd.Timedelta(hours=24)),
        ("origin_recent_departures", "origin", "origin_dep_delay_mean_2h", pd.Timedelta(hours=2)),
        ("weather_features", "origin", "weather_temp", pd.Timedelta(hours=3)),
        ("route_delay_stats", "route", "route_delay_rate_7d", pd.Timedelta(days=2)),
    ],
)
def test_features_are_the_latest_known_at_prediction_time(built, table, key, column, ttl):
    paths, _, _ = built
    training = _read(paths, "training_set")
    expected = _asof(training, _read(paths, table), key, column, ttl)
    got = training.set_index("flight_id")[column]
    pd.testing.assert_series_equal(
        got.sort_index(),
        expected.reindex(got.index).sort_index(),
        check_names=False,
        check_dtype=False,
    )


def test_no_feature_row_from_after_the_prediction_reaches_a_training_row(built):
    paths, _, _ = built
    training = _read(paths, "training_set")
    assert (
        training[EVENT_TIMESTAMP]
        == training["sched_dep_ts"]
        - pd.Timedelta(minutes=load_task("flight_delay").spec.lead_minutes)
    ).all()
    arrivals = _read(paths, "aircraft_last_arrival")
    # the leg a row uses must have landed before the prediction: find it and compare times
    used = training.dropna(subset=["tail_prev_arr_delay"]).merge(
        arrivals, on=["tailnum", "tail_prev_arr_delay"], suffixes=("", "_leg")
    )
    used = used[used[f"{EVENT_TIMESTAMP}_leg"] <= used[EVENT_TIMESTAMP]]
    assert set(used["flight_id"]) == set(
        training.dropna(subset=["tail_prev_arr_delay"])["flight_id"]
    )
    # the aircraft table also has a row at each departure (its state changes then): a row
    # stamped at or after the flight's own departure (its own legs) never feeds it
    used = used.sort_values(f"{EVENT_TIMESTAMP}_leg").groupby("flight_id").tail(1)
    assert (used[f"{EVENT_TIMESTAMP}_leg"] < used["sched_dep_ts"]).all()


def test_online_store_serves_the_latest_values(built):
    paths, _, _ = built
    store = embedded_resources(paths)["feast"].store()
    online = store.get_online_features(
        features=["weather_hourly:weather_temp", "carrier_delay_stats:carrier_delay_rate_7d"],
        entity_rows=[{"origin": "JFK", "carrier": "AA"}],
    ).to_dict()
    weather = _read(paths, "weather_features")
    latest = (
        weather[weather["origin"] == "JFK"].sort_values(EVENT_TIMESTAMP).iloc[-1]["weather_temp"]
    )
    assert online["weather_temp"] == [latest]
    assert online["carrier_delay_rate_7d"][0] is not None


def test_landing_files_are_kept(built):
    paths, _, _ = built
    assert len(list(Path(paths.landing_for("flight_delay"), "flights").glob("*.csv"))) == len(DAYS)
    assert len(list(Path(paths.root, "archive", "flight_delay", "flights").rglob("*.csv"))) == len(
        DAYS
    )


def test_runs_are_the_code_locations_jobs_as_the_ui_launches_them(built):
    """Each run is a job of the workspace's code location (the UI lists it under its job and
    re-executes it), with the snapshot of that job."""
    _, instance, results = built
    assert [r.job_name for r in results] == [
        "flight_delay_reference_data",
        "flight_delay_partitions",
        "flight_delay_retrain",
    ]
    location = defs()
    for result in results:
        run = instance.get_run_by_id(result.run_id)
        origin = run.remote_job_origin
        assert origin.location_name == "flightline" and origin.job_name == result.job_name
        assert origin.repository_origin.repository_name == "__repository__"
        assert run.tags["flightline/task"] == "flight_delay" and "flightline/stage" in run.tags
        # The run's job (before its asset subset) is the code location's job, snapshot for
        # snapshot: what the UI compares before it offers Re-execute without a warning.
        parent = instance.get_job_snapshot(run.job_snapshot_id).lineage_snapshot
        full = location.resolve_job_def(result.job_name).get_job_snapshot_id()
        assert (parent.parent_snapshot_id if parent else run.job_snapshot_id) == full


def test_the_checks_tab_shows_each_days_result(built):
    """The ranged run records each raw-table check's result under its day (not one result for
    the range, which the UI lists as "Skipped"), against that day's materialization."""
    _, instance, _ = built
    for asset, check in (
        ("raw_flights", "raw_flights_unique_rows"),
        ("raw_weather", "raw_weather_row_count"),
    ):
        key = dg.AssetCheckKey(dg.AssetKey(["flight_delay", asset]), check)
        infos = instance.event_log_storage.get_asset_check_partition_info([key])
        assert {i.partition_key: i.latest_execution_status.value for i in infos} == dict.fromkeys(
            DAYS, "SUCCEEDED"
        )
        assert all(
            i.is_current for i in infos
        )  # evaluated against the day's latest materialization
