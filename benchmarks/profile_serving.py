"""Where a prediction's time goes: pyinstrument over the service's per-request code, in-process
(`Predictor.predict` of one row, warm, logging on), on the data `make run` built. Prints the call
tree (or, `--flat`, self time per function) and the mean time per call. The HTTP layer is
measured by `serving_load.py` against this floor.

    python benchmarks/profile_serving.py --rounds 2000
    python benchmarks/profile_serving.py --flat
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--flat", action="store_true", help="self time per function")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")

    from pyinstrument import Profiler

    from benchmarks.common import in_process_predictor
    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.prediction_log import PredictionLogWriter

    task = load_task("flight_delay")
    log = PredictionLogWriter(Path(tempfile.mkdtemp(prefix="profile-log-")))
    predictor = in_process_predictor(task.name, log)
    request = {**task.domain.warm_up_request, "tailnum": "N14228"}
    requests = [dict(request) for _ in range(args.batch)]  # as the service hands them over
    for _ in range(50):
        predictor.predict(requests)
    profiler = Profiler(interval=0.0002)
    started = time.perf_counter()
    with profiler:
        for _ in range(args.rounds):
            predictor.predict(requests)
    elapsed = time.perf_counter() - started
    log.close()
    print(
        profiler.output_text(
            unicode=False, color=False, time="percent_of_total", flat=args.flat
        ).replace("\n\n", "\n")
    )
    print(
        f"{args.rounds} x Predictor.predict of {args.batch} row(s): "
        f"{elapsed / args.rounds * 1000:.3f} ms per call (under the profiler)"
    )


if __name__ == "__main__":
    main()
