"""Every fact is stamped when it became known: changing what becomes known after an instant T
(delays, times, weather) must not change anything a prediction made before T sees, through the
batch feature tables, Feast's point-in-time join (training) or the online path (serving)."""

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from pipelines.platform.components.task import load_task
from pipelines.platform.components.training import prediction_entities
from pipelines.platform.lib.feature_store import (
    EARLIEST,
    historical_features,
    materialize_up_to,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.online import online_vector, stamped_after
from pipelines.platform.lib.skew import feature_skew
from pipelines.tasks.flight_delay import features as F
from pipelines.tasks.flight_delay.flights import (
    day_start_utc,
    flight_timeline,
    local_to_utc,
)
from pipelines.tasks.flight_delay.source import day_key, read_table
from tests.feast_scratch import task_store

DAYS = ["2013-01-10", "2013-01-11", "2013-01-12"]
T = pd.Timestamp("2013-01-11 15:20", tz="America/New_York").tz_convert("UTC")
TASK = load_task("flight_delay")
SPEC = TASK.spec
WEATHER_RANGES = {  # valid ranges of each perturbed weather column
    "temp": (-10.0, 100.0),
    "dewp": (-20.0, 80.0),
    "humid": (10.0, 100.0),
    "wind_dir": (0.0, 360.0),
    "wind_speed": (0.0, 40.0),
    "wind_gust": (0.0, 60.0),
    "precip": (0.0, 1.0),
    "pressure": (980.0, 1040.0),
    "visib": (0.0, 10.0),
}


def _raw(table: str) -> pd.DataFrame:
    frame = read_table(table)
    frame = frame[day_key(frame).isin(DAYS)].reset_index(drop=True).copy()
    return frame.assign(**{PARTITION_COLUMN: day_key(frame)})


def true_arrival(flights: pd.DataFrame) -> pd.Series:
    """The gate arrival: scheduled arrival on the destination's wall clock plus the delay."""
    zones = read_table("airports").set_index("faa")["tzone"].to_dict()
    zones |= {"BQN": "America/Puerto_Rico", "SJU": "America/Puerto_Rico"}
    zones |= {"PSE": "America/Puerto_Rico", "STT": "America/St_Thomas"}

    def one(row) -> pd.Timestamp:
        hhmm = int(row["sched_arr_time"])
        wall = pd.Timestamp(int(row["year"]), int(row["month"]), int(row["day"]))
        local = (wall + pd.Timedelta(minutes=hhmm // 100 * 60 + hhmm % 100)).tz_localize(
            zones[row["dest"]]
        )
        departure = pd.Timestamp(
            int(row["year"]), int(row["month"]), int(row["day"])
        ) + pd.Timedelta(
            minutes=int(row["sched_dep_time"]) // 100 * 60 + int(row["sched_dep_time"]) % 100
        )
        if local < departure.tz_localize("America/New_York"):
            local += pd.Timedelta(days=1)  # arrives the next day
        return local.tz_convert("UTC") + pd.Timedelta(minutes=row["arr_delay"])

    landed = flights["arr_delay"].notna()
    out = pd.Series(pd.NaT, index=flights.index, dtype="datetime64[ns, UTC]")
    out[landed] = flights[landed].apply(one, axis=1)
    return out


def perturb(flights: pd.DataFrame, weather: pd.DataFrame, seed: int = 7):
    """Change every fact that becomes known after T, keeping it after T and within valid ranges."""
    rng = np.random.default_rng(seed)
    flights, weather = flights.copy(), weather.copy()
    sched_dep = local_to_utc(
        flights["year"], flights["month"], flights["day"], flights["sched_dep_time"]
    )
    # The real moments, computed here independently of the code under test.
    departs_late = (sched_dep + pd.to_timedelta(flights["dep_delay"], unit="min") > T).to_numpy()
    lands_late = (true_arrival(flights) > T).to_numpy()

    # departure delay: anything from on time to 3 h late, as long as it is still after T
    earliest = ((T - sched_dep).dt.total_seconds() / 60 + 1).clip(lower=-10)
    new_dep = np.maximum(rng.uniform(-10, 180, len(flights)), earliest.to_numpy())
    flights.loc[departs_late, "dep_delay"] = np.round(new_dep[departs_late])
    flights.loc[departs_late, "dep_time"] = rng.integers(0, 2359, departs_late.sum())
    # arrival: a different delay, air time and arrival clock, still after T
    shift = rng.uniform(1, 120, len(flights))
    flights.loc[lands_late, "arr_delay"] = flights.loc[lands_late, "arr_delay"] + np.round(
        shift[lands_late]
    )
    flights.loc[lands_late, "air_time"] = np.round(
        flights.loc[lands_late, "air_time"] * rng.uniform(0.8, 1.0, lands_late.sum())
    )
    flights.loc[lands_late, "arr_time"] = rng.integers(0, 2359, lands_late.sum())

    # weather rows reported after T: every measurement redrawn
    reported = pd.to_datetime(weather["time_hour"], utc=True) + F.WEATHER_REPORT_MINUTE
    late = (reported > T).to_numpy()
    for column, (low, high) in WEATHER_RANGES.items():
        weather.loc[late, column] = np.round(rng.uniform(low, high, late.sum()), 2)
    return flights, weather, int(departs_late.sum() + lands_late.sum() + late.sum())


def feature_tables(flights: pd.DataFrame, weather: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """What the feature assets build from the raw days (the tables of defs/flight_delay/defs.yaml)."""
    timeline = flight_timeline(flights)
    tables = {
        "flight_timeline": timeline,
        "weather_features": F.weather_features(weather),
        "plane_features": F.plane_features(read_table("planes")),
        "scheduled_traffic": F.scheduled_traffic(timeline),
        "origin_recent_departures": F.origin_recent_departures(timeline),
        "aircraft_last_arrival": F.aircraft_last_arrival(timeline),
        "dest_recent_arrivals": F.dest_recent_arrivals(timeline),
    }
    for entity in ("carrier", "route", "origin"):
        tables[f"{entity}_delay_stats"] = F.trailing_delay_stats(timeline, DAYS, entity, entity)
    return tables


@pytest.fixture(scope="module")
def worlds():
    flights, weather = _raw("flights"), _raw("weather")
    changed_flights, changed_weather, changed = perturb(flights, weather)
    assert changed > 1000  # most of two days of facts are after T
    return feature_tables(flights, weather), feature_tables(changed_flights, changed_weather)


def test_every_feature_table_the_task_declares_is_perturbed(worlds):
    """The tables above are listed by hand: a table added to defs.yaml without being listed
    there would escape every perturbation below."""
    declared = {table.name for table in TASK.definition.feature_tables}
    assert set(worlds[0]) == declared


def test_feature_table_rows_known_by_t_do_not_depend_on_later_facts(worlds):
    real, changed = worlds
    for name, table in real.items():
        if name in ("flight_timeline", "plane_features"):
            continue
        before, other = (
            # row order carries no meaning in a feature table
            t[t[F.EVENT_TIMESTAMP] <= T].sort_values(list(t.columns)).reset_index(drop=True)
            for t in (table, changed[name])
        )
        assert len(before) > 0, name
        pd.testing.assert_frame_equal(before, other, obj=name)


def _store(tmp_path, name: str, tables: dict[str, pd.DataFrame]):
    lake = Lake(str(tmp_path / name / "lake"))
    for table, frame in tables.items():
        if table == "plane_features":
            lake.write(TASK.table(table), frame)
        else:
            lake.write_partitions(TASK.table(table), frame, DAYS)
    return task_store(tmp_path / name, lake, TASK, "perturbation")


def _predicted_before_t(timeline: pd.DataFrame) -> pd.DataFrame:
    predicted = SPEC.prediction_time(timeline["sched_dep_ts"])
    return timeline[predicted < T].reset_index(drop=True)


def test_training_and_served_vectors_before_t_do_not_depend_on_later_facts(worlds, tmp_path):
    real, changed = worlds
    stores = {name: _store(tmp_path, name, w) for name, w in (("real", real), ("changed", changed))}
    early = _predicted_before_t(real["flight_timeline"])
    labelled = early[early["label"].notna()].reset_index(drop=True)
    assert len(labelled) > 1000
    _, entities = prediction_entities(TASK, labelled, SPEC.lead_minutes)

    # training: Feast's point-in-time join through the versioned FeatureService
    joined = {
        name: historical_features(store, entities, SPEC.feature_service)
        for name, store in stores.items()
    }
    assert joined["real"].drop(columns=entities.columns).notna().mean().mean() > 0.5
    pd.testing.assert_frame_equal(joined["real"], joined["changed"])

    # serving: the online store materialized past T (to the end of the window) answers requests
    # whose prediction time is before T
    end = day_start_utc(pd.Series([DAYS[-1]])).iloc[0] + pd.Timedelta(days=1)
    requests = early[early["sched_dep_ts"] > T - pd.Timedelta(hours=6)]
    requests = requests.assign(flight=requests["flight"].astype("int64"))
    served = {}
    for name, store in stores.items():
        materialize_up_to(store, end.to_pydatetime())
        served[name] = online_vector(store, TASK.domain.request_frame(requests), SPEC, TASK.domain)
    assert len(requests) > 100
    assert not served["real"].point_in_time().all()  # the store is ahead: some were withheld
    pd.testing.assert_frame_equal(served["real"].features, served["changed"].features)


def test_the_join_a_day_at_a_time_is_the_join_in_one_go(worlds, tmp_path):
    """A year's join runs a month at a time (memory); chunks of one day give the same rows, in
    the same order, with the same types, as one chunk."""
    real, _ = worlds
    store = _store(tmp_path, "real", real)
    labelled = real["flight_timeline"][real["flight_timeline"]["label"].notna()]
    _, entities = prediction_entities(TASK, labelled.reset_index(drop=True), SPEC.lead_minutes)
    entities = entities.sample(frac=1.0, random_state=0)  # not in time order: order is kept
    assert entities["event_timestamp"].dt.floor("D").nunique() >= 3
    whole = historical_features(store, entities, SPEC.feature_service, chunk_days=10_000)
    daily = historical_features(store, entities, SPEC.feature_service, chunk_days=1)
    pd.testing.assert_frame_equal(daily, whole)


def test_the_join_is_feasts_own_point_in_time_join(worlds, tmp_path):
    """historical_features runs its own ASOF join in DuckDB (Feast's inner join within the TTL
    held 17 GB for a year): it must give what Feast's get_historical_features gives through the
    same FeatureService, row for row and type for type, expired values and missing keys
    included."""
    real, _ = worlds
    store = _store(tmp_path, "real", real)
    labelled = real["flight_timeline"][real["flight_timeline"]["label"].notna()]
    _, entities = prediction_entities(TASK, labelled.reset_index(drop=True), SPEC.lead_minutes)
    # rows with keys no table knows and rows long after the window (every TTL expired)
    stray = entities.head(50).assign(tailnum="N0NE", carrier="ZZ", origin="XXX")
    late = entities.head(50).assign(
        event_timestamp=entities["event_timestamp"] + pd.Timedelta(days=9)
    )
    entities = pd.concat([entities, stray, late], ignore_index=True)
    ours = historical_features(store, entities, SPEC.feature_service)
    features = store.get_feature_service(SPEC.feature_service)
    theirs = (
        store.get_historical_features(
            entity_df=entities.assign(_row=range(len(entities))), features=features
        )
        .to_df()
        .sort_values("_row")
        .drop(columns="_row")
        .reset_index(drop=True)
    )
    stored = [c for c in ours.columns if c not in entities.columns]
    assert list(theirs.columns) == list(entities.columns) + stored
    assert ours[stored].notna().mean().mean() > 0.5
    assert ours.tail(100)[stored].isna().any(axis=1).all()
    pd.testing.assert_frame_equal(ours[stored], theirs[stored])


def test_values_stamped_after_the_prediction_time_are_withheld():
    stamps = np.array([0.0, 100.0, 200.0, 300.0])  # 0: the store knows nothing
    as_of = np.array([150.0, 150.0, 150.0, 300.0])
    assert stamped_after(stamps, as_of).tolist() == [False, False, True, False]


def test_skew_check_covers_requests_behind_the_store_clock(worlds, tmp_path):
    real, _ = worlds
    store = _store(tmp_path, "skew", real)
    end = day_start_utc(pd.Series([DAYS[-1]])).iloc[0] + pd.Timedelta(days=1)
    # the whole window, so the store still holds every entity's newest value
    with contextlib.redirect_stdout(io.StringIO()):
        store.materialize(start_date=EARLIEST, end_date=end.to_pydatetime())
    flights = real["flight_timeline"].head(200)
    flights = flights.assign(flight=flights["flight"].astype("int64"))
    # the store's clock is the end of the window; the requests are a day and a half behind it
    differing, rows = feature_skew(
        store, SPEC, TASK.domain, flights, end, behind=pd.Timedelta(hours=36)
    )
    assert rows == 200 and differing == {}
    vector = online_vector(
        store,
        TASK.domain.request_frame(flights.assign(sched_dep_ts=end - pd.Timedelta(hours=35))),
        SPEC,
        TASK.domain,
        as_of=end - pd.Timedelta(hours=36),
    )
    assert not vector.point_in_time().any()  # weather at least is from their future
    assert all(views for views in vector.withheld_views())
    assert vector.features["weather_temp"].isna().all()  # flagged values are not served
