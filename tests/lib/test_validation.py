"""Each crafted bad partition fails the named check, with the failing expectation, a row count
and a sample of offending rows."""

import numpy as np
import pandas as pd
import pytest

from pipelines.platform.lib import validation as v
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.tasks.flight_delay.contracts import FLIGHTS, WEATHER
from tests.conftest import source_day

DAY = "2013-01-02"


@pytest.fixture(scope="module")
def flights_day() -> pd.DataFrame:
    return source_day("flights", DAY).assign(**{PARTITION_COLUMN: DAY})


def _failed(outcomes):
    return {name for name, outcome in outcomes.items() if not outcome.passed}


@pytest.mark.slow
def test_a_real_day_passes_every_check(flights_day):
    outcomes = v.validate(flights_day, FLIGHTS, [DAY])
    assert _failed(outcomes) == set()
    assert all(o.evaluated > 0 for o in outcomes.values())


def test_real_weather_day_with_the_1048_mph_glitch_passes_but_reports_it():
    weather = source_day("weather", "2013-02-12").assign(**{PARTITION_COLUMN: "2013-02-12"})
    assert _failed(v.validate(weather, WEATHER, ["2013-02-12"])) == set()


def test_missing_column(flights_day):
    outcomes = v.validate(flights_day.drop(columns=["distance"]), FLIGHTS, [DAY])
    assert _failed(outcomes) == {"schema"}
    failure = outcomes["schema"].failures[0]
    assert "expect_table_columns_to_match_set" in failure["expectation"]
    assert "distance" in str(failure.get("mismatched") or failure.get("observed"))


def test_wrong_type(flights_day):
    bad = flights_day.copy()
    bad["distance"] = bad["distance"].astype(str) + " mi"
    outcomes = v.validate(bad, FLIGHTS, [DAY])
    assert "schema" in _failed(outcomes)
    assert any("distance" in f["expectation"] for f in outcomes["schema"].failures)


def test_null_keys(flights_day):
    bad = flights_day.copy()
    bad.loc[bad.index[:4], "carrier"] = None
    outcomes = v.validate(bad, FLIGHTS, [DAY])
    assert _failed(outcomes) == {"keys_not_null"}
    failure = outcomes["keys_not_null"].failures[0]
    assert failure["rows"] == 4 and len(failure["sample"]) == 4
    assert all(row["carrier"] is None for row in failure["sample"])


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("sched_dep_time", 2575),
        ("sched_dep_time", 1261),
        ("distance", -5),
        ("dep_delay", 4000.0),
        ("origin", "XXX"),
    ],
)
def test_out_of_range_values(flights_day, column, value):
    bad = flights_day.copy()
    bad.loc[bad.index[7], column] = value
    outcomes = v.validate(bad, FLIGHTS, [DAY])
    assert _failed(outcomes) == {"values_in_range"}
    failure = outcomes["values_in_range"].failures[0]
    assert failure["rows"] == 1
    assert failure["sample"][0][column] == value


def test_duplicated_flights(flights_day):
    bad = pd.concat([flights_day, flights_day.iloc[[3, 9]]], ignore_index=True)
    outcomes = v.validate(bad, FLIGHTS, [DAY])
    assert _failed(outcomes) == {"unique_rows"}
    assert outcomes["unique_rows"].failures[0]["rows"] == 4  # both copies of each


def test_rows_dated_on_another_day(flights_day):
    bad = flights_day.copy()
    bad.loc[bad.index[:3], "day"] = 3
    outcomes = v.validate(bad, FLIGHTS, [DAY])
    assert "on_partition_day" in _failed(outcomes)
    assert outcomes["on_partition_day"].failures[0]["rows"] == 3


def test_row_count_low_against_trailing_days():
    trailing = {f"2013-01-0{d}": 900 for d in range(1, 8)}
    outcome = v.row_count_outcome({"2013-01-08": 200}, trailing)
    assert not outcome.passed
    assert outcome.failures[0]["observed"] == 200
    assert v.row_count_outcome({"2013-01-08": 700}, trailing).passed


def test_empty_day_fails_row_count_even_without_history():
    assert not v.row_count_outcome({"2013-01-01": 0}, {}).passed


def test_row_count_uses_earlier_days_of_the_same_batch():
    outcome = v.row_count_outcome({"2013-01-01": 900, "2013-01-02": 910, "2013-01-03": 100}, {})
    assert [f["observed"] for f in outcome.failures] == [100]


def test_nan_in_samples_is_kept_as_missing(flights_day):
    bad = flights_day.copy()
    bad.loc[bad.index[0], "flight"] = np.nan
    outcomes = v.validate(bad, FLIGHTS, [DAY])
    assert "keys_not_null" in _failed(outcomes)
