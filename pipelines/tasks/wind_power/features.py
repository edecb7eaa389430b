"""Wind power's feature and example tables, and the features computed from a request.

The question, asked every 10 minutes t for each turbine: will its mean output over the hour
starting t + 1 h be at least 205 kW (10% of its 2,050 kW rating) above its mean output over the
last hour [t - 1 h, t)? A ramp-up: what a dispatcher must see coming. (The output level itself is
a persistence problem, which the last reading already answers; a ramp is what it cannot.)

Which facts become known when (readings are 10-minute averages; s = t - 10 min, the last
complete interval):

| fact                                               | stamped (known at) | used at t as                        |
|----------------------------------------------------|--------------------|-------------------------------------|
| power, wind speed and direction of interval s      | s + 10 min = t     | power_kw, wind_speed, wind_dir_*    |
| the six intervals of [t - 1 h, t)                  | t                  | *_mean_1h, *_std_1h, wind_max_1h    |
| the twelve before them, [t - 3 h, t - 1 h)         | t - 1 h and before | power_mean_3h, *_trend_1h           |
| every turbine's last hour (the farm)               | t                  | farm_power_mean_1h, farm_wind_mean_1h|
| local hour of the target hour                      | always (calendar)  | target_hour                         |
| the label: mean power of [t + 1 h, t + 2 h)        | t + 2 h            | never a feature                     |

Every feature row is stamped at the end of the interval it describes, so Feast's point-in-time
join gives a prediction made at t the row of interval t - 10 min and never a later one. Readings
land as one file per Paris day; the row of a day's last interval is stamped at midnight, in the
next day's partition window. A missing reading is missing (NaN), never filled: an hour's mean
needs four of its six readings.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.tasks.wind_power.source import INTERVAL, LOCAL_TZ, RATED_KW, TURBINES

if TYPE_CHECKING:
    import pandas as pd

HOUR = 6  # 10-minute intervals in an hour
LEAD = timedelta(hours=1)  # the target hour starts this long after t
# The label: the target hour's mean output is at least this above the last hour's.
RAMP_KW = 0.10 * RATED_KW
FEATURE_COLUMNS = (
    "power_kw",
    "power_mean_1h",
    "power_mean_3h",
    "power_std_1h",
    "power_trend_1h",
    "power_10m_vs_1h",
    "wind_speed",
    "wind_mean_1h",
    "wind_std_1h",
    "wind_max_1h",
    "wind_trend_1h",
    "wind_dir_sin",
    "wind_dir_cos",
    "farm_power_mean_1h",
    "farm_wind_mean_1h",
)


def _wide(raw: pd.DataFrame, column: str, index: pd.DatetimeIndex) -> pd.DataFrame:
    """One column of the readings on the complete 10-minute grid: intervals x turbines (NaN where
    a turbine reported nothing). A repeated reading, which only the days the uniqueness check
    blocks have, would count once, averaged."""
    wide = raw.pivot_table(
        index="_at", columns="Wind_turbine_name", values=column, aggfunc="mean", dropna=False
    )
    return wide.reindex(index=index, columns=list(TURBINES)).astype("float64")


def _hourly(wide: pd.DataFrame, hours: int = 1):
    return wide.rolling(HOUR * hours, min_periods=4 * hours)


def _hourly_std(wide: pd.DataFrame) -> pd.DataFrame:
    """The last hour's standard deviation from each window's own readings. pandas' rolling std
    updates a running sum over the whole series, so a steady turbine's 0 came out as 0 or as
    1e-5 depending on where the computation started: the batch table (its day and the day
    before) and the live path (the days around its clock) start at different readings."""
    import warnings

    import numpy as np
    import pandas as pd
    from numpy.lib.stride_tricks import sliding_window_view

    values = wide.to_numpy("float64")
    padded = np.vstack([np.full((HOUR - 1, values.shape[1]), np.nan), values])
    windows = sliding_window_view(padded, HOUR, axis=0)  # interval x turbine x the hour
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows with fewer than two readings
        std = np.nanstd(windows, axis=2, ddof=1)
    std[(~np.isnan(windows)).sum(axis=2) < 4] = np.nan  # as min_periods=4
    return pd.DataFrame(std, index=wide.index, columns=wide.columns)


def _grid(raw: pd.DataFrame) -> tuple[pd.DatetimeIndex, dict[str, pd.DataFrame]]:
    """Every feature of every interval s (the row a prediction at s + 10 min reads)."""
    import numpy as np
    import pandas as pd

    raw = raw.assign(_at=pd.to_datetime(raw["Date_time"], utc=True))
    index = pd.date_range(raw["_at"].min(), raw["_at"].max(), freq=INTERVAL)
    power, wind, direction = (_wide(raw, c, index) for c in ("P_avg", "Ws_avg", "Wa_avg"))
    power_1h, wind_1h = _hourly(power).mean(), _hourly(wind).mean()
    radians = np.radians(direction)
    features = {
        "power_kw": power,
        "power_mean_1h": power_1h,
        "power_mean_3h": _hourly(power, 3).mean(),
        "power_std_1h": _hourly_std(power),
        "power_trend_1h": power_1h - power_1h.shift(HOUR),
        "power_10m_vs_1h": power - power_1h,
        "wind_speed": wind,
        "wind_mean_1h": wind_1h,
        "wind_std_1h": _hourly_std(wind),
        "wind_max_1h": _hourly(wind).max(),
        "wind_trend_1h": wind_1h - wind_1h.shift(HOUR),
        "wind_dir_sin": np.sin(radians),
        "wind_dir_cos": np.cos(radians),
    }
    # The farm: every turbine's last hour, known at the same instant as the turbine's own.
    for name, hourly in (("farm_power_mean_1h", power_1h), ("farm_wind_mean_1h", wind_1h)):
        farm = hourly.mean(axis=1)
        features[name] = pd.DataFrame({t: farm for t in TURBINES}, index=index)
    return index, features


def _long(wide: pd.DataFrame) -> pd.Series:
    """(turbine, interval) -> value."""
    return wide.stack(future_stack=True).swaplevel().sort_index()


def scada_features(raw: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    """Each reading of the run's days with its last hours, stamped when its interval ended. The
    raw window brings the day before, so that three-hour means exist from the run's first
    interval."""
    import pandas as pd

    _, grid = _grid(raw)
    rows = pd.MultiIndex.from_arrays(
        [raw["Wind_turbine_name"].astype(str), pd.to_datetime(raw["Date_time"], utc=True)]
    )
    frame = pd.DataFrame(
        {name: _long(grid[name]).reindex(rows).to_numpy() for name in FEATURE_COLUMNS}
    )
    frame.insert(0, "turbine", rows.get_level_values(0))
    frame.insert(
        1, "event_timestamp", (rows.get_level_values(1) + INTERVAL).astype("datetime64[us, UTC]")
    )
    frame[PARTITION_COLUMN] = raw[PARTITION_COLUMN].to_numpy()
    mine = frame[PARTITION_COLUMN].isin(partition_keys) & ~frame.duplicated(
        ["turbine", "event_timestamp"]
    )
    return frame.loc[mine].reset_index(drop=True)


def examples(raw: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    """The predictions whose label landed in the run's days: one per turbine and 10-minute mark
    t, labelled by whether the mean output of [t + 1 h, t + 2 h) is RAMP_KW above that of
    [t - 1 h, t) (known at t + 2 h, when the target hour's last reading lands: that reading's day
    is the example's partition). Either hour short of four readings: no label."""
    import pandas as pd

    _, grid = _grid(raw)
    last_hour = grid["power_mean_1h"]
    target_hour = last_hour.shift(-2 * HOUR)  # the hour ending t + 2 h, seen from s = t - 10 min
    label = (
        (target_hour - last_hour >= RAMP_KW)
        .astype("float64")
        .where(target_hour.notna() & last_hour.notna())
    )
    labels = _long(label)
    turbine = labels.index.get_level_values(0)
    made_at = labels.index.get_level_values(1) + INTERVAL
    landed = (
        pd.Series(made_at + 2 * LEAD - INTERVAL).dt.tz_convert(LOCAL_TZ).dt.strftime("%Y-%m-%d")
    )
    mine = landed.isin(partition_keys).to_numpy()
    made_at = pd.Series(made_at[mine])
    return pd.DataFrame(
        {
            "example_id": turbine[mine] + "@" + made_at.dt.strftime("%Y-%m-%dT%H:%MZ"),
            "turbine": turbine[mine],
            "predicted_at": made_at.astype("datetime64[us, UTC]"),
            "label": labels.to_numpy()[mine],
            # the target hour's last reading lands 2 h after the prediction
            "label_known_at": (made_at + 2 * LEAD).astype("datetime64[us, UTC]"),
            PARTITION_COLUMN: landed.to_numpy()[mine],
        }
    ).reset_index(drop=True)


def request_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Requests or examples -> turbine and the prediction time (UTC)."""
    import pandas as pd

    frame = rows.loc[:, ["turbine", "predicted_at"]].copy()
    frame["turbine"] = frame["turbine"].astype(str)
    frame["predicted_at"] = pd.to_datetime(frame["predicted_at"], utc=True)
    return frame.reset_index(drop=True)


def entity_keys(rows: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"turbine": rows["turbine"].astype(str)}).reset_index(drop=True)


def request_features(rows: pd.DataFrame) -> pd.DataFrame:
    """The local hour of the target hour (the wind's daily cycle), known at any time before it."""
    import pandas as pd

    target = (rows["predicted_at"] + LEAD).dt.tz_convert(LOCAL_TZ)
    return pd.DataFrame(
        {"turbine": rows["turbine"].astype(str), "target_hour": target.dt.hour.astype("int64")}
    ).reset_index(drop=True)
