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
