"""Foot traffic's feature and example tables, and the features computed from a request.

The question, asked every hour t (a whole hour) for each sensor: will the hour starting t + 2 h
be a surge, at least 20% busier than the same hour a week earlier? (Weekly seasonality alone is
what a calendar baseline knows; a surge is what it does not: events, weather, holidays.)

Which facts become known when (H = t - 1 h, the last complete hour; T = t + 2 h, the target):

| fact                                          | stamped (known at) | used at t as                  |
|-----------------------------------------------|--------------------|-------------------------------|
| count of hour H at a sensor                   | H + 1 h = t        | count_last_hour               |
| counts of hours H - 1 h, H - 2 h              | t - 1 h, t - 2 h   | count_prev_hour, mean_last_3h |
| count of hour H a week earlier                | t - 168 h          | last_hour_vs_last_week (ratio)|
| count of the target hour a day earlier        | T - 23 h = t - 21 h| count_target_hour_yesterday   |
| count of the target hour a week earlier       | T - 167 h          | count_target_hour_last_week   |
| local hour and weekday of the target          | always (calendar)  | target_hour, target_day_of_week|
| the label: count of hour T vs a week earlier  | T + 1 h = t + 3 h  | never a feature               |

Every feature row is stamped at the end of the hour it counts (the row of hour H carries the lags
a prediction at H + 1 h reads), so Feast's point-in-time join gives a prediction made at t the row
of hour t - 1 h and never a later one. Counts land as one file per Melbourne day; the row of the
day's last hour is stamped at midnight, in the next day's partition window.
"""

import numpy as np
import pandas as pd

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.tasks.foot_traffic.source import LOCAL_TZ

HORIZON = pd.Timedelta(hours=2)  # the target is the hour starting this long after t
WEEK = pd.Timedelta(hours=168)
SURGE = 1.2  # the label: the target hour's count is at least this times the same hour a week before
# Lags of the row for hour H, read by a prediction at t = H + 1 h whose target is T = H + 3 h.
TARGET_YESTERDAY = 21  # T - 24 h = H - 21 h
TARGET_LAST_WEEK = 165  # T - 168 h = H - 165 h
COUNT_COLUMNS = (
    "count_last_hour",
    "count_prev_hour",
    "mean_last_3h",
    "last_hour_vs_last_week",
    "count_target_hour_yesterday",
    "count_target_hour_last_week",
)


def _counts(raw: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    at = pd.to_datetime(raw["date_time"], utc=True)
    sensor = raw["sensor"].astype(str)
    counts = pd.Series(
        raw["count"].astype("float64").to_numpy(), index=pd.MultiIndex.from_arrays([sensor, at])
    )
    return sensor, at, counts


def _lag(counts: pd.Series, sensor: pd.Series, at: pd.Series, by: pd.Timedelta) -> np.ndarray:
    """The sensor's count of the hour `by` before each row's (NaN where it reported nothing)."""
    return counts.reindex(pd.MultiIndex.from_arrays([sensor, at - by])).to_numpy()


def count_features(raw: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    """Each count of the run's days with its lags, stamped when the hour it counts ended. The raw
    window brings the eight days before, so that the week lags exist from the run's first hour."""
    sensor, at, counts = _counts(raw)

    def lag(hours: int) -> np.ndarray:
        return _lag(counts, sensor, at, pd.Timedelta(hours=hours))

    now, prev, prev2 = counts.to_numpy(), lag(1), lag(2)
    frame = pd.DataFrame(
        {
            "sensor": sensor.to_numpy(),
            "event_timestamp": (at + pd.Timedelta(hours=1)).astype("datetime64[us, UTC]"),
            "count_last_hour": now,
            "count_prev_hour": prev,
            "mean_last_3h": np.nanmean(np.vstack([now, prev, prev2]), axis=0),
            # +10 people: a quiet night hour does not make a huge ratio out of a handful
            "last_hour_vs_last_week": (now + 10) / (lag(168) + 10),
            "count_target_hour_yesterday": lag(TARGET_YESTERDAY),
            "count_target_hour_last_week": lag(TARGET_LAST_WEEK),
            PARTITION_COLUMN: raw[PARTITION_COLUMN].to_numpy(),
        }
    )
    return frame.loc[frame[PARTITION_COLUMN].isin(partition_keys)].reset_index(drop=True)


def examples(raw: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    """The predictions whose label landed in the run's days: made at t, labelled by whether the
    count of the hour T = t + 2 h reached 1.2 times the same hour a week earlier (known at
    T + 1 h). No count a week earlier: no label (the raw window brings that week)."""
    sensor, at, counts = _counts(raw)
    week_before = _lag(counts, sensor, at, WEEK)
    label = np.where(np.isnan(week_before), np.nan, counts.to_numpy() >= SURGE * week_before)
    mine = raw[PARTITION_COLUMN].isin(partition_keys).to_numpy()
    made_at = (at - HORIZON)[mine]
    return pd.DataFrame(
        {
            "example_id": sensor[mine] + "@" + made_at.dt.strftime("%Y-%m-%dT%H:%MZ"),
            "sensor": sensor[mine],
            "predicted_at": made_at.astype("datetime64[us, UTC]"),
            "label": label[mine].astype("float64"),
            PARTITION_COLUMN: raw[PARTITION_COLUMN][mine],
        }
    ).reset_index(drop=True)


def request_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Requests or examples -> sensor and the prediction time (UTC)."""
    frame = rows.loc[:, ["sensor", "predicted_at"]].copy()
    frame["sensor"] = frame["sensor"].astype(str)
    frame["predicted_at"] = pd.to_datetime(frame["predicted_at"], utc=True)
    return frame.reset_index(drop=True)


def entity_keys(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"sensor": rows["sensor"].astype(str)}).reset_index(drop=True)


def request_features(rows: pd.DataFrame) -> pd.DataFrame:
    """The calendar of the target hour, in Melbourne (known at any time before it)."""
    target = (rows["predicted_at"].dt.floor("h") + HORIZON).dt.tz_convert(LOCAL_TZ)
    return pd.DataFrame(
        {
            "sensor": rows["sensor"].astype(str),
            "target_hour": target.dt.hour.astype("int64"),
            "target_day_of_week": target.dt.dayofweek.astype("int64"),
        }
    ).reset_index(drop=True)
