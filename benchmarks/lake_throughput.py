"""Lake throughput: a month of the real `training_set`, written and read through `Lake` on local
disk and on an S3 API server (moto_server, a process on loopback, the tests' server). Prints MB/s
of each side and the ratio S3 / local (the object store's cost; local disk is the floor).

The training set is built first by the same lib functions as the assets (benchmarks/
pipeline_overhead.py's bare pipeline) over the window, into a local data root.

    python benchmarks/lake_throughput.py                      # 2013-01-01..2013-01-31, 3 repeats
    python benchmarks/lake_throughput.py --end 2013-01-02 --repeat 1
"""

import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fresh_data_root, median, timed, window_parser
from benchmarks.pipeline_overhead import TASK, bare_pipeline
from pipelines.platform.lib.lake import Lake
from pipelines.tasks.flight_delay.replay import replay_days
from tests import s3_server

TABLE = f"{TASK}/training_set"


def measure(lake: Lake, frame: pd.DataFrame, days: list[str], repeat: int) -> tuple[float, float]:
    writes, reads = [], []
    for _ in range(repeat):
        writes.append(timed(lambda: lake.write_partitions(TABLE, frame, days)))
        reads.append(timed(lambda: lake.read_partitions(TABLE, days)))
    return median(writes), median(reads)


def main() -> None:
    args = window_parser(__doc__, end="2013-01-31", repeat=3).parse_args()
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(args.start, args.end)]
    with fresh_data_root("lake-throughput") as (paths, root):
        replay_days(
            paths.landing_for(TASK), date.fromisoformat(args.start), date.fromisoformat(args.end)
        )
        started = time.perf_counter()
        rows = bare_pipeline(paths, days)
        print(f"built {len(days)} days of training_set ({rows:,} rows) in "
              f"{time.perf_counter() - started:.1f}s")  # fmt: skip
        frame = Lake(paths.lake).read_partitions(TABLE, days)
        local_bytes = sum((Path(paths.lake) / TABLE / f"{d}.parquet").stat().st_size for d in days)
        megabytes = local_bytes / 1e6
        print(f"{len(frame):,} rows x {frame.shape[1]} columns, {megabytes:.1f} MB of Parquet")

        local = Lake(str(root / "bench-lake"))
        local_w, local_r = measure(local, frame, days, args.repeat)

        server = s3_server.start(Path(tempfile.mkdtemp()) / "moto_server.log")
        try:
            env = {**server.env(), "FLIGHTLINE_S3_ENDPOINT": f"http://127.0.0.1:{server.port}"}
            os.environ.update(env)  # straight to the server: the tests' relay is not measured
            remote = Lake(f"s3://{server.bucket}/lake")
            s3_w, s3_r = measure(remote, frame, days, args.repeat)
        finally:
            server.stop()

    print(f"{'':8}{'write':>12}{'read':>12}   (median of {args.repeat}, {len(days)} partitions)")
    for name, w, r in (("local", local_w, local_r), ("s3", s3_w, s3_r)):
        print(f"{name:8}{megabytes / w:>8.1f} MB/s{megabytes / r:>8.1f} MB/s   "
              f"({w:.2f}s / {r:.2f}s)")  # fmt: skip
    print(f"ratio s3 / local time: write {s3_w / local_w:.2f}x, read {s3_r / local_r:.2f}x")


if __name__ == "__main__":
    main()
