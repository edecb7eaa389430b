"""Online materialization without Feast's row-at-a-time path, into the very rows Feast writes.

Feast's `materialize` reads every row of the interval through ibis, deduplicates in pandas, builds
a protobuf per value and upserts one SQL statement per value: 13.9x slower than inserting the same
rows (issue 27). Here one DuckDB query keeps the newest row per entity in the interval (Feast's
rule: event time within [start, end], newest event then created time wins), values are encoded to
Feast's exact bytes in bulk, and the write is one `executemany` (SQLite) or two pipelined round
trips of the hashes Feast's `online_write_batch` writes (Redis). Only the partition files whose
footers hold the interval are read (event_time_index.py). Feast reads what is written with its
own `get_online_features`; the interval is recorded in the registry as Feast records it. Stores
and types not handled here go through Feast's `materialize`.

Newest wins, as everywhere online (online_writes.py): a stored value with a later event time is
kept.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas and numpy are imported where used: loading the platform stays light
    import pandas as pd
    from feast import FeatureStore, FeatureView

_STAMP = "_flightline_event_ts"
_CREATED = "_flightline_created_ts"
# The protobuf tags of feast.types.Value's scalar fields (field number << 3 | wire type).
_DOUBLE_TAG, _INT64_TAG, _STRING_TAG, _BOOL_TAG = b")", b" ", b"\x12", b"8"


@dataclass(frozen=True)
class ViewWrite:
    view: str
    rows: int  # online rows written: entities x features (-1: Feast's materialize, uncounted)
    entities: int
    path: str  # "sqlite" | "redis" | "feast"


@dataclass(frozen=True)
class ViewWrites:
    writes: list[ViewWrite]
    read_seconds: float  # the offline store: the newest row per entity of each interval
    write_seconds: float  # encoding and the online store's writes (and Feast's materialize)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # protobuf writes a negative int64 as its 10-byte two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_column(
    values: pd.Series, value_type: str
) -> tuple[list[bytes], list[str | None]] | None:
    """In one pass: Feast's serialized `Value` of each value (b"" where missing) and its
    `value_text` column (the value as Python prints it, None where missing); None for a type
    this module leaves to Feast."""
    import numpy as np

    missing = values.isna().to_numpy().tolist()
    if value_type == "DOUBLE":
        packed = values.to_numpy(dtype="<f8", na_value=np.nan).tobytes()
        floats = values.to_numpy(dtype="float64", na_value=np.nan).tolist()
        encoded, texts = [], []
        for i, gone in enumerate(missing):
            if gone:
                encoded.append(b"")
                texts.append(None)
            else:
                encoded.append(_DOUBLE_TAG + packed[8 * i : 8 * i + 8])
                texts.append(str(floats[i]))
        return encoded, texts
    kind = {"INT64": int, "STRING": str, "BOOL": bool}.get(value_type)
    if kind is None:
        return None
    cache: dict = {}  # value -> (bytes, text): features repeat few distinct values
    encoded, texts = [], []
    for value, gone in zip(values.tolist(), missing, strict=True):
        if gone:
            encoded.append(b"")
            texts.append(None)
            continue
        value = kind(value)
        pair = cache.get(value)
        if pair is None:
            if value_type == "INT64":
                raw = _INT64_TAG + _varint(value)
            elif value_type == "STRING":
                text = value.encode("utf-8")
                raw = _STRING_TAG + _varint(len(text)) + text
            else:
                raw = _BOOL_TAG + (b"\x01" if value else b"\x00")
            pair = cache[value] = (raw, str(value))
        encoded.append(pair[0])
        texts.append(pair[1])
    return encoded, texts


def encode_entity_keys(frame: pd.DataFrame, join_keys: dict[str, str]) -> list[bytes]:
    """Feast's serialized entity key (version 3: `serialize_entity_key`) of each row, for
    STRING and INT64 join keys. `join_keys`: join key -> value type name."""
    from feast.value_type import ValueType

    names = sorted(join_keys)
    prefix = struct.pack("<I", len(names))
    for name in names:
        raw = name.encode("utf-8")
        prefix += struct.pack("<II", ValueType.STRING.value, len(raw)) + raw
    parts = []
    for name in names:
        kind = join_keys[name]
        if frame[name].isna().any():
            raise ValueError(f"a missing value of the join key {name!r} cannot be written online")
        if kind == "STRING":
            head = struct.pack("<I", ValueType.STRING.value)
            encoded = (str(v).encode("utf-8") for v in frame[name].tolist())
            parts.append([head + struct.pack("<I", len(raw)) + raw for raw in encoded])
        elif kind == "INT64":
            head = struct.pack("<II", ValueType.INT64.value, 8)
            parts.append([head + struct.pack("<q", int(v)) for v in frame[name].tolist()])
        else:
            raise TypeError(f"join key {name!r} of type {kind} is left to Feast")
    return [prefix + b"".join(row) for row in zip(*parts, strict=True)]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def newest_in_interval(con, view: FeatureView, start: datetime, end: datetime) -> pd.DataFrame:
    """The view's newest source row per entity with an event time in [start, end] (Feast's
    materialization interval, both ends included), with its event time as `_flightline_event_ts`
    (and created time as `_flightline_created_ts` where the source has one)."""
    import pandas as pd

    from pipelines.platform.lib.event_time_index import files_with_events_in
    from pipelines.platform.lib.feature_store import _literal
    from pipelines.platform.lib.feature_store import _quote as quote

    source = view.batch_source
    keys = [c.name for c in view.entity_columns]

    stamp = quote(source.timestamp_field)
    columns = [*map(quote, keys), *(quote(f.name) for f in view.features), f"{stamp} AS {_STAMP}"]
    order = f"{stamp} DESC"
    if source.created_timestamp_column:
        created = quote(source.created_timestamp_column)
        columns.append(f"{created} AS {_CREATED}")
        order += f", {created} DESC"
    path = _literal(source.path)
    files = files_with_events_in(source.path, source.timestamp_field, _utc(start), _utc(end))
    if files:  # only the partitions whose footers show rows in the interval
        path = "[" + ", ".join(map(_literal, files)) + "]"
    elif files is not None:  # no file holds a row in the interval: none is read
        extra = [_CREATED] if source.created_timestamp_column else []
        return pd.DataFrame(columns=[*keys, *(f.name for f in view.features), _STAMP, *extra])
    sql = (
        f"SELECT {', '.join(columns)} FROM read_parquet({path}, union_by_name = true) "
        f"WHERE {stamp} >= $start AND {stamp} <= $end "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(map(quote, keys))} ORDER BY {order}) = 1"
    )
    return con.execute(sql, {"start": _utc(start), "end": _utc(end)}).fetch_df()


def _sqlite_stamps(stamps: pd.Series) -> list[int | None]:
    """What Feast's SQLite store keeps for an event time: its sqlite3 adapter's
    `int(datetime.timestamp())` of the naive UTC datetime Feast passes (computed once per
    distinct time, by that very expression)."""
    import pandas as pd

    moments = pd.to_datetime(stamps, utc=True).dt.tz_localize(None)
    codes, distinct = pd.factorize(moments)  # a missing time: code -1
    seconds = [int(moment.to_pydatetime().timestamp()) for moment in distinct]
    return [seconds[code] if code >= 0 else None for code in codes.tolist()]


def _value_types(view: FeatureView) -> dict[str, str]:
    return {f.name: f.dtype.to_value_type().name for f in view.features}


def _sqlite_path(store: FeatureStore) -> Path:
    path = Path(store.config.online_store.path)
    return path if path.is_absolute() else Path(store.repo_path) / path


def sqlite_records(store: FeatureStore, view: FeatureView, rows: pd.DataFrame):
    """The view's table in Feast's SQLite online store and the rows for it, as Feast's own
    `online_write_batch` writes them."""
    from feast.infra.online_stores.helpers import compute_table_id

    types = _value_types(view)
    join_keys = {c.name: c.dtype.to_value_type().name for c in view.entity_columns}
    entity_keys = encode_entity_keys(rows, join_keys)
    stamps = _sqlite_stamps(rows[_STAMP])
    created = _sqlite_stamps(rows[_CREATED]) if _CREATED in rows else [None] * len(rows)
    records = []
    for feature, kind in types.items():
        values, texts = encode_column(rows[feature], kind)
        records.extend(
            zip(entity_keys, [feature] * len(rows), values, texts, stamps, created, strict=True)
        )
    table = compute_table_id(
        store.config.project, view, store.config.registry.enable_online_feature_view_versioning
    )
    return table, records


def write_sqlite(store: FeatureStore, tables: list[tuple[str, list]]) -> None:
    """Rows into tables of Feast's SQLite online store, in one transaction, except that a stored
    value with a later event time is kept (newest wins)."""
    import sqlite3

    conn = sqlite3.connect(_sqlite_path(store), timeout=60)
    try:
        with conn:
            for table, records in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                insert = (
                    f"INSERT INTO {quoted} (entity_key, feature_name, value, value_text, "
                    "event_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?)"
                )
                # An empty table (a first load) takes plain inserts: the batch holds one row
                # per entity and feature, so nothing can conflict, and an upsert costs 2x.
                if conn.execute(f"SELECT 1 FROM {quoted} LIMIT 1").fetchone() is not None:
                    insert += (
                        " ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
                        "value = excluded.value, value_text = excluded.value_text, "
                        "event_ts = excluded.event_ts, created_ts = excluded.created_ts "
                        f"WHERE excluded.event_ts > {quoted}.event_ts"
                    )
                # In key order: B-tree inserts in order cost a third of inserts at random.
                conn.executemany(insert, sorted(records, key=lambda r: (r[0], r[1])))
    finally:
        conn.close()


def _redis_field(view_name: str, feature: str) -> bytes:
    """The hash field Feast's Redis store keeps a feature under: the first four bytes of the
    little-endian murmur3-32 of "view:feature" (feast.infra.online_stores.helpers._mmh3)."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view_name}:{feature}", signed=False))


def _timestamp_protos(stamps: pd.Series) -> tuple[list[bytes], list[int]]:
    """Each event time as Feast's Redis store keeps it (a serialized protobuf Timestamp) and in
    nanoseconds (what it compares), computed once per distinct time."""
    import pandas as pd
    from google.protobuf.timestamp_pb2 import Timestamp

    codes, distinct = pd.factorize(pd.to_datetime(stamps, utc=True))
    protos, nanos = [], []
    for moment in distinct:
        proto = Timestamp()
        proto.FromDatetime(moment.to_pydatetime())
        protos.append(proto.SerializeToString())
        nanos.append(proto.seconds * 1_000_000_000 + proto.nanos)
    if (codes < 0).any():
        raise ValueError("a row without an event time cannot be written online")
    return [protos[c] for c in codes.tolist()], [nanos[c] for c in codes.tolist()]


def write_redis(store: FeatureStore, view: FeatureView, rows: pd.DataFrame) -> int:
    """The rows into Feast's Redis store exactly as its `online_write_batch` writes them (one
    hash per entity: the view's `_ts:` field and a field per feature), in two pipelined round
    trips: the stored event times, then the writes. Newest wins as in Feast: a row not newer than
    the stored value is skipped. Returns entity x feature values written."""
    from feast.infra.online_stores.helpers import compute_versioned_name
    from google.protobuf.timestamp_pb2 import Timestamp

    from pipelines.platform.compat import feast_redis_client

    config = store.config
    view_name = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
    ts_field = f"_ts:{view_name}"
    types = _value_types(view)
    join_keys = {c.name: c.dtype.to_value_type().name for c in view.entity_columns}
    project = config.project.encode("utf-8")
    keys = [key + project for key in encode_entity_keys(rows, join_keys)]
    stamps, nanos = _timestamp_protos(rows[_STAMP])
    fields = [_redis_field(view_name, feature) for feature in types]
    columns = [encode_column(rows[feature], kind)[0] for feature, kind in types.items()]
    client = feast_redis_client(store)
    newer = [True] * len(keys)
    if not config.online_store.skip_dedup:
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, ts_field)
            stored = pipe.execute()
        for i, previous in enumerate(stored):
            if previous:
                proto = Timestamp()
                proto.ParseFromString(previous)
                kept = proto.seconds * 1_000_000_000 + proto.nanos
                newer[i] = not kept or nanos[i] > kept
    ttl = config.online_store.key_ttl_seconds
    written = 0
    with client.pipeline(transaction=False) as pipe:
        for i, key in enumerate(keys):
            if not newer[i]:
                continue
            mapping = {ts_field: stamps[i]}
            for field, column in zip(fields, columns, strict=True):
                mapping[field] = column[i]
            pipe.hset(key, mapping=mapping)
            if ttl:
                pipe.expire(name=key, time=ttl)
            written += len(fields)
        pipe.execute()
    return written


def fast_path(store: FeatureStore, view: FeatureView) -> str | None:
    """Which writer this module uses for the view, or None where Feast's materialize must."""
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    source = view.batch_source
    if type(source).__name__ != "FileSource" or source.field_mapping:
        return None
    key_kinds = {c.dtype.to_value_type().name for c in view.entity_columns}
    if not view.entity_columns or not key_kinds <= {"INT64", "STRING"}:
        return None
    if not set(_value_types(view).values()) <= {"DOUBLE", "INT64", "STRING", "BOOL"}:
        return None
    online = store.config.online_store
    if isinstance(online, SqliteOnlineStoreConfig):
        if online.vector_enabled or getattr(online, "enable_openai_compatible_store", False):
            return None
        return "sqlite"
    if isinstance(online, RedisOnlineStoreConfig):
        return "redis"
    return None


def materialize_views(
    store: FeatureStore, due: list[tuple[FeatureView, datetime]], end: datetime
) -> ViewWrites:
    """Each view's interval [start, end] into the online store (SQLite: all views in one
    transaction), recorded in the registry as Feast records it; through Feast's own
    materialize where this module has no writer for a view."""
    from pipelines.platform.lib.feature_store import duckdb_reading

    done, sqlite_tables, recorded = [], [], []
    reading = writing = 0.0
    with duckdb_reading([view.batch_source.path for view, _ in due]) as con:
        for view, start in due:
            path = fast_path(store, view)
            started = time.perf_counter()
            if path is None:
                _feast_materialize(store, view, start, end)
                done.append(ViewWrite(view.name, -1, -1, "feast"))
                writing += time.perf_counter() - started
                continue
            rows = newest_in_interval(con, view, start, end)
            read = time.perf_counter()
            reading += read - started
            if path == "sqlite":
                table, records = sqlite_records(store, view, rows)
                sqlite_tables.append((table, records))
                written = len(records)
            else:
                written = write_redis(store, view, rows) if len(rows) else 0
            writing += time.perf_counter() - read
            recorded.append((view, start))
            done.append(ViewWrite(view.name, written, len(rows), path))
    started = time.perf_counter()
    if sqlite_tables:
        write_sqlite(store, sqlite_tables)
    writing += time.perf_counter() - started
    # Recorded as Feast records it, once written, in one registry commit (a crash before it
    # only means the interval is written again: newest wins, nothing moves back).
    for view, start in recorded:
        store.registry.apply_materialization(
            view, store.project, _utc(start), _utc(end), commit=False
        )
    store.registry.commit()
    return ViewWrites(done, reading, writing)


def _feast_materialize(store: FeatureStore, view: FeatureView, start, end) -> None:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress bars per view
        store.materialize(start_date=start, end_date=end, feature_views=[view.name])
