"""The landing sensor's logic: new days, replaced files, gaps, incomplete days, nothing new."""

import os

from pipelines.platform.lib.landing_watch import (
    contiguous_ranges,
    dump_state,
    load_state,
    scan_landing,
)

TABLES = ("flights", "weather")  # the landing tables of flight delay


def _land(root, day, tables=("flights", "weather"), content="a,b\n1,2\n"):
    for table in tables:
        (root / table).mkdir(parents=True, exist_ok=True)
        (root / table / f"{day}.csv").write_text(content)


def test_new_days_then_nothing_new(tmp_path):
    _land(tmp_path, "2013-01-01")
    _land(tmp_path, "2013-01-02")
    first = scan_landing(tmp_path, {}, TABLES)
    assert first.new_days == ["2013-01-01", "2013-01-02"]
    assert first.new_ranges() == [("2013-01-01", "2013-01-02")]
    again = scan_landing(tmp_path, load_state(dump_state(first.state)), TABLES)
    assert again.nothing_new and not again.new_days and not again.replaced_days


def test_replaced_file_reruns_its_day_but_a_touch_does_not(tmp_path):
    _land(tmp_path, "2013-01-01")
    state = scan_landing(tmp_path, {}, TABLES).state
    path = tmp_path / "flights" / "2013-01-01.csv"
    os.utime(path, ns=(1, 1))  # touched: same content, new mtime
    touched = scan_landing(tmp_path, state, TABLES)
    assert touched.nothing_new
    path.write_text("a,b\n1,3\n")  # corrected content
    replaced = scan_landing(tmp_path, touched.state, TABLES)
    assert replaced.replaced_days == ["2013-01-01"]
    assert replaced.fingerprint("2013-01-01") != touched.fingerprint("2013-01-01")


def test_a_gap_becomes_ranges(tmp_path):
    for day in ("2013-01-01", "2013-01-02", "2013-01-03", "2013-01-07", "2013-01-09"):
        _land(tmp_path, day)
    assert scan_landing(tmp_path, {}, TABLES).new_ranges() == [
        ("2013-01-01", "2013-01-03"),
        ("2013-01-07", "2013-01-07"),
        ("2013-01-09", "2013-01-09"),
    ]
    assert contiguous_ranges(["2013-02-28", "2013-03-01"]) == [("2013-02-28", "2013-03-01")]


def test_incomplete_day_waits_until_its_last_table_lands(tmp_path):
    _land(tmp_path, "2013-01-01", tables=("flights",))
    waiting = scan_landing(tmp_path, {}, TABLES)
    assert waiting.incomplete_days == {"2013-01-01": ["weather"]}
    assert waiting.nothing_new and waiting.state == {}
    _land(tmp_path, "2013-01-01", tables=("weather",))
    assert scan_landing(tmp_path, waiting.state, TABLES).new_days == ["2013-01-01"]


def test_partial_copies_and_stray_files_are_ignored(tmp_path):
    _land(tmp_path, "2013-01-01")
    (tmp_path / "flights" / "2013-01-02.csv.tmp").write_text("half")
    (tmp_path / "flights" / "notes.txt").write_text("x")
    assert scan_landing(tmp_path, {}, TABLES).new_days == ["2013-01-01"]


def test_a_day_landed_twice_is_reported(tmp_path):
    _land(tmp_path, "2013-01-01")
    (tmp_path / "flights" / "2013-01-01.parquet").write_bytes(b"PAR1")
    assert scan_landing(tmp_path, {}, TABLES).ambiguous == ["flights/2013-01-01"]
