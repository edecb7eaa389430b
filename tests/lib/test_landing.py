import pandas as pd
import pytest

from pipelines.platform.lib.landing import LandingError, archive_landed_file, read_landed_day
from tests.conftest import source_day

DAY = "2013-01-02"


def _land(tmp_path, content: bytes, suffix=".csv"):
    folder = tmp_path / "flights"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DAY}{suffix}"
    path.write_bytes(content)
    return path


def test_reads_csv_and_parquet_alike(tmp_path):
    frame = source_day("flights", DAY)
    _land(tmp_path, frame.to_csv(index=False).encode())
    from_csv = read_landed_day(tmp_path, "flights", DAY).frame
    (tmp_path / "flights" / f"{DAY}.csv").unlink()
    frame.to_parquet(tmp_path / "flights" / f"{DAY}.parquet")
    from_parquet = read_landed_day(tmp_path, "flights", DAY).frame
    assert len(from_csv) == len(from_parquet) == len(frame)
    assert list(from_csv.columns) == list(from_parquet.columns)


def test_missing_file_names_the_day(tmp_path):
    with pytest.raises(LandingError, match=f"no flights file for {DAY}"):
        read_landed_day(tmp_path, "flights", DAY)


def test_unsupported_extension_is_pointed_out(tmp_path):
    _land(tmp_path, b"{}", suffix=".json")
    with pytest.raises(LandingError, match=r"found 2013-01-02.json: only .csv or .parquet"):
        read_landed_day(tmp_path, "flights", DAY)


def test_empty_file(tmp_path):
    _land(tmp_path, b"")
    with pytest.raises(LandingError, match="is empty"):
        read_landed_day(tmp_path, "flights", DAY)


def test_file_that_is_not_parquet(tmp_path):
    _land(tmp_path, b"year,month\n2013,1\n", suffix=".parquet")
    with pytest.raises(LandingError, match="not a readable Parquet file"):
        read_landed_day(tmp_path, "flights", DAY)


def test_file_that_is_not_csv(tmp_path):
    _land(tmp_path, bytes(range(256)) * 8)
    with pytest.raises(LandingError, match="not a readable CSV file"):
        read_landed_day(tmp_path, "flights", DAY)


def test_two_files_for_one_day_are_ambiguous(tmp_path):
    _land(tmp_path, b"a\n1\n")
    _land(tmp_path, b"x", suffix=".parquet")
    with pytest.raises(LandingError, match="landed twice"):
        read_landed_day(tmp_path, "flights", DAY)


def test_archive_keeps_every_version_that_landed(tmp_path):
    frame = source_day("flights", DAY)
    _land(tmp_path, frame.to_csv(index=False).encode())
    first = archive_landed_file(read_landed_day(tmp_path, "flights", DAY), tmp_path / "archive")
    _land(tmp_path, frame.head(10).to_csv(index=False).encode())  # a correction
    second = archive_landed_file(read_landed_day(tmp_path, "flights", DAY), tmp_path / "archive")
    assert first != second and first.exists() and second.exists()
    assert len(pd.read_csv(first)) == len(frame)
