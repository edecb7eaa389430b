"""The prediction log's cost on the request path: one prediction-sized record encoded and
written (to the kernel) per call, paced like served traffic, into a scratch folder (never the
user's data). Prints the median and p99 of `append`, beside the floor of a bare json.dumps of the
same record in the same run.

    .venv/bin/python benchmarks/prediction_log_append.py [--calls 3000] [--pace-ms 3]
"""

import argparse
import json
import statistics
import tempfile
import time

from pipelines.platform.lib.prediction_log import PredictionLogWriter

RECORD = {
    "request": {
        "carrier": "UA",
        "flight": 1545,
        "tailnum": "N14228",
        "origin": "EWR",
        "dest": "IAH",
        "sched_dep_ts": "2013-01-09T22:00:00+00:00",
        "distance": 1400.0,
    },
    "features": {f"f{i}": float(i) for i in range(30)} | {"missing": float("nan")},
    "delay_probability": 0.23,
    "model_version": "3",
    "feature_age_seconds": {"weather": 1800.0, "plane_attributes": None},
}


def _timed(call, calls: int, pace_s: float) -> list[float]:
    times = []
    for _ in range(calls):
        time.sleep(pace_s)
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--pace-ms", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        writer = PredictionLogWriter(scratch)
        append = _timed(lambda: writer.append("2013-01-09", RECORD), args.calls, args.pace_ms / 1e3)
        writer.close()
    floor = _timed(lambda: json.dumps(RECORD, default=str), args.calls, args.pace_ms / 1e3)
    for name, times in (("append", append), ("json.dumps floor", floor)):
        p99 = times[int(len(times) * 0.99)]
        print(
            f"{name:>18}: median {statistics.median(times) * 1e6:7.1f} us  p99 {p99 * 1e6:7.1f} us"
        )
    print(f"ratio of medians: {statistics.median(append) / statistics.median(floor):.1f}x")


if __name__ == "__main__":
    main()
