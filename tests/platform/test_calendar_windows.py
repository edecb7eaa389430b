"""`make run` windows in calendar days, in every partition grain and zone: a window ending (or
starting) on a day the clocks change covers exactly its days, never the next one (a
spring-forward day has 23 hours, a fall-back day 25). Both real tasks' zones, both changes.
A window too short to train is an outcome: the days still run, no model phase, a reason."""

from datetime import date

import dagster as dg
import pytest

from pipelines.definitions import defs
from pipelines.platform.cli import (
    _partitions_between,
    _runnable_ranges,
    _task_window,
    too_short_to_train,
)
from pipelines.platform.components.task import load_task
from pipelines.platform.launch import RunResult

# (zone, spring-forward day, fall-back day): flight delay's New York, wind power's Paris.
CHANGES = [
    ("America/New_York", date(2013, 3, 10), date(2013, 11, 3)),
    ("Europe/Paris", date(2014, 3, 30), date(2014, 10, 26)),
    ("Europe/Paris", date(2015, 3, 29), date(2015, 10, 25)),
]
DAYS = [(zone, day) for zone, spring, fall in CHANGES for day in (spring, fall)]


def _daily(zone: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date="2013-01-01", end_date="2016-01-01", timezone=zone
    )


def _hourly(zone: str) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(
        start_date="2013-01-01-00:00", end_date="2016-01-01-00:00", timezone=zone
    )


@pytest.mark.parametrize(("zone", "day"), DAYS)
def test_a_one_day_window_on_a_clock_change_day_is_that_day(zone, day):
    assert _partitions_between(_daily(zone), day, day) == [day.isoformat()]


@pytest.mark.parametrize(("zone", "day"), DAYS)
def test_windows_ending_and_starting_on_a_clock_change_day(zone, day):
    before, after = date.fromordinal(day.toordinal() - 1), date.fromordinal(day.toordinal() + 1)
    daily = _daily(zone)
    assert _partitions_between(daily, before, day) == [before.isoformat(), day.isoformat()]
    assert _partitions_between(daily, day, after) == [day.isoformat(), after.isoformat()]
    assert _runnable_ranges(daily, before, day, set()) == [(before.isoformat(), day.isoformat())]


@pytest.mark.parametrize(("zone", "spring", "fall"), CHANGES)
def test_hourly_partitions_of_a_clock_change_day_are_its_hours(zone, spring, fall):
    hourly = _hourly(zone)
    spring_hours = _partitions_between(hourly, spring, spring)
    fall_hours = _partitions_between(hourly, fall, fall)
    assert len(spring_hours) == 23 and len(fall_hours) == 25
    for hours, day in ((spring_hours, spring), (fall_hours, fall)):
        assert {key[:10] for key in hours} == {day.isoformat()}
    # An ordinary day: 24 hours, midnight to 23:00.
    ordinary = _partitions_between(hourly, date(2014, 6, 1), date(2014, 6, 1))
    assert len(ordinary) == 24 and ordinary[0].endswith("00:00") and ordinary[-1].endswith("23:00")


@pytest.fixture(scope="module")
def graph():
    return defs().resolve_asset_graph()


def _ranges(graph, task: str, start: date, end: date, train: bool = True) -> list[dict]:
    calls = []

    def runner(job, keys, stage, tags=None, run_config=None):
        calls.append({"job": job, "stage": stage, "tags": tags or {}})
        return RunResult(f"run-{len(calls)}", job, True)

    keys = [k for k in graph.materializable_asset_keys if k.path[0] == task]
    _task_window(runner, task, keys, graph, start, end, set(), None, train)
    return calls


@pytest.mark.parametrize(
    ("task", "day"),
    [
        ("flight_delay", date(2013, 3, 10)),
        ("flight_delay", date(2013, 11, 3)),
        ("wind_power", date(2014, 3, 30)),
        ("wind_power", date(2014, 10, 26)),
    ],
)
def test_a_make_run_of_a_clock_change_day_runs_that_day_only(graph, task, day):
    """The issue's case: a one-day run of 2013-03-10 ran "2013-03-10..11"."""
    [partitions] = [c for c in _ranges(graph, task, day, day) if c["stage"] == "partitions"]
    assert partitions["tags"] == {
        "dagster/asset_partition_range_start": day.isoformat(),
        "dagster/asset_partition_range_end": day.isoformat(),
    }


def test_a_window_too_short_to_train_runs_its_days_and_says_why(graph):
    task = load_task("flight_delay")
    start, end = date(2013, 3, 1), date(2013, 3, 3)
    why = too_short_to_train(task, start, end)
    assert why and "3 days" in why and "needs at least 15" in why
    calls = _ranges(graph, "flight_delay", start, end, train=False)
    assert [c["stage"] for c in calls] == ["reference", "partitions"]  # no models phase
    assert too_short_to_train(task, date(2013, 3, 1), date(2013, 3, 15)) is None


def test_a_long_window_runs_as_one_run_per_year_of_days_around_blocked_ones():
    """Memory stays bounded: at most MAX_PARTITIONS_PER_RUN days a run, as the assets'
    backfill policy cuts a backfill launched from the UI."""
    from pipelines.platform.partitions import MAX_PARTITIONS_PER_RUN, ranged_backfill

    daily = _daily("America/New_York")
    ranges = _runnable_ranges(daily, date(2013, 1, 1), date(2015, 12, 31), {"2014-06-01"})
    assert ranges == [
        ("2013-01-01", "2014-01-01"),  # 366 days
        ("2014-01-02", "2014-05-31"),  # the blocked day ends a run
        ("2014-06-02", "2015-06-02"),  # 366 days
        ("2015-06-03", "2015-12-31"),
    ]
    lengths = [
        len(_partitions_between(daily, date.fromisoformat(a), date.fromisoformat(b)))
        for a, b in ranges
    ]
    assert (
        max(lengths) == MAX_PARTITIONS_PER_RUN and sum(lengths) == 3 * 365 - 1
    )  # all but the blocked day
    assert ranged_backfill.max_partitions_per_run == MAX_PARTITIONS_PER_RUN
