"""Feast, used in-process through its Python SDK (each CLI call costs 12-27 s of imports)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.platform.lib.object_store import (
    ObjectStore,
    configure_duckdb,
    store_for,
    unavailable_as_error,
)
from pipelines.platform.lib.services import mask, redis_client, redis_connection_string
from pipelines.platform.lib.settings import PROJECT_ROOT

# Feast imports torch and costs ~6-9 s here: it is imported when a store is opened, never when
# the code location loads (which imports this module for its types and helpers); pandas and
# numpy likewise, where they are used (issue 18).
if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

logging.getLogger("feast").setLevel(logging.WARNING)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
ROW_ID = "_flightline_row"


@dataclass(frozen=True)
class FeastLocation:
    project: str
    registry_path: str  # a file, or a SQLAlchemy URL (postgresql+psycopg2://...): SQL registry
    online_store_path: str  # the SQLite online store, when no Redis is named
    lake_root: str
    repo_path: str
    redis_url: str | None = None  # redis://host:port/db: the online store is Redis

    @property
    def sql_registry(self) -> bool:
        return "://" in self.registry_path

    @property
    def online_store(self) -> str:
        """The online store for messages (no password)."""
        return mask(self.redis_url) if self.redis_url else f"sqlite:{self.online_store_path}"


def location_from_paths(paths, project: str = "flightline") -> FeastLocation:
    """The store the platform's DataPaths describe (embedded or production profile)."""
    return FeastLocation(
        project,
        str(paths.feast_registry),
        str(paths.feast_online_store),
        paths.lake,
        str(PROJECT_ROOT / "feature_repo"),
        paths.feast_redis_url,
    )


def open_store(location: FeastLocation) -> FeatureStore:
    from feast import FeatureStore, RepoConfig
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.infra.registry.sql import SqlRegistryConfig
    from feast.repo_config import RegistryConfig

    if location.sql_registry:
        registry = SqlRegistryConfig(
            path=location.registry_path,
            cache_ttl_seconds=60,
            # A dead connection after a PostgreSQL restart is replaced, not reused.
            sqlalchemy_config_kwargs={"echo": False, "pool_pre_ping": True},
        )
    else:
        Path(location.registry_path).parent.mkdir(parents=True, exist_ok=True)
        registry = RegistryConfig(path=location.registry_path, cache_ttl_seconds=60)
    if location.redis_url:
        online = RedisOnlineStoreConfig(
            connection_string=redis_connection_string(location.redis_url)
        )
    else:
        Path(location.online_store_path).parent.mkdir(parents=True, exist_ok=True)
        online = SqliteOnlineStoreConfig(path=location.online_store_path)
    config = RepoConfig(
        project=location.project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store=DuckDBOfflineStoreConfig(),
        entity_key_serialization_version=3,
        repo_path=location.repo_path,
    )
    lake_store = store_for(location.lake_root)
    if lake_store is not None:
        _read_lake_from(lake_store)
    store = FeatureStore(config=config)
    if location.redis_url:
        # Feast builds its client from the connection string with redis-py's default retries
        # (up to 10 s of backoff when Redis is down); ours fails within a second instead.
        from pipelines.platform.compat import online_store_impl

        online_store_impl(store)._client = redis_client(location.redis_url)
    from pipelines.platform.lib.online_writes import guard_online_writes

    return guard_online_writes(store)  # an older event never overwrites a newer one


def _read_lake_from(store: ObjectStore) -> None:
    """Feast's DuckDB offline store reads sources through ibis's default DuckDB connection (one
    per process): give it the packaged httpfs extension and the object store's endpoint and
    keys, so that `s3://<bucket>/lake/...` globs resolve there."""
    import ibis

    with unavailable_as_error(store):
        store.check()
    configure_duckdb(ibis.get_backend().raw_sql, store)


OWNER_TAG = (
    "flightline_task"  # which task declared a Feast object: one task never replaces another's
)


class FeastOwnershipError(ValueError):
    pass


def apply_definitions(store: FeatureStore, objects: dict, task: str) -> dict[str, list[str]]:
    """Register (or update) one task's declared objects, without touching other tasks' objects
    (Feast's partial apply deletes nothing); returns what the task has registered, by kind."""
    existing = {
        o.name: o.tags.get(OWNER_TAG)
        for o in [
            *store.list_entities(),
            *store.list_feature_views(),
            *store.list_feature_services(),
        ]
    }
    taken = {
        n: owner for n, owner in existing.items() if n in objects and owner not in (None, task)
    }
    if taken:
        raise FeastOwnershipError(
            f"task {task}: Feast objects {sorted(taken)} already belong to task(s) "
            f"{sorted(set(taken.values()))}: give them names of their own"
        )
    for obj in objects.values():
        obj.tags[OWNER_TAG] = task
    store.apply(list(objects.values()))

    def owned(items) -> list[str]:
        return sorted(o.name for o in items if o.tags.get(OWNER_TAG) == task)

    return {
        "entities": owned(store.list_entities()),
        "feature_views": owned(store.list_feature_views()),
        "feature_services": owned(store.list_feature_services()),
    }


def service_feature_names(store: FeatureStore, service: str) -> list[str]:
    fs = store.get_feature_service(service)
    return [
        f"{proj.name}:{feature.name}"
        for proj in fs.feature_view_projections
        for feature in proj.features
    ]


# A year of flight delay's prediction times went through Feast's point-in-time join (an inner
# join of every feature row within the TTL, then a dedup) in 31-day chunks: it held more than
# 17 GB in one go and took most of the year's training_set step. The join below is an ASOF join
# per view in DuckDB, which holds one row per entity row: a year runs in one chunk.
CHUNK_DAYS = 366


def historical_features(
    store: FeatureStore,
    entity_rows: pd.DataFrame,
    service: str,
    chunk_days: int = CHUNK_DAYS,
    timestamp: str = "event_timestamp",
) -> pd.DataFrame:
    """Point-in-time join through a FeatureService, with Feast's offline-store semantics: each
    row gets, per view, the values of the latest feature row of its key at or before its
    timestamp, unless that row is older than the view's TTL (then nothing). Rows come back in the
    entity frame's order, feature columns in the service's order, typed as Feast's `to_df()`
    types them (tests/lib/test_feature_store_join.py compares the two). Rows are joined
    `chunk_days` of timestamps at a time (each row's values depend on its own timestamp only)."""
    import numpy as np
    import pandas as pd

    entities = entity_rows.reset_index(drop=True).assign(**{ROW_ID: np.arange(len(entity_rows))})
    entities[timestamp] = pd.to_datetime(entities[timestamp], utc=True).astype(
        "datetime64[us, UTC]"
    )
    views = _service_views(store, service)
    chunks = [entities]
    if len(entities):
        stamps = entities[timestamp]
        window = ((stamps - stamps.min()) // pd.Timedelta(days=chunk_days)).to_numpy()
        chunks = [chunk for _, chunk in entities.groupby(window, sort=True)]
    with duckdb_reading([v.source for v in views]) as con:
        frames = [_asof_join(con, chunk, views, timestamp) for chunk in chunks]
    joined = pd.concat(frames, ignore_index=True)
    for column in joined.columns[joined.dtypes == "object"]:
        # A chunk where a column is all missing can come back as objects: the others' type.
        kinds = {str(f[column].dtype) for f in frames if f[column].notna().any()}
        if len(kinds) == 1 and kinds != {"object"}:
            kind = kinds.pop()
            joined[column] = joined[column].astype(
                "float64" if kind.startswith("int") and joined[column].isna().any() else kind
            )
    features = joined.drop(columns=[c for c in entity_rows.columns if c in joined.columns])
    aligned = entities[[ROW_ID]].merge(features, on=ROW_ID, how="left").drop(columns=ROW_ID)
    return pd.concat([entity_rows.reset_index(drop=True), aligned], axis=1)


@dataclass(frozen=True)
class _ViewRead:
    """What the join reads of one view of a service."""

    source: str  # a path pattern of Parquet files (the view's FileSource)
    timestamp: str
    keys: dict[str, str]  # the source's join key -> the entity frame's column
    features: list[str]
    ttl_us: int  # 0: never expires


def _service_views(store: FeatureStore, service: str) -> list[_ViewRead]:
    """The service's views as the registry holds them; read again when the registry was caught
    mid-rewrite by another process (an online materialization records its interval there:
    seen as "Feature service ... does not exist" in a parallel step of a live run)."""
    import time

    for attempt in range(6):
        try:
            return _service_views_once(store, service)
        except Exception as exc:
            missing = type(exc).__name__ in (
                "FeatureServiceNotFoundException",
                "FeatureViewNotFoundException",
            )
            if not missing or attempt == 5:
                raise
            time.sleep(0.5 * (attempt + 1))
            store.refresh_registry()
    raise AssertionError("unreachable")


def write_online(store: FeatureStore, view: str, rows) -> None:
    """`write_to_online_store`, reading the registry again when it was caught mid-rewrite by a
    run's online materialization (Feast then knows no view of that name: a KeyError)."""
    import time

    for attempt in range(6):
        try:
            return store.write_to_online_store(view, rows)
        except KeyError:
            if attempt == 5:
                raise
            time.sleep(0.5 * (attempt + 1))
            store.refresh_registry()


def _service_views_once(store: FeatureStore, service: str) -> list[_ViewRead]:
    views = []
    for projection in store.get_feature_service(service).feature_view_projections:
        view = store.get_feature_view(projection.name)
        source = view.batch_source
        if type(source).__name__ != "FileSource" or source.field_mapping:
            raise ValueError(
                f"{view.name}: the point-in-time join reads Parquet FileSources without a field "
                f"mapping; its source is a {type(source).__name__}"
            )
        keys = {e.name: e.name for e in view.entity_columns}
        keys = {k: (projection.join_key_map or {}).get(k, k) for k in keys}
        views.append(
            _ViewRead(
                source.path,
                source.timestamp_field,
                keys,
                [f.name for f in projection.features],
                view.ttl // timedelta(microseconds=1) if view.ttl else 0,
            )
        )
    return views


@contextlib.contextmanager
def duckdb_reading(sources: list[str]):
    """A DuckDB connection that reads these Parquet sources (the object store's, where they lie
    there)."""
    import duckdb

    con = duckdb.connect()
    # DuckDB 1.5 turns an ASOF join into a nested-loop join plus a group-by when it estimates the
    # entity side at <= 64 rows, and it cannot estimate a registered Arrow frame: the year's
    # point-in-time join took 184 s and 20.5 GB that way, 0 s and a few hundred MB as ASOF.
    con.execute("SET asof_loop_join_threshold = 0")
    try:
        remote = next((s for s in sources if s.startswith("s3://")), None)
        if remote is not None:
            from pipelines.platform.lib.object_store import configure_duckdb

            store = store_for(remote.split("*", 1)[0])
            with unavailable_as_error(store):
                configure_duckdb(con.execute, store)
        yield con
    finally:
        con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A SQL string literal (a path DuckDB reads)."""
    return "'" + text.replace("'", "''") + "'"


def _asof_join(
    con, entities: pd.DataFrame, views: list[_ViewRead], timestamp: str, explain: bool = False
):
    """One chunk: an ASOF LEFT JOIN per view (the latest row at or before the timestamp, by
    key), values withheld where that row is older than the TTL. `explain`: DuckDB's physical
    plan instead (which join operators it chose)."""
    import pyarrow as pa

    key_columns = sorted({c for v in views for c in v.keys.values()})
    frame = pa.Table.from_pandas(entities[[ROW_ID, timestamp, *key_columns]], preserve_index=False)
    con.register("_flightline_entities", frame)
    ts = _quote(timestamp)
    selects, joins = [f"e.{_quote(ROW_ID)}"], []
    for i, view in enumerate(views):
        alias = f"v{i}"
        stamp = f"{alias}.{_quote('_flightline_ts')}"
        columns = (
            [f"{_quote(k)}" for k in view.keys]
            + [f"{_quote(view.timestamp)} AS {_quote('_flightline_ts')}"]
            + [_quote(f) for f in view.features]
        )
        source = _literal(view.source)
        on = [f"e.{_quote(col)} = {alias}.{_quote(key)}" for key, col in view.keys.items()]
        on.append(f"e.{ts} >= {stamp}")
        joins.append(
            f"ASOF LEFT JOIN (SELECT {', '.join(columns)} FROM read_parquet({source})) {alias} "
            f"ON {' AND '.join(on)}"
        )
        fresh = f"epoch_us({stamp}) + {view.ttl_us} >= epoch_us(e.{ts})" if view.ttl_us else None
        for feature in view.features:
            value = f"{alias}.{_quote(feature)}"
            selects.append(
                f"CASE WHEN {fresh} THEN {value} END AS {_quote(feature)}"
                if fresh
                else f"{value} AS {_quote(feature)}"
            )
    sql = (
        f"SELECT {', '.join(selects)} FROM _flightline_entities e {' '.join(joins)} "
        f"ORDER BY e.{_quote(ROW_ID)}"
    )
    try:
        if explain:
            return "\n".join(row[1] for row in con.execute("EXPLAIN " + sql).fetchall())
        return con.execute(sql).to_arrow_table().to_pandas()
    finally:
        con.unregister("_flightline_entities")


@dataclass
class MaterializationResult:
    end: datetime
    skipped_views: list[str]
    materialized_views: list[str]
    seconds: float
    online_rows: int = 0  # entity x feature rows written (Feast's own materialize: uncounted)
    read_seconds: float = 0.0  # the offline store
    write_seconds: float = 0.0  # encoding and the online store
    writers: dict[str, str] | None = None  # view -> "sqlite" | "redis" | "feast"


def materialize_up_to(
    store: FeatureStore, end: datetime, views: list[str] | None = None
) -> MaterializationResult:
    """Bring the online store up to `end`, incrementally per view.

    Each view continues from its own watermark (or from `end - ttl` the first time; from the
    beginning for views without TTL). Feast's materialize_incremental counts a first run back from
    the wall clock, which is wrong on a replayed clock, so the interval is computed here. A view
    already at or past `end` (a backfill of older days) is left alone: online values never move
    back in time. `views` limits it to one task's views.
    """
    from pipelines.platform.lib.online_materialize import materialize_views

    started = time.perf_counter()
    behind, ahead, due = [], [], []
    for view in store.list_feature_views():
        if views is not None and view.name not in views:
            continue  # another task's view: its own runs materialize it
        watermark = max((interval[1] for interval in view.materialization_intervals), default=None)
        if watermark is not None and watermark >= end:
            ahead.append(view.name)
            continue
        if watermark is not None:
            start = watermark
        elif view.ttl:
            start = end - view.ttl
        else:
            start = EARLIEST
        due.append((view, start))
    if not due:
        return MaterializationResult(end, ahead, behind, time.perf_counter() - started)
    done = materialize_views(store, due, end)
    return MaterializationResult(
        end,
        ahead,
        [w.view for w in done.writes],
        time.perf_counter() - started,
        online_rows=sum(max(w.rows, 0) for w in done.writes),
        read_seconds=done.read_seconds,
        write_seconds=done.write_seconds,
        writers={w.view: w.path for w in done.writes},
    )
