"""Wind power's live path (issue 24): readings streamed as each 10 minutes ends. Every reading
known after T changed; the online store fed event by event by the platform's LiveFeed; requests
of every turbine every 10 minutes up to T served at their own time get the unchanged world's
vector, flags and answer, and exactly the point-in-time join's vector."""

import pandas as pd

from pipelines.platform.lib.live import live_paths
from pipelines.tasks.wind_power.source import TURBINES
from tests.live_world import assert_live_equals_join, run_world
from tests.tasks.wind_power.test_time_correctness import TASK, T, _later_readings_changed, _raw


def test_live_vectors_at_or_before_t_equal_the_join_and_ignore_later_readings(tmp_path):
    assert {p.kind for p in live_paths(TASK).values()} == {"events"}
    raw = _raw("2014-09-08", "2014-09-11")
    worlds = {"real": raw, "changed": _later_readings_changed(raw)}
    days = ["2014-09-09", "2014-09-10", "2014-09-11"]
    marks = pd.date_range(T - pd.Timedelta(hours=3), T, freq="10min")
    requests = pd.DataFrame(
        [{"turbine": turbine, "predicted_at": at} for at in marks for turbine in TURBINES]
    )
    runs = {
        name: run_world(TASK, {"scada": frame}, days, requests, T, tmp_path / name)
        for name, frame in worlds.items()
    }
    assert_live_equals_join(runs["real"], runs["changed"])
    assert runs["real"].served["power_kw"].notna().mean() > 0.9  # fresh, not expired


def test_the_hourly_spread_does_not_depend_on_where_the_computation_starts():
    """The batch table computes from its day and the day before, the live path from the days
    around its clock: a reading's features must not depend on that (pandas' rolling std does,
    by rounding: a steady turbine's 0 came out as 1e-5 on the live path in the scenario)."""
    import numpy as np

    from pipelines.tasks.wind_power import features as F

    rng = np.random.default_rng(0)
    index = pd.date_range("2014-10-01", periods=500, freq="10min", tz="UTC")
    wide = pd.DataFrame(rng.normal(1500, 300, (500, 4)), index=index, columns=list(F.TURBINES))
    wide.iloc[100:140, 0] = 2050.0  # at rated power: no spread at all
    wide.iloc[200:203, 1] = np.nan  # a gap: fewer than four readings, no value
    everything, later = F._hourly_std(wide), F._hourly_std(wide.iloc[50:])
    assert np.array_equal(later.iloc[5:], everything.iloc[55:], equal_nan=True)
    assert (everything.iloc[110:140, 0] == 0.0).all()
    assert everything.iloc[:3].isna().all().all() and everything.iloc[3:].notna().sum().sum() > 0
