"""How the batch side grows with the data: ingestion -> training_set (the bare lib pipeline of
pipeline_overhead.py: landing files, validation, feature tables, Feast registration,
materialization, point-in-time join, lake) and LightGBM training on the result (a fixed 200
rounds at every size), over 1, 3 and 10 years of flights. Prints wall time and peak memory (max
RSS) of each, and rows per second.

    python benchmarks/scale.py                  # 1, 3 and 10 years
    python benchmarks/scale.py --years 1 3
    python benchmarks/scale.py --years 10 --steps data   # ingestion -> training_set only

Years after the first are synthesized from 2013: its 364 days 2013-01-01..2013-12-30 (the
source has no weather for 12-31) shifted by whole 52-week years, so that every day keeps its
weekday, with local wall-clock times kept and UTC times recomputed in New York's zone. Each
measurement runs in a fresh interpreter (peak memory is per process) on a scratch data root
that is deleted afterwards: nothing is written into the user's data root.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

YEAR_DAYS = 364  # 52 weeks: a shifted day keeps its weekday
# Training runs this many boosting rounds at every size (no early stopping): later years are
# copies of 2013, so a validation day repeats days trained on and early stopping would stop at a
# different round for each size (3 years ran to 2,000 rounds, 752 s), hiding how cost grows.
TRAINING_ROUNDS = 200
FIRST = date(2013, 1, 1)
LOCAL_TZ = "America/New_York"


def shifted(frame, offset_days: int):
    """A day file's rows moved `offset_days` later on the local calendar (same wall clock)."""
    import pandas as pd

    local = pd.to_datetime(frame[["year", "month", "day"]]) + pd.Timedelta(days=offset_days)
    out = frame.assign(year=local.dt.year, month=local.dt.month, day=local.dt.day)
    hour = frame["hour"].astype("int64")
    wall = local + pd.to_timedelta(hour, unit="h")
    utc = wall.dt.tz_localize(LOCAL_TZ, ambiguous=False, nonexistent="shift_forward").dt.tz_convert(
        "UTC"
    )
    return out.assign(time_hour=utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


def land_years(landing: Path, years: int, days_per_year: int = YEAR_DAYS) -> list[str]:
    """Day files of `years` 364-day years (their first `days_per_year` days) into a landing
    folder; returns the days."""
    from pipelines.platform.lib.landing import land_file
    from pipelines.tasks.flight_delay.contracts import FLIGHTS, WEATHER
    from pipelines.tasks.flight_delay.source import DAILY_TABLES, day_key, read_table

    contracts = {"flights": FLIGHTS, "weather": WEATHER}

    last = FIRST + timedelta(days=days_per_year - 1)
    days = []
    for table in DAILY_TABLES:
        source = read_table(table)
        source = source[day_key(source) <= last.isoformat()]
        unique = contracts[table].unique_together
        for k in range(years):
            frame = shifted(source, k * YEAR_DAYS) if k else source
            # A fall-back day's repeated local hour, moved to a day without a clock change, is
            # one instant twice: keep the first reading, as a station would report it.
            frame = frame.drop_duplicates(subset=unique, keep="first")
            keys = day_key(frame)
            for day, rows in frame.groupby(keys, sort=True):
                content = rows.to_csv(index=False, na_rep="NA").encode()
                land_file(landing, table, day, content, rows=len(rows))
                if table == DAILY_TABLES[0]:
                    days.append(day)
    return days


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_data(root: Path, years: int, days_per_year: int) -> dict:
    """Child: land the years, build the training set; time excludes landing the synthetic files."""
    import os

    os.environ["FLIGHTLINE_DATA_ROOT"] = str(root / "data")
    import pandas as pd

    from benchmarks.pipeline_overhead import TASK, bare_pipeline
    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.settings import DataPaths
    from pipelines.platform.partitions import MAX_PARTITIONS_PER_RUN

    paths = DataPaths.from_env()
    task = load_task(TASK)
    days = land_years(Path(paths.landing_for(TASK)), years, days_per_year)
    started = time.perf_counter()
    rows = 0
    # As the platform runs a long range (`make run`, a UI backfill): one run per year of days,
    # each reading its windows of the days before from the lake.
    for first in range(0, len(days), MAX_PARTITIONS_PER_RUN):
        chunk = days[first : first + MAX_PARTITIONS_PER_RUN]
        end = pd.Timestamp(chunk[-1], tz=LOCAL_TZ) + pd.Timedelta(days=1)
        rows += bare_pipeline(paths, chunk, task, end=end.tz_convert("UTC").to_pydatetime())
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_mb": peak_mb()}


def measure_training(root: Path, years: int, days_per_year: int) -> dict:
    """Child: LightGBM on the training set the data step left (the asset's encoding, bare)."""
    import os

    os.environ["FLIGHTLINE_DATA_ROOT"] = str(root / "data")
    from benchmarks.model_training import bare_lightgbm
    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.settings import DataPaths
    from pipelines.platform.lib.task import TimeSplit

    paths = DataPaths.from_env()
    task = load_task("flight_delay")
    lake = Lake(paths.lake)
    table_name = task.table("training_set")
    started = time.perf_counter()
    table = lake.read_partitions(table_name, lake.partitions(table_name))
    _, rounds = bare_lightgbm(
        table, TimeSplit(validation_days=1, holdout_days=1), rounds=TRAINING_ROUNDS
    )
    return {
        "seconds": time.perf_counter() - started,
        "rows": len(table),
        "rounds": rounds,
        "peak_mb": peak_mb(),
    }


def child(step: str, root: Path, years: int, days_per_year: int) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            step,
            "--root",
            str(root),
            "--years",
            str(years),
            "--days-per-year",
            str(days_per_year),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{step} over {years} year(s) failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--years", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument(
        "--days-per-year", type=int, default=YEAR_DAYS, help="a smoke run: the first N days"
    )
    parser.add_argument(
        "--steps", nargs="+", choices=["data", "training"], default=["data", "training"]
    )
    parser.add_argument("--child", choices=["data", "training"])
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    if args.child:
        step = measure_data if args.child == "data" else measure_training
        print(json.dumps(step(args.root, args.years[0], args.days_per_year)))
        return
    print(f"{'years':>5} {'step':<28} {'rows':>11} {'seconds':>9} {'rows/s':>9} {'peak MB':>9}")
    for years in args.years:
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{years}y-") as scratch:
            for step, label in (("data", "ingestion->training_set"), ("training", "training")):
                if step not in args.steps:
                    continue
                r = child(step, Path(scratch), years, args.days_per_year)
                print(
                    f"{years:>5} {label:<28} {r['rows']:>11,} {r['seconds']:>9.1f} "
                    f"{r['rows'] / r['seconds']:>9,.0f} {r['peak_mb']:>9,.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
