"""The point-in-time check of wind power's training rows, against the SCADA export itself."""

import numpy as np
import pandas as pd

TEN_MINUTES = pd.Timedelta(minutes=10)


def scada_readings(raw: pd.DataFrame, column: str = "P_avg") -> pd.Series:
    """(turbine, interval start) -> the reading; the export's repeated autumn hour kept once."""
    at = pd.to_datetime(raw["Date_time"], utc=True)
    readings = pd.Series(
        raw[column].astype("float64").to_numpy(),
        index=pd.MultiIndex.from_arrays([raw["Wind_turbine_name"], at]),
    )
    return readings[~readings.index.duplicated()]


def assert_rows_carry_the_last_complete_reading(rows: pd.DataFrame, t, power: pd.Series) -> None:
    """A row made at t carries the power of [t - 10 min, t) (stamped t), never that of
    [t, t + 10 min) (stamped t + 10 min). Where the turbine reported nothing in [t - 10 min, t),
    Feast serves an older reading within the view's TTL: stale, never later."""
    t = pd.to_datetime(t, utc=True)
    known = power.reindex(pd.MultiIndex.from_arrays([rows["turbine"], t - TEN_MINUTES]))
    later = power.reindex(pd.MultiIndex.from_arrays([rows["turbine"], t]))
    known, later, seen = known.to_numpy(), later.to_numpy(), rows["power_kw"].to_numpy()
    has = ~np.isnan(known) & ~np.isnan(seen)
    assert has.mean() > 0.95
    np.testing.assert_array_equal(seen[has], known[has])
    assert (later[has] != known[has]).mean() > 0.9  # the two differ, so the equality is evidence
