"""Where a prediction's time goes: pyinstrument over the service's per-request code, in-process
(`Predictor.predict` of one row, warm, logging on), on the data `make run` built. Prints the call
tree and the mean time per call; `--code DIR` profiles another checkout's code on the same data
(before/after a change). The HTTP layer is measured by `serving_load.py` against this floor.

    python benchmarks/profile_serving.py --rounds 2000
    python benchmarks/profile_serving.py --code /path/to/other/checkout   # the same, older code
"""

import argparse
import json
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
    parser.add_argument("--code", default=str(ROOT), help="checkout whose code is profiled")
    parser.add_argument("--flat", action="store_true", help="self time per function")
    args = parser.parse_args()
    sys.path.insert(0, args.code)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")

    import bentoml
    from pyinstrument import Profiler

    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.prediction_log import PredictionLogWriter
    from pipelines.platform.lib.predictor import ModelInfo, Predictor
    from pipelines.platform.lib.settings import DataPaths
    from pipelines.platform.resources_config import embedded_resources

    task = load_task("flight_delay")
    paths = DataPaths.from_env()
    latest = json.loads((paths.root / "serving" / task.name / "latest.json").read_text())
    pyfunc = bentoml.mlflow.load_model(bentoml.models.get(latest["model"]))
    classifier = pyfunc.unwrap_python_model().classifier

    class Model:  # what the service hands the predictor: the classifier, called directly
        predict = staticmethod(classifier.predict_proba)
        if hasattr(classifier, "predict_records"):
            predict_records = staticmethod(classifier.predict_records)

    log = PredictionLogWriter(Path(tempfile.mkdtemp(prefix="profile-log-")))
    predictor = Predictor(
        task.spec,
        task.domain,
        embedded_resources()["feast"].store(),
        Model(),
        ModelInfo(task.name, "?", latest["model"]),
        log=log,
        score_field=task.definition.serving.score_field,
        flags=task.definition.serving.flags,
        partition_of=task.partition_of,
    )
    request = {**task.domain.warm_up_request, "tailnum": "N14228"}
    requests = [dict(request) for _ in range(args.batch)]  # as the service hands them over
    predictor.warm_up()
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
        f"code {args.code}: {args.rounds} x Predictor.predict of {args.batch} row(s): "
        f"{elapsed / args.rounds * 1000:.3f} ms per call (under the profiler)"
    )


if __name__ == "__main__":
    main()
