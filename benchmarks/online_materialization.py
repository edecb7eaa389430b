"""Online materialization: Feast's materialize (DuckDB offline store -> SQLite online store) versus
writing the very same rows straight into the online store's SQLite database; and, in the same run,
Feast's materialize of the same tables into Redis (the production profile's online store).
Prints rows/s of each and the ratios.

    python benchmarks/online_materialization.py                  # feature tables of all of 2013
    python benchmarks/online_materialization.py --end 2013-03-31 --repeat 3
    python benchmarks/online_materialization.py --redis-url none   # SQLite only

Redis: an empty database index (default redis://127.0.0.1:6379/15, or FLIGHTLINE_REDIS_URL),
flushed after each run.
"""

import os
import sqlite3
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fresh_data_root, median, window_parser
from pipelines.platform.lib.feature_store import (
    FeastLocation,
    apply_definitions,
    materialize_up_to,
    open_store,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.settings import PROJECT_ROOT
from pipelines.tasks.flight_delay import features as F
from pipelines.tasks.flight_delay.flights import day_start_utc, flight_timeline
from pipelines.tasks.flight_delay.source import day_key, read_table


def build_feature_tables(lake: Lake, days: list[str]) -> None:
    flights = read_table("flights")
    flights = flights[day_key(flights).isin(days)].assign(
        **{PARTITION_COLUMN: lambda f: day_key(f)}
    )
    weather = read_table("weather")
    weather = weather[day_key(weather).isin(days)].assign(
        **{PARTITION_COLUMN: lambda f: day_key(f)}
    )
    timeline = flight_timeline(flights)
    lake.write("flight_delay/plane_features", F.plane_features(read_table("planes")))
    lake.write_partitions("flight_delay/weather_features", F.weather_features(weather), days)
    for name, build in (
        ("scheduled_traffic", F.scheduled_traffic),
        ("origin_recent_departures", F.origin_recent_departures),
        ("aircraft_last_arrival", F.aircraft_last_arrival),
    ):
        lake.write_partitions(name, build(timeline), days)
    for entity in ("carrier", "route", "origin"):
        lake.write_partitions(
            f"{entity}_delay_stats", F.trailing_delay_stats(timeline, days, entity, entity), days
        )


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


def redis_run(root: Path, lake_root: str, end, i: int, url: str) -> float:
    """Feast materialize of the same tables into Redis; returns seconds."""
    import redis

    client = redis.Redis.from_url(url)
    if client.dbsize():
        sys.exit(f"{url} is not empty: pick an empty database index (--redis-url)")
    try:
        store = open_store(
            FeastLocation(
                "flightline",
                str(root / f"registry-redis-{i}.db"),
                "",
                lake_root,
                str(PROJECT_ROOT / "feature_repo"),
                url,
            )
        )
        apply_definitions(store, lake_root)
        return materialize_up_to(store, end).seconds
    finally:
        client.flushdb()


def main() -> None:
    parser = window_parser(__doc__, end="2013-12-31", repeat=3)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("FLIGHTLINE_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="an empty Redis database for the comparison ('none': SQLite only)",
    )
    args = parser.parse_args()
    redis_url = None if args.redis_url == "none" else args.redis_url
    redis_times = []
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(args.start, args.end)]
    end = (day_start_utc(pd.Series([max(days)])).iloc[0] + pd.Timedelta(days=1)).to_pydatetime()
    feast_times, direct_times = [], []
    with fresh_data_root("online") as (paths, root):
        lake = Lake(paths.lake)
        build_feature_tables(lake, days)
        scanned = sum(
            len(lake.read_partitions(t, days))
            for t in (
                "weather_features",
                "scheduled_traffic",
                "origin_recent_departures",
                "aircraft_last_arrival",
                "carrier_delay_stats",
                "route_delay_stats",
                "origin_delay_stats",
            )
        ) + len(lake.read("flight_delay/plane_features"))
        for i in range(args.repeat):
            online = root / f"online-{i}.db"
            store = open_store(
                FeastLocation(
                    "flightline",
                    str(root / f"registry-{i}.db"),
                    str(online),
                    paths.lake,
                    str(PROJECT_ROOT / "feature_repo"),
                )
            )
            apply_definitions(store, paths.lake)
            result = materialize_up_to(store, end)
            feast_times.append(result.seconds)
            tables = online_tables(online)
            rows = sum(len(r) for r in tables.values())
            direct_times.append(write_direct(root / f"direct-{i}.db", online, tables))
            if redis_url:
                redis_times.append(redis_run(root, paths.lake, end, i, redis_url))
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
