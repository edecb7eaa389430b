"""ingestion -> training_set over a range of days: through Dagster, and the same lib functions in
a bare script, in one process and one run. Prints both and the ratio (target: overhead <= 15%).

    python benchmarks/pipeline_overhead.py                      # 2013-01-01..2013-12-30
    python benchmarks/pipeline_overhead.py --end 2013-01-31 --repeat 3
    python benchmarks/pipeline_overhead.py --storage postgres   # the production profile's storage

`--storage postgres`: Dagster's runs and event log in a scratch database of the PostgreSQL server
that --postgres-url names (default: FLIGHTLINE_POSTGRES_URL, else the local server), created for
the run and dropped after it; the lake stays local, as on the embedded side.

The default range stops on 2013-12-30: the source has no weather for 2013-12-31, so that day's
raw_weather fails (as it should) and the run would stop there.
"""

import os
import sys
import time
from contextlib import contextmanager, nullcontext
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fresh_data_root, median, timed, window_parser
from pipelines.definitions import defs  # imported up front: neither side pays imports
from pipelines.platform.cli import materialize_window
from pipelines.platform.components.definition import Task, accepts
from pipelines.platform.components.task import load_task
from pipelines.platform.components.training import build_training_rows
from pipelines.platform.lib import validation
from pipelines.platform.lib.feature_store import (
    apply_definitions,
    location_from_paths,
    materialize_up_to,
    open_store,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.landing import archive_landed_file, read_landed_day
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.sqlite_event_log import embedded_overrides

TASK = "flight_delay"


def _with_window(task: Task, lake: Lake, source, days: list[str]) -> list[str]:
    """The days an input is read for, with its window before them (`windows:` in defs.yaml) as
    far as the lake holds it: what the IO manager loads for the asset."""
    if not source.window:
        return days
    stored = set(lake.partitions(task.table(source.table)))  # one listing, not one per day
    before = task.previous_partitions(min(days), source.window)
    return [d for d in before if d in stored and d not in days] + days


def bare_feature_tables(paths: DataPaths, days: list[str], task: Task) -> dict[str, bool]:
    """The ingestion and features groups, called directly from the task definition: read,
    archive, validate, build each feature table, store. Returns each feature table written and
    whether it is partitioned by day."""
    lake = Lake(paths.lake)
    landing = paths.landing_for(task.name)
    partitioned = set()
    for table, contract in task.contracts.items():
        frames = []
        for day in days:
            landed = read_landed_day(landing, table, day)
            archive_landed_file(landed, paths.root / "archive" / task.name)
            frames.append(landed.frame.assign(**{PARTITION_COLUMN: day}))
        raw = pd.concat(frames, ignore_index=True)
        lake.write_partitions(task.table(f"raw_{table}"), raw, days)
        outcomes = validation.validate(raw, contract, days)
        counts = raw.groupby(PARTITION_COLUMN).size().to_dict()
        outcomes["row_count"] = validation.row_count_outcome(counts, {})
        assert all(o.passed for o in outcomes.values()), {
            k: o.describe() for k, o in outcomes.items()
        }
        partitioned.add(f"raw_{table}")
    for name in task.definition.reference_tables:
        lake.write(task.table(name), task.domain.read_reference(name).copy())
    for table in task.definition.feature_tables:
        inputs = table.table_inputs()
        frames = [
            lake.read_partitions(task.table(i.table), _with_window(task, lake, i, days))
            if i.table in partitioned
            else lake.read(task.table(i.table))
            for i in inputs
        ]
        fn = task.function(table)
        extra = {"partition_keys": days} if accepts(fn, "partition_keys") else {}
        result = fn(*frames, **extra)
        if any(i.table in partitioned for i in inputs):
            partitioned.add(table.name)
            lake.write_partitions(task.table(table.name), result, days)
        else:
            lake.write(task.table(table.name), result)
    return {t.name: t.name in partitioned for t in task.definition.feature_tables}


def bare_pipeline(
    paths: DataPaths, days: list[str], task: Task | None = None, end: datetime | None = None
) -> int:
    """What the assets do, called directly from the same task definition: the feature tables,
    then register in Feast, materialize (up to `end`, by default the last day's end), join."""
    task = task or load_task(TASK)
    lake = Lake(paths.lake)
    bare_feature_tables(paths, days, task)
    store = open_store(location_from_paths(paths))
    apply_definitions(store, task.feast_objects(paths.lake), task.name)
    materialize_up_to(store, end or task.partition_end(max(days)), task.feature_view_names())
    examples = lake.read_partitions(task.table(task.definition.examples.table), days)
    training, _ = build_training_rows(
        task,
        examples,
        store,
        task.definition.examples.lead_minutes,
        task.definition.features.feature_service,
    )
    lake.write_partitions(task.table("training_set"), training, days)
    return len(training)


def ensure_training_set(paths: DataPaths, start: date, end: date) -> list[str]:
    """The task's training_set for these days in `paths`, built by the bare pipeline unless it is
    already there (the model and drift benchmarks keep it between runs)."""
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(start, end)]
    task = load_task(TASK)
    lake = Lake(paths.lake)
    if not all(lake.exists(task.table("training_set"), d) for d in days):
        task.domain.replay(paths.landing_for(TASK), start, end)
        started = time.perf_counter()
        rows = bare_pipeline(paths, days, task)
        print(f"built training_set: {rows:,} rows in {time.perf_counter() - started:.0f}s")
    return days


def data_half() -> set[str]:
    """ingestion -> training_set of the task: its ingestion and features groups and the
    training set (chosen by group and name, never by the absence of a tag)."""
    graph = defs().resolve_asset_graph()
    groups = {f"{TASK}_ingestion", f"{TASK}_features"}
    return {
        k.to_user_string()
        for k in graph.materializable_asset_keys
        if graph.get(k).group_name in groups or k == dg.AssetKey([TASK, "training_set"])
    }


def dagster_pipeline(start: date, end: date, root: Path, postgres_url: str | None = None) -> None:
    (root / "dagster_home").mkdir(exist_ok=True)
    overrides = (
        {"storage": {"postgres": {"postgres_url": postgres_url}}}
        if postgres_url
        else embedded_overrides(root / "dagster_home")
    )
    with dg.instance_for_test(temp_dir=str(root / "dagster_home"), overrides=overrides) as instance:
        results = materialize_window(start, end, instance, only=data_half())
        assert all(r.success for r in results), "the Dagster run failed"


@contextmanager
def scratch_postgres(server_url: str):
    """A database of its own on the server, dropped afterwards: its URL."""
    import psycopg2
    from psycopg2 import sql

    name = f"flightline_bench_overhead_{os.getpid()}"
    parts = urlsplit(server_url)
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    conn = psycopg2.connect(admin)
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        yield urlunsplit(parts._replace(scheme="postgresql+psycopg2", path=f"/{name}"))
    finally:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
        conn.close()


def main() -> None:
    parser = window_parser(__doc__)
    parser.add_argument("--storage", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "FLIGHTLINE_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432"
        ),
    )
    args = parser.parse_args()
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(start, end)]
    # warm imports and GX's context so neither side pays them (Feast's import alone is 6-9 s: the
    # side that ran first used to pay it)
    import feast  # noqa: F401

    task = load_task(TASK)
    contract = task.contracts["flights"]
    validation.validate(
        task.domain.read_reference("flights").head(50).assign(**{PARTITION_COLUMN: "2013-01-01"}),
        contract,
        ["2013-01-01"],
    )
    bare_times, dagster_times = [], []
    for i in range(args.repeat):
        # alternate the order so drift of the machine hits both sides alike
        for side in ("bare", "dagster") if i % 2 == 0 else ("dagster", "bare"):
            with fresh_data_root(side) as (paths, root):
                task.domain.replay(paths.landing_for(TASK), start, end)
                if side == "bare":
                    bare_times.append(
                        timed(lambda p=paths: rows_holder.append(bare_pipeline(p, days)))
                    )
                else:
                    scratch = (
                        scratch_postgres(args.postgres_url)
                        if args.storage == "postgres"
                        else nullcontext(None)
                    )
                    with scratch as url:
                        dagster_times.append(
                            timed(lambda r=root, u=url: dagster_pipeline(start, end, r, u))
                        )
        print(
            f"run {i + 1}: bare {bare_times[-1]:.1f}s, dagster {dagster_times[-1]:.1f}s", flush=True
        )
    rows = rows_holder[-1]
    b, d = median(bare_times), median(dagster_times)
    print(
        f"\n{len(days)} days, {rows:,} training rows, {args.repeat} run(s) each, "
        f"Dagster's storage on {args.storage}, medians:"
    )
    print(f"  bare script (lib functions): {b:7.1f} s")
    print(f"  through Dagster:             {d:7.1f} s")
    print(f"  ratio dagster / bare:        {d / b:7.3f}  (overhead {100 * (d / b - 1):+.1f}%)")


rows_holder: list[int] = []

if __name__ == "__main__":
    main()
