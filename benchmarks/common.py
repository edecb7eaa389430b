"""Helpers shared by the benchmarks: a fresh data root per measured run, and timing."""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from pipelines.platform.lib.settings import DataPaths


@contextmanager
def fresh_data_root(name: str):
    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    previous = os.environ.get("FLIGHTLINE_DATA_ROOT")
    os.environ["FLIGHTLINE_DATA_ROOT"] = str(root / "data")
    try:
        yield DataPaths.from_env(), root
    finally:
        if previous is None:
            os.environ.pop("FLIGHTLINE_DATA_ROOT", None)
        else:
            os.environ["FLIGHTLINE_DATA_ROOT"] = previous
        shutil.rmtree(root, ignore_errors=True)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def window_parser(doc: str, end: str = "2013-12-30", repeat: int = 1) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: a window of days and a number of repeats."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default=end)
    parser.add_argument("--repeat", type=int, default=repeat)
    return parser


def in_process_predictor(task_name: str, log=None):
    """The service's Predictor for the task's current Bento model, built as the service builds
    it, in this process: the floor HTTP is measured against."""
    import json

    import bentoml

    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.predictor import ModelInfo, Predictor
    from pipelines.platform.resources_config import embedded_resources

    task = load_task(task_name)
    paths = DataPaths.from_env()
    latest = json.loads((paths.root / "serving" / task.name / "latest.json").read_text())
    classifier = (
        bentoml.mlflow.load_model(bentoml.models.get(latest["model"]))
        .unwrap_python_model()
        .classifier
    )

    class Model:  # what the service hands the predictor: the classifier, called directly
        predict = staticmethod(classifier.predict_proba)
        if hasattr(classifier, "predict_records"):
            predict_records = staticmethod(classifier.predict_records)

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
        source="benchmark",
    )
    predictor.warm_up()
    return predictor
