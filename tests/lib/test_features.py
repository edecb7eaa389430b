"""Point-in-time rules of the feature tables, on small hand-made timelines."""

import pandas as pd
import pytest

from pipelines.platform.components.task import load_task
from pipelines.platform.components.training import prediction_entities
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.tasks.flight_delay import features as F
from pipelines.tasks.flight_delay.flights import (
    flight_timeline,
    local_to_utc,
)
from tests.conftest import source_day

TASK = load_task("flight_delay")


def _raw(rows):
    """Raw flight rows with only the fields the timeline needs."""
    base = {
        "year": 2013,
        "month": 1,
        "flight": 1,
        "carrier": "AA",
        "origin": "JFK",
        "dest": "MIA",
        "distance": 1089,
        "air_time": 150.0,
        "tailnum": "N1",
    }
    frame = pd.DataFrame([{**base, **r} for r in rows])
    if "sched_arr_time" not in frame:
        # JFK-MIA is scheduled for 3 hours, both ends on Eastern time
        minutes = (frame["sched_dep_time"] // 100 * 60 + frame["sched_dep_time"] % 100 + 180) % 1440
        frame["sched_arr_time"] = minutes // 60 * 100 + minutes % 60
    frame[PARTITION_COLUMN] = frame.apply(lambda r: f"2013-01-{int(r['day']):02d}", axis=1)
    frame["flight"] = range(1, len(frame) + 1)
    return frame


def test_timeline_times_and_labels():
    raw = _raw(
        [
            {
                "day": 2,
                "sched_dep_time": 900,
                "dep_delay": 30.0,
                "arr_delay": 40.0,
                "tailnum": "N1",
            },
            {
                "day": 2,
                "sched_dep_time": 1000,
                "dep_delay": None,
                "arr_delay": None,
                "air_time": None,
                "tailnum": None,
            },
            {
                "day": 2,
                "sched_dep_time": 1100,
                "dep_delay": 5.0,
                "arr_delay": None,
                "air_time": None,
                "tailnum": "N2",
            },
        ]
    )
    t = flight_timeline(raw)
    first = t.iloc[0]
    assert first["sched_dep_ts"] == pd.Timestamp("2013-01-02 14:00", tz="UTC")  # 09:00 EST
    assert first["dep_known_at"] == pd.Timestamp("2013-01-02 14:30", tz="UTC")
    # at the gate: scheduled 12:00 EST plus 40 minutes late
    assert first["arr_known_at"] == pd.Timestamp("2013-01-02 17:40", tz="UTC")
    assert first["label"] == 1.0
    cancelled, diverted = t.iloc[1], t.iloc[2]
    assert (
        cancelled["cancelled"] and pd.isna(cancelled["label"]) and cancelled["tailnum"] == "UNKNOWN"
    )
    assert diverted["diverted"] and pd.isna(diverted["label"]) and pd.isna(diverted["arr_known_at"])


def test_local_times_follow_daylight_saving():
    summer = local_to_utc([2013], [7], [1], [900]).iloc[0]
    winter = local_to_utc([2013], [1], [1], [900]).iloc[0]
    assert summer.hour == 13 and winter.hour == 14


def test_trailing_stats_only_use_labels_known_before_midnight():
    raw = _raw(
        [
            # lands the same evening: known before midnight of day 3
            {"day": 2, "sched_dep_time": 1200, "dep_delay": 60.0, "arr_delay": 70.0},
            # scheduled on day 2 but lands after midnight: not known at the day-3 snapshot
            {"day": 2, "sched_dep_time": 2300, "dep_delay": 0.0, "arr_delay": 0.0},
        ]
    )
    t = flight_timeline(raw)
    stats = F.trailing_delay_stats(t, ["2013-01-03", "2013-01-04"], "carrier", "carrier").set_index(
        PARTITION_COLUMN
    )
    assert stats.loc["2013-01-03", "carrier_flights_7d"] == 1
    assert stats.loc["2013-01-03", "carrier_delay_rate_7d"] == 1.0
    assert stats.loc["2013-01-04", "carrier_flights_7d"] == 2
    assert stats.loc["2013-01-04", "carrier_delay_rate_7d"] == 0.5
    # stamped at local midnight starting the day, never later than the flights it serves
    assert stats.loc["2013-01-03", F.EVENT_TIMESTAMP] == pd.Timestamp("2013-01-03 05:00", tz="UTC")


def test_trailing_window_forgets_old_labels():
    raw = _raw([{"day": 1, "sched_dep_time": 800, "dep_delay": 0.0, "arr_delay": 0.0}])
    t = flight_timeline(raw)
    stats = F.trailing_delay_stats(t, ["2013-01-09"], "carrier", "carrier").set_index(
        PARTITION_COLUMN
    )
    assert stats.loc["2013-01-09", "carrier_flights_7d"] == 0
    assert stats.loc["2013-01-09", "carrier_flights_28d"] == 1


def test_recent_departures_are_stamped_at_the_departure_and_look_back_two_hours():
    raw = _raw(
        [
            {"day": 2, "sched_dep_time": 800, "dep_delay": 10.0, "arr_delay": 0.0},
            {"day": 2, "sched_dep_time": 900, "dep_delay": 30.0, "arr_delay": 0.0},
            {"day": 2, "sched_dep_time": 1200, "dep_delay": 50.0, "arr_delay": 0.0},
        ]
    )
    recent = F.origin_recent_departures(flight_timeline(raw))
    assert list(recent[F.EVENT_TIMESTAMP]) == list(flight_timeline(raw)["dep_known_at"])
    assert list(recent["origin_departures_2h"]) == [1, 2, 1]
    assert list(recent["origin_dep_delay_mean_2h"]) == [10.0, 20.0, 50.0]


def test_destination_arrivals_are_stamped_at_the_landing_and_look_back_three_hours():
    # JFK-MIA: scheduled three hours, so each lands three hours after it departs (plus delays)
    raw = _raw(
        [
            {"day": 2, "sched_dep_time": 700, "dep_delay": 0.0, "arr_delay": 10.0},
            {"day": 2, "sched_dep_time": 900, "dep_delay": 0.0, "arr_delay": 30.0},
            {"day": 2, "sched_dep_time": 1100, "dep_delay": 0.0, "arr_delay": 50.0},
            {"day": 2, "sched_dep_time": 1200, "dep_delay": 0.0, "arr_delay": float("nan")},
        ]
    )
    timeline = flight_timeline(raw)
    recent = F.dest_recent_arrivals(timeline)
    landed = timeline["arr_known_at"].dropna()
    assert len(landed) == 3  # a flight with no arrival (diverted) never lands here
    assert list(recent[F.EVENT_TIMESTAMP]) == list(landed)
    assert list(recent["dest"]) == ["MIA"] * 3
    # 10:10 sees itself; 12:30 sees 10:10 too; 14:50 no longer sees 10:10 (over 3 hours before)
    assert list(recent["dest_arrivals_3h"]) == [1, 2, 2]
    assert list(recent["dest_arr_delay_mean_3h"]) == [10.0, 20.0, 40.0]
    assert list(recent["dest_arr_delayed_share_3h"]) == [0.0, 0.5, 1.0]
    # a row depends on the landings up to its own only: later ones change nothing of it
    assert F.dest_recent_arrivals(timeline.iloc[:2]).equals(recent.iloc[:2].reset_index(drop=True))


def test_aircraft_state_is_stamped_at_its_departure_and_at_its_landing():
    raw = _raw(
        [
            {
                "day": 2,
                "sched_dep_time": 800,
                "dep_delay": 10.0,
                "arr_delay": 25.0,
                "tailnum": "N9",
            },
            {"day": 2, "sched_dep_time": 1500, "dep_delay": 0.0, "arr_delay": 0.0, "tailnum": "N9"},
        ]
    )
    t = flight_timeline(raw)
    rows = F.aircraft_last_arrival(t).iloc[:2]
    departed, landed = rows.iloc[0], rows.iloc[1]
    assert departed[F.EVENT_TIMESTAMP] == t.iloc[0]["dep_known_at"]
    assert pd.isna(departed["tail_prev_arr_delay"]) and departed["tail_prev_dep_delay"] == 10.0
    assert landed[F.EVENT_TIMESTAMP] == t.iloc[0]["arr_known_at"]
    assert landed["tail_prev_arr_delay"] == 25.0
    # scheduled back at 11:00 + 3 h return = 14:00 for a 15:00 departure; 10 min late on
    # leaving, then 25 min late at the gate
    assert departed["tail_turnaround_slack_min"] == 50.0
    assert landed["tail_turnaround_slack_min"] == 35.0
    assert departed["tail_legs_today"] == 1.0


def test_scheduled_traffic_is_published_the_day_before():
    raw = _raw(
        [
            {"day": 2, "sched_dep_time": 800, "dep_delay": 0.0, "arr_delay": 0.0},
            {"day": 2, "sched_dep_time": 830, "dep_delay": 0.0, "arr_delay": 0.0},
        ]
    )
    traffic = F.scheduled_traffic(flight_timeline(raw))
    assert traffic.iloc[0]["origin_hour_scheduled"] == 2
    assert traffic.iloc[0][F.EVENT_TIMESTAMP] == pd.Timestamp("2013-01-01 05:00", tz="UTC")
    predicted = TASK.spec.prediction_time(flight_timeline(raw)["sched_dep_ts"], 60)
    assert (traffic[F.EVENT_TIMESTAMP] <= predicted.min()).all()


def test_weather_glitch_is_removed_from_features():
    weather = source_day("weather", "2013-02-12").assign(**{PARTITION_COLUMN: "2013-02-12"})
    table = F.weather_features(weather)
    assert table["weather_wind_speed"].max() < F.PLAUSIBLE_WIND_SPEED
    assert str(table[F.EVENT_TIMESTAMP].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("lead", [30, 60, 180])
def test_entity_rows_are_stamped_at_prediction_time(lead):
    raw = _raw(
        [{"day": 2, "sched_dep_time": 800, "dep_delay": 0.0, "arr_delay": 0.0, "tailnum": "N1"}]
    )
    t = flight_timeline(raw)
    _, rows = prediction_entities(TASK, t, lead)
    assert (t["sched_dep_ts"] - rows[F.EVENT_TIMESTAMP]).iloc[0] == pd.Timedelta(minutes=lead)
    assert rows["route"].iloc[0] == "JFK-MIA" and rows["dep_hour"].iloc[0] == "2013-01-02T08"


def test_delays_earlier_the_same_day_count_only_what_is_known_by_each_row():
    raw = _raw(
        [
            {"day": 2, "sched_dep_time": 800, "dep_delay": 30.0, "arr_delay": 40.0},
            {"day": 2, "sched_dep_time": 1200, "dep_delay": 10.0, "arr_delay": 0.0},
        ]
    )
    stats = F.trailing_delay_stats(flight_timeline(raw), ["2013-01-02"], "carrier", "carrier")
    rows = stats.set_index(F.EVENT_TIMESTAMP)
    first_departure = rows.loc[pd.Timestamp("2013-01-02 13:30", tz="UTC")]
    assert first_departure["carrier_departed_today"] == 1
    assert first_departure["carrier_dep_delay_mean_today"] == 30.0
    assert pd.isna(first_departure["carrier_arr_delay_mean_today"])  # not landed yet
    # landed at 16:40 (11:00 EST + 40 min): published at the end of its 15-minute window
    assert pd.Timestamp("2013-01-02 16:40", tz="UTC") not in rows.index
    landed = rows.loc[pd.Timestamp("2013-01-02 16:45", tz="UTC")]
    assert landed["carrier_arr_delay_mean_today"] == 40.0
    second = rows.loc[pd.Timestamp("2013-01-02 17:15", tz="UTC")]  # left at 17:10
    assert second["carrier_departed_today"] == 2 and second["carrier_dep_delay_mean_today"] == 20.0


def test_a_departure_delayed_past_midnight_counts_in_the_next_mornings_window():
    """Issue 24: the live path computes from events whatever day they were scheduled on; the
    batch table of a day reads the two days before and holds the rows stamped on it."""
    raw = _raw(
        [
            # scheduled on the 2nd at 20:00, leaves at 05:30 on the 3rd (570 min late)
            {"day": 2, "sched_dep_time": 2000, "dep_delay": 570.0, "arr_delay": 560.0},
            {"day": 3, "sched_dep_time": 600, "dep_delay": 10.0, "arr_delay": 0.0},
        ]
    )
    timeline = flight_timeline(raw)
    third = F.origin_recent_departures(timeline, ["2013-01-03"])
    assert list(third["origin_departures_2h"]) == [1, 2]  # the delayed one counts at 06:10
    assert list(third[PARTITION_COLUMN]) == ["2013-01-03", "2013-01-03"]
    assert F.origin_recent_departures(timeline, ["2013-01-02"]).empty  # nothing left on the 2nd


def test_an_aircraft_carries_its_last_arrival_delay_only_within_a_day():
    raw = _raw(
        [
            {"day": 2, "sched_dep_time": 800, "dep_delay": 0.0, "arr_delay": 25.0, "tailnum": "N9"},
            {"day": 2, "sched_dep_time": 2100, "dep_delay": 0.0, "arr_delay": 5.0, "tailnum": "N7"},
            {"day": 3, "sched_dep_time": 700, "dep_delay": 0.0, "arr_delay": 0.0, "tailnum": "N7"},
            {"day": 4, "sched_dep_time": 900, "dep_delay": 0.0, "arr_delay": 0.0, "tailnum": "N9"},
        ]
    )
    rows = F.aircraft_last_arrival(flight_timeline(raw))

    def departure(tail: str, day: str):  # the first row of the day: its departure
        return rows.loc[(rows["tailnum"] == tail) & (rows[PARTITION_COLUMN] == day)].iloc[0]

    # N7 landed at 00:00 on the 3rd, leaves at 07:00: 7 h, carried; N9 landed 2 days before: not
    assert departure("N7", "2013-01-03")["tail_prev_arr_delay"] == 5.0
    assert pd.isna(departure("N9", "2013-01-04")["tail_prev_arr_delay"])


@pytest.mark.parametrize(
    "table",
    [
        "origin_recent_departures",
        "dest_recent_arrivals",
        "aircraft_last_arrival",
        "carrier_delay_stats",
    ],
)
def test_a_days_rows_from_its_window_equal_the_rows_from_all_history(table):
    """What the batch asset computes for a day from its `windows` is what the live path, reading
    every event it has, computes for that day (real flights, day by day): an event carried over
    midnight, a label known the day after its flight, are in both or in neither."""
    from pipelines.tasks.flight_delay.source import day_key, read_table

    [window] = [
        i.window or 0
        for t in TASK.definition.feature_tables
        if t.name == table
        for i in t.table_inputs()
    ]
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range("2013-01-01", "2013-02-06")]
    flights = read_table("flights")
    flights = flights[day_key(flights).isin(days)].reset_index(drop=True)
    timeline = flight_timeline(flights.assign(**{PARTITION_COLUMN: day_key(flights)}))
    fn = getattr(F, table)
    everything = fn(timeline, days)
    for i in range(window, len(days)):
        mine = timeline.loc[timeline[PARTITION_COLUMN].isin(days[i - window : i + 1])]
        batch = fn(mine.reset_index(drop=True), [days[i]]).reset_index(drop=True)
        live = everything.loc[everything[PARTITION_COLUMN] == days[i]].reset_index(drop=True)
        assert len(batch) > 10
        pd.testing.assert_frame_equal(batch, live, check_dtype=False)
