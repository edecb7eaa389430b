"""The live path equals the training path (issue 24): every fact known after T changed; the
online store fed event by event by the platform's LiveFeed; every request predicted at or before
T served at its own time gets the vector, flags and answer of the unchanged world, and exactly
the point-in-time join's vector."""

import pandas as pd

from pipelines.platform.lib.live import live_paths
from tests.live_world import assert_live_equals_join, run_world
from tests.tasks.flight_delay.test_time_correctness import DAYS, SPEC, TASK, T, _raw, perturb


def test_every_view_has_an_honest_live_path():
    paths = live_paths(TASK)
    assert {p.kind for p in paths.values()} <= {"events", "published", "static"}
    assert paths["weather_hourly"].kind == "events"
    assert paths["origin_delay_stats"].kind == "published"


def test_live_vectors_at_or_before_t_equal_the_join_and_ignore_later_facts(tmp_path):
    flights, weather = _raw("flights"), _raw("weather")
    changed_flights, changed_weather, changed = perturb(flights, weather)
    assert changed > 1000
    from pipelines.tasks.flight_delay.flights import flight_timeline

    timeline = flight_timeline(flights)
    at = SPEC.prediction_time(timeline["sched_dep_ts"])
    window = timeline[(at <= T) & (at > T - pd.Timedelta(hours=3))]
    requests = window[
        ["carrier", "flight", "tailnum", "origin", "dest", "sched_dep_ts", "distance"]
    ]
    requests = requests.assign(flight=requests["flight"].astype("int64"))
    assert len(requests) > 50
    runs = {
        name: run_world(
            TASK,
            {"flights": f, "weather": w},
            DAYS,
            requests,
            T,
            tmp_path / name,
            step=pd.Timedelta(minutes=15),
        )
        for name, (f, w) in (
            ("real", (flights, weather)),
            ("changed", (changed_flights, changed_weather)),
        )
    }
    assert_live_equals_join(runs["real"], runs["changed"])
    # weather and the same-day statistics are fresh online (issue 24's skew)
    served = runs["real"].served
    assert served["weather_temp"].notna().all()
    assert served["origin_departed_today"].notna().all()
