"""Foot traffic's feature and example tables, and the features computed from a request.

Which facts become known when (t is the prediction time, a whole hour; the label is the count of
the hour starting t + 2 h):

| fact                                   | stamped (known at)   | used at t as                      |
|----------------------------------------|----------------------|-----------------------------------|
| count of hour H at a sensor            | H + 1 h (hour ended) | the row stamped t: H = t - 1 h    |
| counts of hours H - 1, H - 2           | H + 1 h              | count_prev_hour, mean_last_3h     |
| count of the target hour, a day before | t + 2 h - 24 h + 1 h | count_target_hour_yesterday       |
| count of the target hour, a week before| t + 2 h - 168 h + 1 h| count_target_hour_last_week       |
| local hour and weekday of the target   | always (calendar)    | target_hour, target_day_of_week   |
| the label: count of hour t + 2 h >= 1000| t + 3 h             | never a feature                   |

Every feature row is stamped at the end of the hour it counts, so Feast's point-in-time join
gives a prediction made at t the row of hour t - 1 h and never a later one.
"""

import numpy as np
import pandas as pd

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.tasks.foot_traffic.source import LOCAL_TZ

HORIZON = pd.Timedelta(hours=2)  # the label is the hour starting this long after t
BUSY = 1000  # people in an hour: the label's threshold (about 23% of sensor-hours)
# Lags of a row for hour H, read by a prediction at t = H + 1 h whose target is T = H + 3 h.
TARGET_YESTERDAY = 21  # T - 24 h = H - 21 h
TARGET_LAST_WEEK = 165  # T - 168 h = H - 165 h
COUNT_COLUMNS = (
    "count_last_hour",
    "count_prev_hour",
    "mean_last_3h",
    "count_target_hour_yesterday",
    "count_target_hour_last_week",
)


def count_features(raw: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    """Each count of the run's hours with its lags, stamped when the hour it counts ended. The
    raw window brings the week before, so that the lags exist from the run's first hour."""
    at = pd.to_datetime(raw["date_time"], utc=True)
    sensor = raw["sensor"].astype(str)
    counts = pd.Series(
        raw["count"].astype("float64").to_numpy(), index=pd.MultiIndex.from_arrays([sensor, at])
    )

    def lag(hours: int) -> np.ndarray:  # NaN where the sensor reported nothing that hour
        index = pd.MultiIndex.from_arrays([sensor, at - pd.Timedelta(hours=hours)])
        return counts.reindex(index).to_numpy()

    now, prev, prev2 = counts.to_numpy(), lag(1), lag(2)
    frame = pd.DataFrame(
        {
            "sensor": sensor.to_numpy(),
            "event_timestamp": (at + pd.Timedelta(hours=1)).astype("datetime64[us, UTC]"),
            "count_last_hour": now,
            "count_prev_hour": prev,
            "mean_last_3h": np.nanmean(np.vstack([now, prev, prev2]), axis=0),
            "count_target_hour_yesterday": lag(TARGET_YESTERDAY),
            "count_target_hour_last_week": lag(TARGET_LAST_WEEK),
            PARTITION_COLUMN: raw[PARTITION_COLUMN].to_numpy(),
        }
    )
    return frame.loc[frame[PARTITION_COLUMN].isin(partition_keys)].reset_index(drop=True)


def examples(raw: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    """The predictions whose label landed in the run's hours: made at t, labelled by the count of
    the hour starting t + 2 h (known at t + 3 h, when that hour's file lands)."""
    labelled = raw.loc[raw[PARTITION_COLUMN].isin(partition_keys)]
    made_at = pd.to_datetime(labelled["date_time"], utc=True) - HORIZON
    return pd.DataFrame(
        {
            "example_id": labelled["sensor"] + "@" + made_at.dt.strftime("%Y-%m-%dT%H:%MZ"),
            "sensor": labelled["sensor"].astype(str),
            "predicted_at": made_at.astype("datetime64[us, UTC]"),
            "label": (labelled["count"] >= BUSY).astype("float64"),
            PARTITION_COLUMN: labelled[PARTITION_COLUMN],
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
