"""The contracts of flight delay's landing tables: what a raw day file must look like."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.platform.lib.validation import ColumnSpec, RangeRule, TableContract

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd


def _clock_minutes(column: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda frame: frame[column] % 100


FLIGHTS = TableContract(
    table="flights",
    columns=[
        ColumnSpec("year", "int", key=True),
        ColumnSpec("month", "int", key=True),
        ColumnSpec("day", "int", key=True),
        ColumnSpec("dep_time", "number"),
        ColumnSpec("sched_dep_time", "int", key=True),
        ColumnSpec("dep_delay", "number"),
        ColumnSpec("arr_time", "number"),
        ColumnSpec("sched_arr_time", "int"),
        ColumnSpec("arr_delay", "number"),
        ColumnSpec("carrier", "str", key=True),
        ColumnSpec("flight", "int", key=True),
        ColumnSpec("tailnum", "str"),  # null for some cancelled flights in the source
        ColumnSpec("origin", "str", key=True),
        ColumnSpec("dest", "str", key=True),
        ColumnSpec("air_time", "number"),
        ColumnSpec("distance", "number", key=True),
        ColumnSpec("hour", "int", key=True),
        ColumnSpec("minute", "int", key=True),
        ColumnSpec("time_hour", "str", key=True),
    ],
    unique_together=["carrier", "flight", "origin", "year", "month", "day", "sched_dep_time"],
    ranges=[
        RangeRule("sched_dep_time", 0, 2359),
        RangeRule("_sched_dep_minutes", 0, 59),
        RangeRule("sched_arr_time", 0, 2359),
        RangeRule("_sched_arr_minutes", 0, 59),
        RangeRule("dep_time", 1, 2400),
        RangeRule("arr_time", 1, 2400),
        RangeRule("hour", 0, 23),
        RangeRule("minute", 0, 59),
        RangeRule("distance", 1, 6000),
        RangeRule("air_time", 1, 1000),
        # about a day late at most; the 2013 record is 1301 minutes
        RangeRule("dep_delay", -120, 1800),
        RangeRule("arr_delay", -180, 1800),
    ],
    allowed_values={"origin": ["EWR", "JFK", "LGA"]},
    derived={
        "_sched_dep_minutes": _clock_minutes("sched_dep_time"),
        "_sched_arr_minutes": _clock_minutes("sched_arr_time"),
    },
)

WEATHER = TableContract(
    table="weather",
    columns=[
        ColumnSpec("origin", "str", key=True),
        ColumnSpec("year", "int", key=True),
        ColumnSpec("month", "int", key=True),
        ColumnSpec("day", "int", key=True),
        ColumnSpec("hour", "int", key=True),
        ColumnSpec("temp", "number"),
        ColumnSpec("dewp", "number"),
        ColumnSpec("humid", "number"),
        ColumnSpec("wind_dir", "number"),
        ColumnSpec("wind_speed", "number"),
        ColumnSpec("wind_gust", "number"),
        ColumnSpec("precip", "number"),
        ColumnSpec("pressure", "number"),
        ColumnSpec("visib", "number"),
        ColumnSpec("time_hour", "str", key=True),
    ],
    # local hours repeat when clocks go back; the UTC hour is the key
    unique_together=["origin", "time_hour"],
    ranges=[
        RangeRule("hour", 0, 23),
        RangeRule("temp", -40, 130),
        RangeRule("humid", 0, 100),
        RangeRule("wind_dir", 0, 360),
        # the 2013 source has one 1048 mph reading: tolerated, reported, and nulled in features
        RangeRule("wind_speed", 0, 150, mostly=0.95),
        RangeRule("precip", 0, 10),
        RangeRule("pressure", 900, 1100),
        RangeRule("visib", 0, 10),
    ],
    allowed_values={"origin": ["EWR", "JFK", "LGA"]},
)
