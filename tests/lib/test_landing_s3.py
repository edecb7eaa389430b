"""The landing folder in the object store (production profile), against a real S3 API server
process (moto_server on loopback): a replay lands its day files in the bucket, the sensor's scan
sees them, ingestion reads and archives them there, and a store that is down is a clear error."""

import hashlib
import time
from datetime import date

import pytest

from pipelines.platform.lib.landing import (
    LandingError,
    archive_landed_file,
    find_day_file,
    land_file,
    read_landed_day,
)
from pipelines.platform.lib.landing_watch import dump_state, load_state, scan_landing
from pipelines.platform.lib.object_store import ObjectStoreUnavailable
from pipelines.platform.lib.settings import DataPaths
from pipelines.tasks.flight_delay.replay import replay_days
from tests.conftest import source_day

# Trains, tunes or starts a storage server: `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

TASK = "flight_delay"
TABLES = ("flights", "weather")
DAYS = ["2013-01-01", "2013-01-02"]


def _root(bucket: str) -> str:
    return f"s3://{bucket}/landing/{TASK}"


def _object(server, bucket: str, key: str) -> bytes:
    return server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _put(server, bucket: str, key: str, body: bytes) -> None:
    server.client().put_object(Bucket=bucket, Key=key, Body=body)


def _without_last_row(content: bytes) -> bytes:
    return content[: content.rindex(b"\n", 0, -1) + 1]


def test_the_profile_puts_the_landing_folder_in_the_bucket(object_store, tmp_path, monkeypatch):
    _, bucket = object_store
    monkeypatch.setenv("FLIGHTLINE_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("FLIGHTLINE_LANDING_DIR", raising=False)
    paths = DataPaths.from_env()
    assert paths.landing == f"s3://{bucket}/landing"
    assert paths.landing_for(TASK) == _root(bucket)
    assert paths.archive == f"s3://{bucket}/archive"
    monkeypatch.setenv("FLIGHTLINE_LANDING_DIR", str(tmp_path / "drop"))  # a variable still wins
    assert DataPaths.from_env().landing_for(TASK) == tmp_path / "drop" / TASK


def test_the_embedded_default_keeps_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("FLIGHTLINE_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("FLIGHTLINE_LANDING_DIR", raising=False)
    monkeypatch.setenv("FLIGHTLINE_DATA_ROOT", str(tmp_path))
    paths = DataPaths.from_env()
    assert paths.landing == tmp_path.resolve() / "landing"
    assert paths.landing_for(TASK) == tmp_path.resolve() / "landing" / TASK


def test_a_replay_lands_in_the_bucket_and_the_sensor_sees_it(object_store):
    server, bucket = object_store
    root = _root(bucket)
    landed = replay_days(root, date(2013, 1, 1), date(2013, 1, 2))
    expected = [f"landing/{TASK}/{t}/{d}.csv" for t in TABLES for d in DAYS]
    assert server.keys("landing/", bucket) == expected  # no temporary object left behind
    assert sorted(str(f.path) for f in landed) == [f"s3://{bucket}/{k}" for k in expected]

    first = scan_landing(root, {}, TABLES)
    assert first.new_days == DAYS and not first.replaced_days and not first.ambiguous
    state = load_state(dump_state(first.state))
    assert scan_landing(root, state, TABLES).nothing_new

    # The same replay again rewrites nothing (the objects keep their LastModified).
    before = {
        k: server.client().head_object(Bucket=bucket, Key=k)["LastModified"] for k in expected
    }
    replay_days(root, date(2013, 1, 1), date(2013, 1, 2))
    after = {k: server.client().head_object(Bucket=bucket, Key=k)["LastModified"] for k in expected}
    assert before == after

    # Re-uploaded with identical bytes, a second later: a new LastModified, the same content.
    key = f"landing/{TASK}/flights/{DAYS[0]}.csv"
    content = _object(server, bucket, key)
    time.sleep(1.1)
    _put(server, bucket, key, content)
    touched = scan_landing(root, state, TABLES)
    assert touched.nothing_new
    assert touched.state[f"flights/{DAYS[0]}.csv"].sha256 == state[f"flights/{DAYS[0]}.csv"].sha256

    # A corrected file re-runs its day, and only its day.
    corrected = _without_last_row(content)
    land_file(root, "flights", DAYS[0], corrected, rows=0)
    replaced = scan_landing(root, touched.state, TABLES)
    assert replaced.replaced_days == [DAYS[0]] and not replaced.new_days
    assert replaced.fingerprint(DAYS[0]) != touched.fingerprint(DAYS[0])
    assert replaced.fingerprint(DAYS[1]) == touched.fingerprint(DAYS[1])


def test_a_same_size_correction_within_the_same_second_is_seen(object_store):
    """S3's LastModified has whole seconds: (size, mtime) alone would miss this correction."""
    _, bucket = object_store
    root = _root(bucket)
    for table in TABLES:
        land_file(root, table, DAYS[0], b"a,b\n1,2\n", rows=1)
    first = scan_landing(root, {}, TABLES)
    assert first.new_days == [DAYS[0]]
    land_file(root, "flights", DAYS[0], b"a,b\n1,3\n", rows=1)  # same size, at once
    assert scan_landing(root, first.state, TABLES).replaced_days == [DAYS[0]]


def test_incomplete_and_ambiguous_days_in_the_bucket(object_store):
    server, bucket = object_store
    root = _root(bucket)
    land_file(root, "flights", DAYS[0], b"a,b\n1,2\n", rows=1)
    _put(server, bucket, f"landing/{TASK}/flights/{DAYS[1]}.csv.tmp-1", b"a,b\n1")  # in flight
    _put(server, bucket, f"landing/{TASK}/flights/notes.txt", b"x")
    waiting = scan_landing(root, {}, TABLES)
    assert waiting.incomplete_days == {DAYS[0]: ["weather"]} and waiting.state == {}
    land_file(root, "weather", DAYS[0], b"c\n1\n", rows=1)
    assert scan_landing(root, waiting.state, TABLES).new_days == [DAYS[0]]
    land_file(root, "flights", DAYS[0], b"PAR1", rows=0, suffix=".parquet")
    assert scan_landing(root, {}, TABLES).ambiguous == [f"flights/{DAYS[0]}"]
    with pytest.raises(LandingError, match="landed twice"):
        read_landed_day(root, "flights", DAYS[0])


def test_ingestion_reads_and_archives_in_the_bucket(object_store):
    server, bucket = object_store
    root = _root(bucket)
    replay_days(root, date(2013, 1, 1), date(2013, 1, 1))
    key = f"landing/{TASK}/flights/{DAYS[0]}.csv"
    landed = read_landed_day(root, "flights", DAYS[0])
    content = _object(server, bucket, key)
    assert landed.path == f"s3://{bucket}/{key}" == find_day_file(root, "flights", DAYS[0])
    assert landed.sha256 == hashlib.sha256(content).hexdigest()
    source = source_day("flights", DAYS[0])
    assert list(landed.frame.columns) == list(source.columns)
    assert len(landed.frame) == len(source)

    archive = f"s3://{bucket}/archive/{TASK}"
    first = archive_landed_file(landed, archive)
    assert first == f"{archive}/flights/{DAYS[0]}/{landed.sha256[:16]}.csv"
    assert archive_landed_file(landed, archive) == first  # kept once
    assert _object(server, bucket, first.removeprefix(f"s3://{bucket}/")) == content
    land_file(root, "flights", DAYS[0], _without_last_row(content), rows=0)
    fixed = archive_landed_file(read_landed_day(root, "flights", DAYS[0]), archive)
    assert fixed != first
    assert len(server.keys(f"archive/{TASK}/flights/{DAYS[0]}/", bucket)) == 2


def test_bad_files_in_the_bucket_are_named_by_their_uri(object_store):
    server, bucket = object_store
    root = _root(bucket)
    _put(server, bucket, f"landing/{TASK}/flights/{DAYS[0]}.json", b"{}")
    with pytest.raises(LandingError, match=rf"no flights file for {DAYS[0]} in s3://{bucket}/"):
        read_landed_day(root, "flights", DAYS[0])
    with pytest.raises(LandingError, match=rf"found {DAYS[0]}.json: only .csv or .parquet"):
        read_landed_day(root, "flights", DAYS[0])
    land_file(root, "flights", DAYS[0], b"", rows=0)
    with pytest.raises(LandingError, match=rf"s3://{bucket}/landing/.* is empty"):
        read_landed_day(root, "flights", DAYS[0])
    land_file(root, "weather", DAYS[0], b"year,month\n2013,1\n", rows=1, suffix=".parquet")
    with pytest.raises(LandingError, match=rf"s3://{bucket}/.* not a readable Parquet file"):
        read_landed_day(root, "weather", DAYS[0])


def test_a_store_that_is_down_is_an_error_naming_the_endpoint(object_store):
    server, bucket = object_store
    root = _root(bucket)
    land_file(root, "flights", DAYS[0], b"a,b\n1,2\n", rows=1)
    server.relay.cut()
    with pytest.raises(ObjectStoreUnavailable, match=server.endpoint):
        scan_landing(root, {}, TABLES)
    with pytest.raises(ObjectStoreUnavailable, match=server.endpoint):
        read_landed_day(root, "flights", DAYS[0])
    with pytest.raises(ObjectStoreUnavailable, match=server.endpoint):
        land_file(root, "flights", DAYS[1], b"a,b\n1,2\n", rows=1)
    server.relay.restore()
    assert scan_landing(root, {}, TABLES).incomplete_days == {DAYS[0]: ["weather"]}


def test_an_hourly_task_lands_in_the_bucket(object_store):
    """Hour keys carry a colon (2024-03-01-05:00): fine as object keys, scanned and read back."""
    from tests.tasks.toy_sensor.domain import replay

    server, bucket = object_store
    root = f"s3://{bucket}/landing/toy_sensor"
    landed = replay(root, date(2024, 3, 1), date(2024, 3, 1))
    assert len(landed) == 24 and len(server.keys("landing/toy_sensor/readings/", bucket)) == 24
    first = scan_landing(root, {}, ["readings"])
    assert first.new_days == sorted(f.partition for f in landed)
    hour = landed[5].partition
    assert len(read_landed_day(root, "readings", hour).frame) == landed[5].rows


def test_blocked_partitions_look_in_the_bucket(object_store):
    from pipelines.platform.cli import blocked_partitions
    from pipelines.platform.components.task import load_task

    _, bucket = object_store
    root = _root(bucket)
    replay_days(root, date(2013, 1, 1), date(2013, 1, 2))
    blocked = blocked_partitions(load_task(TASK), root, date(2013, 1, 1), date(2013, 1, 3))
    assert blocked == {"2013-01-03": "no flights, weather file"}
