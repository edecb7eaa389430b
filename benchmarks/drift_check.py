"""Drift check against the cached reference vs Evidently computing the reference every time.

Reference: the training_set rows of an existing data root (`make run` builds January), all
features + the champion-like prediction column stood in by a fixed random score. Current sides:
one real day, and the same rows resampled to 100k and 1M. Each is checked (a) by
`detect_drift` against the reference summarized once (the daily asset's path: read the cached
JSON + check), and (b) by Evidently's DataDriftPreset computing both sides from the rows. Also
timed: one tick of each sensor against the data root's landing folder and instance.

    python benchmarks/drift_check.py --data-root data --repeat 3
    python benchmarks/drift_check.py --evidently-max-rows 1000000   (Evidently on 1M: minutes)
    python benchmarks/drift_check.py --data-root /tmp/d --build 2013-01-01..2013-01-04 \
        --sizes 2000 --repeat 1              # the test suite's smoke run (builds its own days)
"""

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import median, timed
from benchmarks.pipeline_overhead import ensure_training_set
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.drift import (
    PREDICTION,
    DriftReference,
    detect_drift,
    evidently_report,
    summarize_reference,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.settings import DataPaths

SPEC = load_task("flight_delay").spec
NUMERIC = [*SPEC.numeric_features, PREDICTION]
CATEGORICAL = list(SPEC.categorical_features)


def _frames(lake: Lake) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    days = lake.partitions("flight_delay/training_set")
    if len(days) < 3:
        raise SystemExit("need a data root with training_set partitions: run `make run` first")
    table = lake.read_partitions("flight_delay/training_set", days)
    rng = np.random.default_rng(0)
    frame = feature_frame(table, SPEC).assign(**{PREDICTION: rng.random(len(table))})
    last = table[PARTITION_COLUMN] == days[-1]
    return frame[~last].reset_index(drop=True), table.loc[~last, PARTITION_COLUMN], frame[last]


def _sensor_ticks(data_root: Path, repeat: int) -> dict[str, float]:
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.platform.resources_config import embedded_resources

    definitions, resources = defs(), embedded_resources()
    landing_sensor = definitions.get_sensor_def("flight_delay_landing_sensor")
    drift_sensor = definitions.get_sensor_def("flight_delay_drift_sensor")
    out = {}
    with dg.instance_for_test(temp_dir=tempfile.mkdtemp()) as instance:
        for name, sensor, needs in (
            ("landing_sensor (first tick, hashes every file)", landing_sensor, ["landing"]),
            ("drift_sensor", drift_sensor, ["lake", "retrain_policy"]),
        ):
            times, cursor = [], None
            for _ in range(repeat):
                context = dg.build_sensor_context(
                    instance=instance,
                    definitions=definitions,
                    resources={k: resources[k] for k in needs},
                    cursor=cursor if "first" not in name else None,
                )
                started = time.perf_counter()
                result = sensor(context)
                times.append(time.perf_counter() - started)
            out[name] = median(times)
            if sensor is landing_sensor:  # the steady state: nothing new since the last tick
                steady = []
                for _ in range(repeat):
                    context = dg.build_sensor_context(
                        instance=instance,
                        definitions=definitions,
                        resources={"landing": resources["landing"]},
                        cursor=result.cursor,
                    )
                    steady.append(timed(lambda c=context: landing_sensor(c)))
                out["landing_sensor (nothing new)"] = median(steady)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", default=os.environ.get("FLIGHTLINE_DATA_ROOT", "data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evidently-max-rows", type=int, default=100_000)
    parser.add_argument(
        "--sizes", default="100000,1000000", help="resampled current sides, besides one day"
    )
    parser.add_argument(
        "--build", metavar="START..END", help="first build these days' training set if missing"
    )
    args = parser.parse_args()
    os.environ["FLIGHTLINE_DATA_ROOT"] = str(Path(args.data_root).resolve())
    if args.build:
        first, last = (date.fromisoformat(d) for d in args.build.split(".."))
        ensure_training_set(DataPaths.from_env(), first, last)
    lake = Lake(str(Path(args.data_root).resolve() / "lake"))
    reference_rows, days, day = _frames(lake)
    print(
        f"reference: {len(reference_rows):,} rows x {reference_rows.shape[1]} columns "
        f"({days.nunique()} days); one day: {len(day):,} rows"
    )

    started = time.perf_counter()
    reference = summarize_reference(reference_rows, NUMERIC, CATEGORICAL, days=days)
    summarize_s = time.perf_counter() - started
    cached = Path(tempfile.mkdtemp()) / "drift_reference.json"
    cached.write_text(json.dumps(reference.as_dict()))
    print(f"summarizing the reference once (with per-day calibration): {summarize_s:.2f} s")

    # Evidently's first call in a process pays its imports and warm-up: not a per-check cost.
    evidently_report(reference_rows.head(500), day.head(300), NUMERIC, CATEGORICAL)

    rng = np.random.default_rng(1)
    rows = []
    sizes = [int(n) for n in args.sizes.split(",") if n]
    for label, size in [("one day", len(day)), *((f"{n:,} rows", n) for n in sizes)]:
        current = day if size == len(day) else day.sample(size, replace=True, random_state=rng)

        def cached_check(current=current):
            ref = DriftReference.from_dict(json.loads(cached.read_text()))
            return detect_drift(ref, current.drop(columns=PREDICTION), current[PREDICTION])

        ours = median([timed(cached_check) for _ in range(args.repeat)])
        if size <= args.evidently_max_rows:
            runs = 1 if size > 100_000 else args.repeat
            theirs = median(
                [
                    timed(
                        lambda current=current: evidently_report(
                            reference_rows, current, NUMERIC, CATEGORICAL
                        )
                    )
                    for _ in range(runs)
                ]
            )
        else:
            theirs = float("nan")
        rows.append(
            {
                "current side": label,
                "rows": f"{len(current):,}",
                "cached reference (s)": round(ours, 3),
                "Evidently, both sides (s)": round(theirs, 2),
                "ratio": round(theirs / ours, 1) if theirs == theirs else "not run",
            }
        )
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(f"columns: {len(NUMERIC)} numeric (incl. prediction), {len(CATEGORICAL)} categorical")

    for name, seconds in _sensor_ticks(Path(args.data_root), args.repeat).items():
        print(f"sensor tick, {name}: {seconds * 1000:.0f} ms (median of {args.repeat})")


if __name__ == "__main__":
    main()
