"""The object store against a real S3 API server process (moto_server on loopback): the lake,
reports, the prediction log and DuckDB's httpfs reading the lake; and the store's faults."""

import threading

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.landing import archive_landed_file, read_landed_day
from pipelines.platform.lib.object_store import (
    ObjectStore,
    ObjectStoreUnavailable,
    configure_duckdb,
    download_file,
    upload_file,
)
from pipelines.platform.lib.prediction_log import PredictionLogWriter, read_day
from pipelines.platform.lib.settings import DataPaths

DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]


def _frame(rows_per_day: int = 100, days=DAYS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            PARTITION_COLUMN: np.repeat(days, rows_per_day),
            "x": rng.normal(size=rows_per_day * len(days)),
            "event_timestamp": pd.Timestamp("2013-01-01", tz="UTC"),
            "note": [None] * (rows_per_day * len(days)),
        }
    )


def test_the_profile_moves_files_into_the_bucket(object_store, tmp_path, monkeypatch):
    server, bucket = object_store
    monkeypatch.setenv("FLIGHTLINE_DATA_ROOT", str(tmp_path / "data"))
    paths = DataPaths.from_env()
    assert paths.lake == f"s3://{bucket}/lake"
    assert paths.mlflow_artifact_root == f"s3://{bucket}/mlflow"
    assert paths.prediction_log_for("t") == f"s3://{bucket}/prediction_log/t"
    assert paths.bento_exports == f"s3://{bucket}/bentos"
    assert paths.object_store == ObjectStore(
        server.endpoint, bucket, "flightline-test", "flightline-test-secret"
    )


def test_missing_bucket_variable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("FLIGHTLINE_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("FLIGHTLINE_S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match="FLIGHTLINE_S3_BUCKET is not"):
        DataPaths.from_env()
    monkeypatch.setenv("FLIGHTLINE_S3_ENDPOINT", "127.0.0.1:9")
    with pytest.raises(ValueError, match=r"expected http\(s\)://host:port"):
        DataPaths.from_env()


def test_lake_round_trip(object_store):
    server, bucket = object_store
    lake = Lake(f"s3://{bucket}/lake")
    frame = _frame()
    assert lake.write_partitions("t/table", frame, DAYS) == dict.fromkeys(DAYS, 100)
    assert server.keys("lake/", bucket) == [f"lake/t/table/{d}.parquet" for d in DAYS]
    assert lake.partitions("t/table") == DAYS
    back = lake.read_partitions("t/table", DAYS)
    pd.testing.assert_frame_equal(
        back.drop(columns="note"), frame.drop(columns="note"), check_dtype=False
    )
    assert lake.row_count("t/table", DAYS[0]) == 100
    lake.write_json("t/model", {"version": "3"})
    assert lake.read_json("t/model") == {"version": "3"}
    uri = lake.write_file("t/report_html", DAYS[0], ".html", b"<html></html>")
    assert uri == f"s3://{bucket}/lake/t/report_html/{DAYS[0]}.html"
    assert lake.read_file("t/report_html", DAYS[0], ".html") == b"<html></html>"


def test_duckdb_reads_the_lake_through_the_packaged_httpfs(object_store):
    _, bucket = object_store
    lake = Lake(f"s3://{bucket}/lake")
    lake.write_partitions("t/table", _frame(), DAYS)
    con = duckdb.connect()
    configure_duckdb(con.execute, ObjectStore.from_env())
    count, total = con.execute(
        f"select count(*), count(distinct {PARTITION_COLUMN}) "
        f"from read_parquet('{lake.glob('t/table')}')"
    ).fetchone()
    assert (count, total) == (300, 3)


def test_prediction_log_round_trip(object_store):
    server, bucket = object_store
    root = f"s3://{bucket}/prediction_log/t"
    writer = PredictionLogWriter(root, remote_flush_s=0.1)
    for i in range(50):
        writer.append(DAYS[i % 2], {"i": i, "score": i / 50})
    writer.close()
    assert writer.written == 50 and writer.dropped == 0
    first, torn = read_day(root, DAYS[0])
    assert torn == 0 and sorted(first["i"]) == list(range(0, 50, 2))
    keys = server.keys("prediction_log/t/", bucket)
    assert keys and all(k.endswith(".jsonl") for k in keys)
    assert read_day(root, DAYS[2])[0].empty


def test_unreachable_at_start_names_the_endpoint(object_store):
    server, bucket = object_store
    server.relay.cut()
    with pytest.raises(ObjectStoreUnavailable) as caught:
        ObjectStore.from_env().check()
    assert server.endpoint in str(caught.value) and "unreachable" in str(caught.value)
    lake = Lake(f"s3://{bucket}/lake")
    with pytest.raises(ObjectStoreUnavailable, match=server.endpoint):
        lake.read_partitions("t/table", DAYS)
    with pytest.raises(ObjectStoreUnavailable, match=server.endpoint):
        PredictionLogWriter(f"s3://{bucket}/prediction_log/t")
    server.relay.restore()
    ObjectStore.from_env().check()


def test_a_missing_bucket_names_it(object_store, monkeypatch):
    server, _ = object_store
    assert server.relay.up
    monkeypatch.setenv("FLIGHTLINE_S3_BUCKET", "no-such-bucket")
    with pytest.raises(ObjectStoreUnavailable, match="bucket 'no-such-bucket' does not exist"):
        ObjectStore.from_env().check()


@pytest.mark.slow
def test_failure_mid_write_leaves_nothing_half_written_and_a_rerun_succeeds(object_store):
    server, bucket = object_store
    lake = Lake(f"s3://{bucket}/lake")
    old = _frame(rows_per_day=10, days=DAYS[:1])
    lake.write_partitions("t/big", old, DAYS[:1])
    # A partition of ~24 MB: the network goes down after 4 MB of it reached the server.
    new = _frame(rows_per_day=1_000_000, days=DAYS[:1]).assign(
        y=lambda f: np.arange(len(f), dtype="float64"), z=lambda f: f["x"] * 2
    )
    server.relay.cut_after(4 << 20)
    with pytest.raises(ObjectStoreUnavailable, match=server.endpoint):
        lake.write_partitions("t/big", new, DAYS[:1])
    server.relay.restore()
    # Readers still see the previous partition, whole; nothing else under the table's name.
    assert lake.partitions("t/big") == DAYS[:1]
    assert len(lake.read_partitions("t/big", DAYS[:1])) == 10
    # The re-run writes it.
    lake.write_partitions("t/big", new, DAYS[:1])
    assert lake.row_count("t/big", DAYS[0]) == 1_000_000
    assert [k for k in server.keys("lake/t/big/", bucket) if k.endswith(".parquet")] == [
        f"lake/t/big/{DAYS[0]}.parquet"
    ]


def test_a_reader_never_sees_a_partial_partition_while_it_is_written(object_store):
    _, bucket = object_store
    lake = Lake(f"s3://{bucket}/lake")
    big = _frame(rows_per_day=500_000, days=DAYS[:1])
    seen: list[int] = []
    done = threading.Event()

    def read_while_writing():
        while not done.is_set():
            if lake.exists("t/race", DAYS[0]):
                seen.append(lake.row_count("t/race", DAYS[0]))

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    try:
        lake.write_partitions("t/race", big, DAYS[:1])
    finally:
        done.set()
        reader.join()
    assert set(seen) <= {500_000}


def test_the_archive_keeps_every_landed_version_in_the_bucket(object_store, tmp_path):
    server, bucket = object_store
    folder = tmp_path / "landing" / "flights"
    folder.mkdir(parents=True)
    archive = f"s3://{bucket}/archive/t"
    (folder / f"{DAYS[0]}.csv").write_text("a,b\n1,2\n")
    first = archive_landed_file(read_landed_day(tmp_path / "landing", "flights", DAYS[0]), archive)
    again = archive_landed_file(read_landed_day(tmp_path / "landing", "flights", DAYS[0]), archive)
    (folder / f"{DAYS[0]}.csv").write_text("a,b\n1,3\n")  # a corrected file re-lands
    fixed = archive_landed_file(read_landed_day(tmp_path / "landing", "flights", DAYS[0]), archive)
    assert first == again != fixed and str(first).startswith(archive)
    assert len(server.keys(f"archive/t/flights/{DAYS[0]}/", bucket)) == 2


def test_files_go_up_and_come_back_whole(object_store, tmp_path):
    server, bucket = object_store
    local = tmp_path / "export.bento"
    local.write_bytes(np.random.default_rng(1).bytes(3 << 20))
    uri = upload_file(f"s3://{bucket}/bentos", "svc/v1.bento", local)
    assert uri == f"s3://{bucket}/bentos/svc/v1.bento"
    assert server.keys("bentos/", bucket) == ["bentos/svc/v1.bento"]
    assert download_file(uri, tmp_path / "back.bento").read_bytes() == local.read_bytes()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        download_file(uri + ".missing", tmp_path / "none.bento")
