"""The platform's online materialization writes exactly the rows Feast's own `materialize` writes
(same bytes, same timestamps, same registry intervals), Feast reads them back with its own
`get_online_features`, a stored newer value is never replaced by an older one, and a row that
cannot be keyed is refused with the key's name."""

import contextlib
import io
import math
import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines.platform.lib.feature_store import (
    EARLIEST,
    FeastLocation,
    materialize_up_to,
    open_store,
)
from pipelines.platform.lib.online_materialize import encode_column, encode_entity_keys
from pipelines.platform.lib.settings import PROJECT_ROOT
from tests.redis_scratch import empty_redis_url

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def test_values_encode_to_feasts_own_bytes():
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    cases = {
        "DOUBLE": pd.Series([1.5, np.nan, None, -0.0, 1e300, -3.25, math.pi], dtype="float64"),
        "INT64": pd.Series([0, 1, -1, 300, 2**62, -(2**63), None], dtype="Int64"),
        "STRING": pd.Series(["ab", "", None, "é ✈", "x" * 300], dtype="object"),
        "BOOL": pd.Series([True, False, None], dtype="object"),
    }
    for kind, values in cases.items():
        feast = [
            v.SerializeToString()
            for v in python_values_to_proto_values(
                [None if pd.isna(v) else v for v in values.tolist()], ValueType[kind]
            )
        ]
        assert encode_column(values, kind)[0] == feast, kind
    assert encode_column(pd.Series([b"x"]), "BYTES") is None  # left to Feast


def test_entity_keys_encode_to_feasts_own_bytes():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    frame = pd.DataFrame({"shop": [7, -2, 2**40], "driver": ["a", "ü", ""]})
    ours = encode_entity_keys(frame, {"shop": "INT64", "driver": "STRING"})
    feast = [
        serialize_entity_key(
            EntityKey(
                join_keys=["shop", "driver"],
                entity_values=[Value(int64_val=shop), Value(string_val=driver)],
            ),
            entity_key_serialization_version=3,
        )
        for shop, driver in zip(frame["shop"], frame["driver"], strict=True)
    ]
    assert ours == feast
    with pytest.raises(ValueError, match="join key 'driver'"):
        encode_entity_keys(pd.DataFrame({"driver": ["a", None]}), {"driver": "STRING"})


def _source(path, hours: int, offset: float = 0.0) -> pd.DataFrame:
    """Three drivers x shops reporting hourly; every value a function of the hour."""
    rows = []
    for h in range(hours):
        for driver, shop in (("a", 1), ("b", 2), ("ü", 3)):
            rows.append(
                {
                    "driver": driver,
                    "shop": shop,
                    "event_timestamp": T0 + timedelta(hours=h, minutes=shop),
                    "speed": float(h) + offset if h % 5 else np.nan,
                    "trips": h * shop,
                    "zone": f"z{h % 3}" if h % 4 else None,
                    "busy": bool(h % 2),
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_parquet(path)
    return frame


def _store(folder, source_path, redis_url=None):
    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Bool, Float64, Int64, String
    from feast.value_type import ValueType

    store = open_store(
        FeastLocation(
            "scratch",
            str(folder / "registry.db"),
            str(folder / "online.db"),
            str(folder),
            str(PROJECT_ROOT / "feature_repo"),
            redis_url,
        )
    )
    driver = Entity(name="driver", join_keys=["driver"], value_type=ValueType.STRING)
    shop = Entity(name="shop", join_keys=["shop"], value_type=ValueType.INT64)
    view = FeatureView(
        name="driver_shop",
        entities=[driver, shop],
        ttl=timedelta(hours=30),
        schema=[
            Field(name="driver", dtype=String),
            Field(name="shop", dtype=Int64),
            Field(name="speed", dtype=Float64),
            Field(name="trips", dtype=Int64),
            Field(name="zone", dtype=String),
            Field(name="busy", dtype=Bool),
        ],
        source=FileSource(path=str(source_path), timestamp_field="event_timestamp"),
    )
    store.apply([driver, shop, view])
    return store


def _online(store) -> list[tuple]:
    path = store.config.online_store.path
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute('select * from "scratch_driver_shop"').fetchall())


def _served(store) -> dict:
    rows = {"driver": ["a", "b", "ü", "zz"], "shop": [1, 2, 3, 9]}
    features = [f"driver_shop:{f}" for f in ("speed", "trips", "zone", "busy")]
    return store.get_online_features(features=features, entity_rows=rows).to_dict(
        include_event_timestamps=True
    )


def test_the_platform_writes_what_feast_writes_and_feast_reads_it(tmp_path):
    _source(tmp_path / "source.parquet", hours=40)
    end = T0 + timedelta(hours=36)
    ours = _store(tmp_path / "ours", tmp_path / "source.parquet")
    feast = _store(tmp_path / "feast", tmp_path / "source.parquet")
    result = materialize_up_to(ours, end, ["driver_shop"])
    assert result.materialized_views == ["driver_shop"] and result.online_rows == 3 * 4
    assert result.writers == {"driver_shop": "sqlite"}
    view = feast.get_feature_view("driver_shop")
    with contextlib.redirect_stdout(io.StringIO()):
        feast.materialize(start_date=end - view.ttl, end_date=end, feature_views=["driver_shop"])

    assert len(_online(ours)) == 3 * 4 and _online(ours) == _online(feast)
    served = _served(ours)
    assert served == _served(feast)
    # Hour 35, the last known by `end`: its missing speed is served as missing.
    assert served["trips"] == [35, 70, 105, None] and served["speed"] == [None] * 4
    assert served["zone"][:3] == ["z2", "z2", "z2"]
    [interval] = ours.get_feature_view("driver_shop").materialization_intervals
    assert interval == tuple(feast.get_feature_view("driver_shop").materialization_intervals[0])

    # Continuing from the watermark adds only what is newer.
    later = materialize_up_to(ours, end + timedelta(hours=3), ["driver_shop"])
    assert later.materialized_views == ["driver_shop"]
    assert _served(ours)["trips"][:3] == [38, 76, 114]
    assert materialize_up_to(ours, end, ["driver_shop"]).skipped_views == ["driver_shop"]


def test_an_older_interval_never_replaces_newer_online_values(tmp_path):
    from pipelines.platform.lib.online_materialize import materialize_views

    _source(tmp_path / "source.parquet", hours=40, offset=0.5)
    store = _store(tmp_path / "ours", tmp_path / "source.parquet")
    end = T0 + timedelta(hours=39, minutes=30)
    materialize_up_to(store, end, ["driver_shop"])
    newest = _online(store)
    view = store.get_feature_view("driver_shop")
    # A late backfill of an older interval, written directly.
    [written] = materialize_views(store, [(view, EARLIEST)], T0 + timedelta(hours=10)).writes
    assert written.entities == 3 and written.path == "sqlite"
    assert _online(store) == newest
    assert _served(store)["speed"][:3] == [39.5, 39.5, 39.5]


@pytest.fixture
def redis_scratch_url():
    url = empty_redis_url()
    if url == "none":
        pytest.skip("no local Redis on 127.0.0.1:6379 (.ci/run starts one)")
    import redis

    yield url
    redis.Redis.from_url(url).flushdb()


def test_redis_gets_the_values_sqlite_gets(tmp_path, redis_scratch_url):
    _source(tmp_path / "source.parquet", hours=40)
    end = T0 + timedelta(hours=36)
    sqlite_store = _store(tmp_path / "sqlite", tmp_path / "source.parquet")
    redis_store = _store(tmp_path / "redis", tmp_path / "source.parquet", redis_scratch_url)
    for store in (sqlite_store, redis_store):
        materialize_up_to(store, end, ["driver_shop"])
    assert _served(redis_store) == _served(sqlite_store)
    assert _served(redis_store)["trips"][:3] == [35, 70, 105]


def _partitioned_source(folder, hours: int, per_file: int = 8, offset: float = 0.0):
    """The hourly rows of `_source`, cut into files of `per_file` hours (as the lake keeps one
    file per day) under `folder`; returns the source glob."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = _source(folder.parent / "whole.parquet", hours, offset)
    for first in range(0, hours, per_file):
        block = frame[
            (frame["event_timestamp"] >= T0 + timedelta(hours=first))
            & (frame["event_timestamp"] < T0 + timedelta(hours=first + per_file))
        ]
        block.to_parquet(folder / f"part-{first:03d}.parquet")
    (folder.parent / "whole.parquet").unlink()
    return f"{folder}/*.parquet"


def test_only_the_partitions_holding_the_interval_are_read_and_rows_equal_feasts(tmp_path):
    from pipelines.platform.lib.event_time_index import INDEX_NAME, files_with_events_in

    glob = _partitioned_source(tmp_path / "table", hours=40)
    end = T0 + timedelta(hours=36)
    start = end - timedelta(hours=30)
    chosen = files_with_events_in(glob, "event_timestamp", start, end)
    # Hours 6..36 lie in the files starting at hours 0, 8, 16, 24 and 32.
    assert [p.rsplit("/", 1)[1] for p in chosen] == [
        f"part-{h:03d}.parquet" for h in (0, 8, 16, 24, 32)
    ]
    assert [
        p.rsplit("/", 1)[1]
        for p in files_with_events_in(
            glob, "event_timestamp", T0 + timedelta(hours=17), T0 + timedelta(hours=18)
        )
    ] == ["part-016.parquet"]
    assert (
        files_with_events_in(
            glob, "event_timestamp", T0 + timedelta(days=9), T0 + timedelta(days=10)
        )
        == []
    )
    assert (tmp_path / "table" / INDEX_NAME).exists()

    ours = _store(tmp_path / "ours", glob)
    feast = _store(tmp_path / "feast", glob)
    materialize_up_to(ours, end, ["driver_shop"])
    with contextlib.redirect_stdout(io.StringIO()):
        feast.materialize(start_date=start, end_date=end, feature_views=["driver_shop"])
    assert len(_online(ours)) == 3 * 4 and _online(ours) == _online(feast)
    assert _served(ours) == _served(feast)


def test_a_rewritten_partition_is_read_again_never_from_a_stale_index(tmp_path):
    import os

    from pipelines.platform.lib.event_time_index import INDEX_NAME, files_with_events_in

    glob = _partitioned_source(tmp_path / "table", hours=40)
    late = (T0 + timedelta(hours=38), T0 + timedelta(hours=39))
    assert [p.rsplit("/", 1)[1] for p in files_with_events_in(glob, "event_timestamp", *late)] == [
        "part-032.parquet"
    ]
    # A partition rewritten (a backfill with corrected facts) now holds a row stamped late.
    block = pd.read_parquet(tmp_path / "table" / "part-008.parquet")
    block.loc[block.index[0], "event_timestamp"] = late[1]
    block.to_parquet(tmp_path / "table" / "part-008.parquet")
    assert [p.rsplit("/", 1)[1] for p in files_with_events_in(glob, "event_timestamp", *late)] == [
        "part-008.parquet",
        "part-032.parquet",
    ]
    # A torn index is rebuilt from the footers; an empty partition holds nothing to read; a file
    # whose footer cannot tell (no such column) is always read.
    (tmp_path / "table" / INDEX_NAME).write_text("{not json")
    block.iloc[0:0].to_parquet(tmp_path / "table" / "part-016.parquet")
    block.drop(columns=["event_timestamp"]).to_parquet(tmp_path / "table" / "part-024.parquet")
    assert [p.rsplit("/", 1)[1] for p in files_with_events_in(glob, "event_timestamp", *late)] == [
        "part-008.parquet",
        "part-024.parquet",
        "part-032.parquet",
    ]
    early = (T0 + timedelta(hours=16), T0 + timedelta(hours=23))
    assert "part-016.parquet" not in str(files_with_events_in(glob, "event_timestamp", *early))
    os.remove(tmp_path / "table" / "part-032.parquet")  # a deleted partition leaves the index
    assert [p.rsplit("/", 1)[1] for p in files_with_events_in(glob, "event_timestamp", *late)] == [
        "part-008.parquet",
        "part-024.parquet",
    ]
    # Where files cannot be told apart (the object store, another pattern) the whole source is read.
    assert files_with_events_in("s3://bucket/t/*.parquet", "event_timestamp", *late) is None
    assert files_with_events_in(str(tmp_path / "whole.parquet"), "event_timestamp", *late) is None


def _redis_contents(url: str) -> dict:
    import redis

    client = redis.Redis.from_url(url)
    return {key: client.hgetall(key) for key in client.keys("*")}


def test_redis_holds_the_very_bytes_feasts_own_materialize_writes(tmp_path, redis_scratch_url):
    """Every hash (entity key, `_ts:` field, each feature's field and value bytes) equals what
    Feast's `materialize` writes into another database of the same Redis; an older interval
    written later moves nothing; Feast serves what is stored."""
    import redis

    _source(tmp_path / "source.parquet", hours=40)
    end = T0 + timedelta(hours=36)
    ours = _store(tmp_path / "ours", tmp_path / "source.parquet", redis_scratch_url)
    materialize_up_to(ours, end, ["driver_shop"])
    theirs_url = (
        redis_scratch_url.rsplit("/", 1)[0]
        + "/"
        + str(int(redis_scratch_url.rsplit("/", 1)[1]) - 1)
    )
    theirs_client = redis.Redis.from_url(theirs_url)
    if theirs_client.dbsize():
        pytest.skip(f"{theirs_url} is not empty")
    try:
        feast = _store(tmp_path / "feast", tmp_path / "source.parquet", theirs_url)
        view = feast.get_feature_view("driver_shop")
        with contextlib.redirect_stdout(io.StringIO()):
            feast.materialize(
                start_date=end - view.ttl, end_date=end, feature_views=["driver_shop"]
            )
        contents = _redis_contents(redis_scratch_url)
        assert len(contents) == 3 and contents == _redis_contents(theirs_url)
    finally:
        theirs_client.flushdb()

    from pipelines.platform.lib.online_materialize import materialize_views

    [written] = materialize_views(
        ours, [(ours.get_feature_view("driver_shop"), EARLIEST)], T0 + timedelta(hours=10)
    ).writes
    assert written.path == "redis" and written.entities == 3 and written.rows == 0
    assert _redis_contents(redis_scratch_url) == contents
    assert _served(ours)["trips"][:3] == [35, 70, 105]
