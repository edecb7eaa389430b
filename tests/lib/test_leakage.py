"""Leakage guard: nothing known only after departure is a feature."""

from pipelines.tasks.flight_delay.feast_declarations import FEATURE_SERVICE, feature_definitions
from pipelines.tasks.flight_delay.features import POST_DEPARTURE_COLUMNS, request_features
from pipelines.tasks.flight_delay.flights import flight_timeline
from tests.lib.test_features import _raw

FORBIDDEN = {
    "dep_time",
    "dep_delay",
    "arr_time",
    "arr_delay",
    "air_time",
    "label",
    "cancelled",
    "diverted",
    "dep_known_at",
    "arr_known_at",
    "label_known_at",
}


def _service_features():
    """Every feature of every declared version of the service (a model of each may serve)."""
    objects = feature_definitions(lambda table: f"/tmp/lake/{table}")
    return [
        (proj.name, f.name)
        for service in (objects["flight_delay_v1"], objects[FEATURE_SERVICE])
        for proj in service.feature_view_projections
        for f in proj.features
    ]


def test_no_post_departure_column_is_a_feature():
    names = {name for _, name in _service_features()}
    assert names and not names & FORBIDDEN
    assert set(POST_DEPARTURE_COLUMNS) <= FORBIDDEN


def test_request_features_come_from_the_schedule_only():
    raw = _raw(
        [{"day": 2, "sched_dep_time": 800, "dep_delay": 99.0, "arr_delay": 99.0, "tailnum": "N1"}]
    )
    timeline = flight_timeline(raw)
    altered = timeline.assign(
        dep_delay=0.0, arr_delay=0.0, label=0.0, dep_known_at=timeline["sched_dep_ts"]
    )
    assert request_features(timeline).equals(request_features(altered))
    assert not set(request_features(timeline).columns) & FORBIDDEN


def test_delays_only_enter_as_facts_about_other_flights():
    # The views built from delays are keyed by origin or aircraft and stamped when the delay
    # became known; the point-in-time test in tests/e2e checks their join on real data.
    views = {view for view, _ in _service_features()}
    assert {"origin_recent_departures", "aircraft_last_arrival"} <= views
    objects = feature_definitions(lambda table: f"/tmp/lake/{table}")
    assert list(objects["aircraft_last_arrival"].entities) == ["plane"]
    assert list(objects["origin_recent_departures"].entities) == ["origin_airport"]
