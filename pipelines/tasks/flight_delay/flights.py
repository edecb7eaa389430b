"""The flight timeline: when each fact about a flight becomes known.

Leakage lives in timestamps, so every derived fact carries the moment it became known:
- the schedule is known in advance;
- a departure delay is known when the flight actually leaves (scheduled departure + delay);
- an arrival delay (and so the label) is known when the flight lands, which we take as the actual
  departure plus air time plus a reporting lag for taxi-in.

Cancelled flights (no departure) and diverted flights (departed, no arrival) have no label: they
are kept in the timeline and count as scheduled traffic, but never enter training rows.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.platform.lib.lake import PARTITION_COLUMN

LOCAL_TZ = "America/New_York"
ARRIVAL_REPORT_LAG = pd.Timedelta(minutes=15)
DELAY_THRESHOLD_MINUTES = 15  # the label: arrival more than 15 minutes late
UNKNOWN_TAILNUM = "UNKNOWN"


@dataclass(frozen=True)
class PredictionTiming:
    """A prediction is made `lead_minutes` before the scheduled departure."""

    lead_minutes: int = 60

    def prediction_time(self, sched_dep_ts: pd.Series) -> pd.Series:
        return sched_dep_ts - pd.Timedelta(minutes=self.lead_minutes)


def local_to_utc(year, month, day, hhmm) -> pd.Series:
    """Local New York wall-clock times (hhmm integers) to UTC timestamps."""
    hhmm = pd.Series(hhmm).astype("int64")
    local = pd.to_datetime(
        pd.DataFrame(
            {"year": year, "month": month, "day": day, "hour": hhmm // 100, "minute": hhmm % 100}
        )
    )
    # No flight is scheduled in the repeated or skipped DST hour; shift rather than fail if one is.
    return (
        local.dt.tz_localize(LOCAL_TZ, ambiguous=False, nonexistent="shift_forward")
        .dt.tz_convert("UTC")
        .astype("datetime64[us, UTC]")
    )


def day_start_utc(days: pd.Series) -> pd.Series:
    """Local midnight of each YYYY-MM-DD day, in UTC."""
    return (
        pd.to_datetime(days)
        .dt.tz_localize(LOCAL_TZ)
        .dt.tz_convert("UTC")
        .astype("datetime64[us, UTC]")
    )


def flight_timeline(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per scheduled flight with typed keys, event times and the label."""
    sched_dep = local_to_utc(raw["year"], raw["month"], raw["day"], raw["sched_dep_time"])
    dep_delay = raw["dep_delay"].astype("float64")
    arr_delay = raw["arr_delay"].astype("float64")
    dep_known_at = sched_dep + pd.to_timedelta(dep_delay, unit="min")
    arr_known_at = (
        dep_known_at
        + pd.to_timedelta(raw["air_time"].astype("float64"), unit="min")
        + ARRIVAL_REPORT_LAG
    )
    arr_known_at = arr_known_at.where(arr_delay.notna())
    cancelled = dep_delay.isna()
    date = (
        raw[PARTITION_COLUMN].astype(str)
        if PARTITION_COLUMN in raw
        else sched_dep.dt.tz_convert(LOCAL_TZ).dt.strftime("%Y-%m-%d")
    )
    carrier = raw["carrier"].astype(str)
    origin = raw["origin"].astype(str)
    dest = raw["dest"].astype(str)
    sched_hhmm = raw["sched_dep_time"].astype("int64")
    timeline = pd.DataFrame(
        {
            "flight_id": carrier
            + raw["flight"].astype("int64").astype(str)
            + "-"
            + origin
            + "-"
            + date
            + "-"
            + sched_hhmm.astype(str).str.zfill(4),
            "carrier": carrier,
            "flight": raw["flight"].astype("int64"),
            "tailnum": raw["tailnum"].fillna(UNKNOWN_TAILNUM).astype(str),
            "origin": origin,
            "dest": dest,
            "route": origin + "-" + dest,
            "distance": raw["distance"].astype("float64"),
            "sched_dep_local_hhmm": sched_hhmm,
            "sched_dep_ts": sched_dep,
            "dep_delay": dep_delay,
            "dep_known_at": dep_known_at,
            "arr_delay": arr_delay,
            "arr_known_at": arr_known_at,
            "cancelled": cancelled,
            "diverted": ~cancelled & arr_delay.isna(),
            "label": np.where(
                arr_delay.isna(), np.nan, (arr_delay > DELAY_THRESHOLD_MINUTES).astype("float64")
            ),
            PARTITION_COLUMN: date,
        }
    )
    return timeline.sort_values(["sched_dep_ts", "flight_id"], kind="stable").reset_index(drop=True)
