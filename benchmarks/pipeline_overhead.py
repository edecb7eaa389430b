"""ingestion -> training_set over a range of days: through Dagster, and the same lib functions in
a bare script, in one process and one run. Prints both and the ratio (target: overhead <= 15%).

    python benchmarks/pipeline_overhead.py                      # 2013-01-01..2013-12-30
    python benchmarks/pipeline_overhead.py --end 2013-01-31 --repeat 3

The default range stops on 2013-12-30: the source has no weather for 2013-12-31, so that day's
raw_weather fails (as it should) and the run would stop there.
"""

import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fresh_data_root, median, timed, window_parser
from pipelines.definitions import defs  # imported up front: neither side pays imports
from pipelines.platform.cli import materialize_window
from pipelines.platform.lib import validation
from pipelines.platform.lib.feature_store import (
    FeastLocation,
    apply_definitions,
    historical_features,
    materialize_up_to,
    open_store,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.landing import archive_landed_file, read_landed_day
from pipelines.platform.lib.settings import PROJECT_ROOT, DataPaths
from pipelines.tasks.flight_delay import features as F
from pipelines.tasks.flight_delay.contracts import FLIGHTS, WEATHER
from pipelines.tasks.flight_delay.feast_declarations import FEATURE_SERVICE
from pipelines.tasks.flight_delay.flights import PredictionTiming, day_start_utc, flight_timeline
from pipelines.tasks.flight_delay.replay import replay_days
from pipelines.tasks.flight_delay.source import read_table


def bare_pipeline(paths: DataPaths, days: list[str]) -> int:
    """What the assets do, called directly: read, archive, validate, build, store, register, join."""
    lake = Lake(paths.lake)
    raw = {}
    for table, contract in (("flights", FLIGHTS), ("weather", WEATHER)):
        frames = []
        for day in days:
            landed = read_landed_day(paths.landing, table, day)
            archive_landed_file(landed, paths.root / "archive")
            frames.append(landed.frame.assign(**{PARTITION_COLUMN: day}))
        raw[table] = pd.concat(frames, ignore_index=True)
        lake.write_partitions(f"raw_{table}", raw[table], days)
        outcomes = validation.validate(lake.read_partitions(f"raw_{table}", days), contract, days)
        counts = raw[table].groupby(PARTITION_COLUMN).size().to_dict()
        outcomes["row_count"] = validation.row_count_outcome(counts, {})
        assert all(o.passed for o in outcomes.values()), {
            k: o.describe() for k, o in outcomes.items()
        }
    for name in ("planes", "airports", "airlines"):
        lake.write(name, read_table(name).copy())
    lake.write("flight_delay/plane_features", F.plane_features(lake.read("flight_delay/planes")))
    timeline = flight_timeline(lake.read_partitions("flight_delay/raw_flights", days))
    lake.write_partitions("flight_delay/flight_timeline", timeline, days)
    lake.write_partitions(
        "weather_features",
        F.weather_features(lake.read_partitions("flight_delay/raw_weather", days)),
        days,
    )
    for name, build in (
        ("scheduled_traffic", F.scheduled_traffic),
        ("origin_recent_departures", F.origin_recent_departures),
        ("aircraft_last_arrival", F.aircraft_last_arrival),
    ):
        lake.write_partitions(
            name, build(lake.read_partitions("flight_delay/flight_timeline", days)), days
        )
    history = lake.read_partitions("flight_delay/flight_timeline", days)
    for entity in ("carrier", "route", "origin"):
        lake.write_partitions(
            f"{entity}_delay_stats", F.trailing_delay_stats(history, days, entity, entity), days
        )
    store = open_store(
        FeastLocation(
            "flightline",
            str(paths.feast_registry),
            str(paths.feast_online_store),
            paths.lake,
            str(PROJECT_ROOT / "feature_repo"),
        )
    )
    apply_definitions(store, paths.lake)
    end = day_start_utc(pd.Series([max(days)])).iloc[0] + pd.Timedelta(days=1)
    materialize_up_to(store, end.to_pydatetime())
    timeline = lake.read_partitions("flight_delay/flight_timeline", days)
    labelled = timeline.loc[timeline["label"].notna()].reset_index(drop=True)
    joined = historical_features(
        store, F.entity_rows(labelled, PredictionTiming()), FEATURE_SERVICE
    )
    request = F.request_features(labelled).drop(columns=["carrier", "origin"])
    training = pd.concat(
        [
            joined,
            request.reset_index(drop=True),
            labelled[["sched_dep_ts", "label", PARTITION_COLUMN]].reset_index(drop=True),
        ],
        axis=1,
    )
    lake.write_partitions("flight_delay/training_set", training, days)
    return len(training)


def data_half() -> set[str]:
    """Every asset up to training_set: the model assets (tagged with their task) are left out."""
    graph = defs().resolve_asset_graph()
    return {
        k.to_user_string()
        for k in graph.materializable_asset_keys
        if "flightline/task" not in (graph.get(k).tags or {})
    }


def dagster_pipeline(start: date, end: date, root: Path) -> None:
    (root / "dagster_home").mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        results = materialize_window(start, end, instance, only=data_half())
        assert all(r.success for r in results), "the Dagster run failed"


def main() -> None:
    parser = window_parser(__doc__)
    args = parser.parse_args()
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(start, end)]
    # warm imports and GX's context so neither side pays them
    validation.validate(
        read_table("flights").head(50).assign(**{PARTITION_COLUMN: "2013-01-01"}),
        FLIGHTS,
        ["2013-01-01"],
    )
    bare_times, dagster_times = [], []
    for i in range(args.repeat):
        # alternate the order so drift of the machine hits both sides alike
        for side in ("bare", "dagster") if i % 2 == 0 else ("dagster", "bare"):
            with fresh_data_root(side) as (paths, root):
                replay_days(paths.landing / "flight_delay", start, end)
                if side == "bare":
                    bare_times.append(
                        timed(lambda p=paths: rows_holder.append(bare_pipeline(p, days)))
                    )
                else:
                    dagster_times.append(timed(lambda r=root: dagster_pipeline(start, end, r)))
        print(
            f"run {i + 1}: bare {bare_times[-1]:.1f}s, dagster {dagster_times[-1]:.1f}s", flush=True
        )
    rows = rows_holder[-1]
    b, d = median(bare_times), median(dagster_times)
    print(f"\n{len(days)} days, {rows:,} training rows, {args.repeat} run(s) each, medians:")
    print(f"  bare script (lib functions): {b:7.1f} s")
    print(f"  through Dagster:             {d:7.1f} s")
    print(f"  ratio dagster / bare:        {d / b:7.3f}  (overhead {100 * (d / b - 1):+.1f}%)")


rows_holder: list[int] = []

if __name__ == "__main__":
    main()
