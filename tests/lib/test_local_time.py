"""Request times read as wall-clock times of the task's zone: the same answers as pandas, and
DST gaps and overlaps refused."""

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from pipelines.platform.lib.local_time import to_utc


@pytest.mark.parametrize(
    ("zone", "wall"),
    [
        ("America/New_York", datetime(2013, 3, 10, 2, 30)),  # skipped: spring forward
        ("America/New_York", datetime(2013, 11, 3, 1, 30)),  # shown twice: fall back
        ("Australia/Melbourne", datetime(2015, 10, 4, 2, 30)),
        ("Australia/Melbourne", datetime(2015, 4, 5, 2, 30)),
    ],
)
def test_a_time_the_clock_skips_or_repeats_is_refused(zone, wall):
    with pytest.raises(ValueError, match="does not exist or is ambiguous"):
        to_utc(wall, zone)


@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Melbourne"])
def test_every_quarter_hour_of_a_year_matches_pandas(zone):
    walls = pd.date_range("2015-01-01", "2016-01-01", freq="15min")
    expected = walls.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").tz_convert("UTC")
    for wall, utc in zip(walls.to_pydatetime(), expected, strict=True):
        if pd.isna(utc):
            with pytest.raises(ValueError):
                to_utc(wall, zone)
        else:
            assert to_utc(wall, zone) == utc.to_pydatetime()


def test_an_aware_time_is_only_converted():
    aware = datetime(2013, 3, 10, 2, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert to_utc(aware, "America/New_York") == datetime(2013, 3, 10, 7, 30, tzinfo=UTC)
    assert to_utc(aware, "America/New_York").tzinfo == UTC
