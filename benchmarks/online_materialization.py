"""Online materialization: Feast's materialize (DuckDB offline store -> SQLite online store) versus
writing the very same rows straight into the online store's SQLite database; and, in the same run,
Feast's materialize of the same tables into Redis (the production profile's online store).
Prints rows/s of each and the ratios.

    python benchmarks/online_materialization.py                  # 2013-01-01..2013-12-30
    python benchmarks/online_materialization.py --end 2013-03-31 --repeat 3
    python benchmarks/online_materialization.py --redis-url none   # SQLite only

Redis: an empty database index (default redis://127.0.0.1:6379/15, or FLIGHTLINE_REDIS_URL),
flushed after each run.
"""

import os
import sqlite3
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fresh_data_root, median, window_parser
from benchmarks.pipeline_overhead import TASK, bare_feature_tables
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.feature_store import (
    FeastLocation,
    apply_definitions,
    materialize_up_to,
    open_store,
)
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.settings import PROJECT_ROOT


def online_tables(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return {name: conn.execute(f'select * from "{name}"').fetchall() for name in names}


def write_direct(db: Path, source: Path, tables: dict[str, list[tuple]]) -> float:
    """The floor: the same rows, into the same schema, in one transaction per table."""
    with sqlite3.connect(source) as conn:
        ddl = {
            r[0]: r[1]
            for r in conn.execute("select name, sql from sqlite_master where type='table'")
        }
    started = time.perf_counter()
    with sqlite3.connect(db) as conn:
        for name, rows in tables.items():
            conn.execute(ddl[name])
            if rows:
                marks = ",".join("?" * len(rows[0]))
                conn.executemany(f'insert into "{name}" values ({marks})', rows)
        conn.commit()
    return time.perf_counter() - started


def feast_run(task, location: FeastLocation, end) -> float:
    """Register the task's Feast objects in a fresh registry, then materialize its views."""
    store = open_store(location)
    apply_definitions(store, task.feast_objects(location.lake_root), task.name)
    return materialize_up_to(store, end, task.feature_view_names()).seconds


def redis_run(task, root: Path, lake_root: str, end, i: int, url: str) -> float:
    """Feast materialize of the same tables into Redis; returns seconds."""
    import redis

    client = redis.Redis.from_url(url)
    if client.dbsize():
        sys.exit(f"{url} is not empty: pick an empty database index (--redis-url)")
    try:
        location = FeastLocation(
            "flightline",
            str(root / f"registry-redis-{i}.db"),
            "",
            lake_root,
            str(PROJECT_ROOT / "feature_repo"),
            url,
        )
        return feast_run(task, location, end)
    finally:
        client.flushdb()


def main() -> None:
    parser = window_parser(__doc__, repeat=3)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("FLIGHTLINE_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="an empty Redis database for the comparison ('none': SQLite only)",
    )
    args = parser.parse_args()
    redis_url = None if args.redis_url == "none" else args.redis_url
    redis_times = []
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(args.start, args.end)]
    task = load_task(TASK)
    end = task.partition_end(max(days))
    feast_times, direct_times = [], []
    with fresh_data_root("online") as (paths, root):
        lake = Lake(paths.lake)
        task.domain.replay(
            paths.landing_for(TASK), date.fromisoformat(args.start), date.fromisoformat(args.end)
        )
        built = bare_feature_tables(paths, days, task)
        scanned = sum(
            len(lake.read_partitions(task.table(t), days) if daily else lake.read(task.table(t)))
            for t, daily in built.items()
        )
        for i in range(args.repeat):
            online = root / f"online-{i}.db"
            location = FeastLocation(
                "flightline",
                str(root / f"registry-{i}.db"),
                str(online),
                paths.lake,
                str(PROJECT_ROOT / "feature_repo"),
            )
            feast_times.append(feast_run(task, location, end))
            tables = online_tables(online)
            rows = sum(len(r) for r in tables.values())
            direct_times.append(write_direct(root / f"direct-{i}.db", online, tables))
            if redis_url:
                redis_times.append(redis_run(task, root, paths.lake, end, i, redis_url))
            into_redis = f", feast->redis {redis_times[-1]:.2f}s" if redis_url else ""
            print(
                f"run {i + 1}: feast {feast_times[-1]:.2f}s, direct {direct_times[-1]:.3f}s{into_redis} for {rows:,} rows",
                flush=True,
            )
    f, d = median(feast_times), median(direct_times)
    print(
        f"\n{len(days)} days: {scanned:,} feature rows in the offline store -> {rows:,} online rows (entity x feature)"
    )
    print(f"  Feast materialize:        {f:8.2f} s  {rows / f:12,.0f} rows/s")
    print(f"  direct SQLite inserts:    {d:8.3f} s  {rows / d:12,.0f} rows/s")
    print(f"  ratio feast / direct:     {f / d:8.1f}x")
    if redis_times:
        r = median(redis_times)
        print(f"  Feast materialize, Redis: {r:8.2f} s  {rows / r:12,.0f} rows/s")
        print(f"  ratio redis / sqlite:     {r / f:8.2f}x (time; >1: Redis slower)")


if __name__ == "__main__":
    main()
