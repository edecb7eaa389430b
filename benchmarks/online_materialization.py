"""Online materialization: the platform's (`materialize_up_to`: one DuckDB query per view, bulk
encoding, one executemany) and Feast's own `materialize` (the peer), DuckDB offline store -> SQLite
online store, versus writing the very same rows straight into the same online store schema (the
floor: its tables and indexes, one transaction); and, in the same run, both into Redis (the
production profile's online store) against a pipelined write of the very same hashes. Checks that
the platform's SQLite tables equal Feast's row for row and its Redis hashes Feast's byte for byte. Prints rows/s of each and the ratios.

    python benchmarks/online_materialization.py                  # 2013-01-01..2013-12-30
    python benchmarks/online_materialization.py --end 2013-03-31 --repeat 3
    python benchmarks/online_materialization.py --redis-url none   # SQLite only

Redis: an empty database index (default redis://127.0.0.1:6379/15, or FLIGHTLINE_REDIS_URL),
flushed after each run.
"""

import contextlib
import io
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
    EARLIEST,
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
    """The floor: the same rows, into the same schema (tables and their indexes), in one
    transaction."""
    with sqlite3.connect(source) as conn:
        ddl = [r[0] for r in conn.execute("select sql from sqlite_master where sql is not null")]
    with sqlite3.connect(db) as conn:
        for statement in ddl:
            conn.execute(statement)
    started = time.perf_counter()
    with sqlite3.connect(db) as conn:
        for name, rows in tables.items():
            if rows:
                marks = ",".join("?" * len(rows[0]))
                conn.executemany(f'insert into "{name}" values ({marks})', rows)
        conn.commit()
    return time.perf_counter() - started


PHASES: list[tuple[float, float]] = []  # the platform's runs: (reading, writing) seconds


def materialize_run(task, location: FeastLocation, end, feast_own: bool) -> float:
    """Register the task's Feast objects in a fresh registry, then materialize its views: the
    platform's way, or Feast's own `materialize` per view over the same intervals."""
    store = open_store(location)
    apply_definitions(store, task.feast_objects(location.lake_root), task.name)
    if not feast_own:
        result = materialize_up_to(store, end, task.feature_view_names())
        PHASES.append((result.read_seconds, result.write_seconds))
        return result.seconds
    started = time.perf_counter()
    for view in store.list_feature_views():
        start = end - view.ttl if view.ttl else EARLIEST
        with contextlib.redirect_stdout(io.StringIO()):  # Feast's progress bars
            store.materialize(start_date=start, end_date=end, feature_views=[view.name])
    return time.perf_counter() - started


def redis_contents(client) -> dict[bytes, dict[bytes, bytes]]:
    return {key: client.hgetall(key) for key in client.scan_iter(count=10_000)}


def write_redis_direct(client, contents: dict[bytes, dict[bytes, bytes]]) -> float:
    """The Redis floor: the very hashes the platform wrote, in one pipeline of HSETs."""
    started = time.perf_counter()
    with client.pipeline(transaction=False) as pipe:
        for key, mapping in contents.items():
            pipe.hset(key, mapping=mapping)
        pipe.execute()
    return time.perf_counter() - started


def redis_run(task, root: Path, lake_root: str, end, name: str, url: str, feast_own: bool):
    """One way into Redis; returns seconds and what Redis then holds (every hash)."""
    import redis

    client = redis.Redis.from_url(url)
    if client.dbsize():
        sys.exit(f"{url} is not empty: pick an empty database index (--redis-url)")
    try:
        location = FeastLocation(
            "flightline",
            str(root / f"registry-redis-{name}.db"),
            "",
            lake_root,
            str(PROJECT_ROOT / "feature_repo"),
            url,
        )
        seconds = materialize_run(task, location, end, feast_own)
        return seconds, redis_contents(client)
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
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(args.start, args.end)]
    task = load_task(TASK)
    end = task.partition_end(max(days))
    times: dict[str, list[float]] = {
        k: [] for k in ("ours", "feast", "direct", "redis", "feast_redis", "direct_redis")
    }
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
            online = {}
            for name in ("ours", "feast"):
                online[name] = root / f"online-{name}-{i}.db"
                location = FeastLocation(
                    "flightline",
                    str(root / f"registry-{name}-{i}.db"),
                    str(online[name]),
                    paths.lake,
                    str(PROJECT_ROOT / "feature_repo"),
                )
                times[name].append(materialize_run(task, location, end, name == "feast"))
            tables = online_tables(online["ours"])
            theirs = online_tables(online["feast"])
            if {k: sorted(v) for k, v in tables.items()} != {
                k: sorted(v) for k, v in theirs.items()
            }:
                sys.exit("the platform's online tables differ from Feast's own materialize")
            rows = sum(len(r) for r in tables.values())
            times["direct"].append(write_direct(root / f"direct-{i}.db", online["ours"], tables))
            if redis_url:
                import redis

                held = {}
                for name in ("redis", "feast_redis"):
                    seconds, held[name] = redis_run(
                        task, root, paths.lake, end, f"{name}-{i}", redis_url, name == "feast_redis"
                    )
                    times[name].append(seconds)
                if held["redis"] != held["feast_redis"]:
                    sys.exit("the platform's Redis hashes differ from Feast's own materialize")
                client = redis.Redis.from_url(redis_url)
                try:
                    times["direct_redis"].append(write_redis_direct(client, held["redis"]))
                finally:
                    client.flushdb()
            print(
                f"run {i + 1}: platform {times['ours'][-1]:.2f}s, feast {times['feast'][-1]:.2f}s, "
                f"direct {times['direct'][-1]:.3f}s"
                + (
                    f", redis {times['redis'][-1]:.2f}s (feast {times['feast_redis'][-1]:.2f}s,"
                    f" direct {times['direct_redis'][-1]:.3f}s)"
                    if redis_url
                    else ""
                )
                + f" for {rows:,} rows (tables identical to Feast's)",
                flush=True,
            )
    o, f, d = median(times["ours"]), median(times["feast"]), median(times["direct"])
    print(
        f"\n{len(days)} days: {scanned:,} feature rows in the offline store -> {rows:,} online rows (entity x feature)"
    )
    print(f"  platform materialize:     {o:8.3f} s  {rows / o:12,.0f} rows/s")
    print(f"  Feast's own materialize:  {f:8.3f} s  {rows / f:12,.0f} rows/s")
    print(f"  direct SQLite inserts:    {d:8.3f} s  {rows / d:12,.0f} rows/s")
    print(f"  ratio platform / direct:  {o / d:8.1f}x  (target <= 2x)")
    sqlite_phases = PHASES[:: 2 if redis_url else 1]
    read = median([r for r, _ in sqlite_phases])
    write = median([w for _, w in sqlite_phases])
    print(f"    of which offline read:  {read:8.3f} s  (DuckDB, newest row per entity)")
    print(f"    of which online write:  {write:8.3f} s  (encoding + one transaction)")
    print(f"  ratio write stage / direct: {write / d:6.1f}x")
    print(f"  ratio feast / direct:     {f / d:8.1f}x")
    print(f"  speed-up over Feast:      {f / o:8.1f}x")
    if redis_url:
        r, fr = median(times["redis"]), median(times["feast_redis"])
        dr = median(times["direct_redis"])
        print(f"  platform -> Redis:        {r:8.3f} s  {rows / r:12,.0f} rows/s")
        print(f"  Feast's own -> Redis:     {fr:8.3f} s  {rows / fr:12,.0f} rows/s")
        print(f"  direct Redis HSETs:       {dr:8.3f} s  {rows / dr:12,.0f} rows/s")
        print(f"  ratio platform / direct (Redis): {r / dr:5.1f}x  (target <= 2x)")
        print(f"  ratio feast / direct (Redis):    {fr / dr:5.1f}x")


if __name__ == "__main__":
    main()
