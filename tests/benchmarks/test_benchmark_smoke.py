"""Benchmarks that stop working fail here, not rot: a tiny run of each data-path benchmark, its
printed figures parsed. No time bound: speed is measured by the benchmarks, not asserted."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_overhead_runs_both_sides_from_the_task_definition():
    done = subprocess.run(
        [sys.executable, "benchmarks/pipeline_overhead.py", "--end", "2013-01-02", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.search(r"2 days, ([\d,]+) training rows", done.stdout)
    ratio = re.search(r"ratio dagster / bare:\s+([\d.]+)", done.stdout)
    assert rows and int(rows.group(1).replace(",", "")) > 1000, done.stdout
    assert ratio and float(ratio.group(1)) > 0, done.stdout


def test_serving_load_holds_a_rate_and_compares_with_feasts_server(built):
    """A second of each measurement on the nine-day pipeline's Bento model: figures printed for
    every line, no refused request, and the prediction log holds each answered row once."""
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/serving_load.py",
            "--seconds",
            "1",
            "--rate",
            "20",
            "--batch-rate",
            "2",
            "--connections",
            "2",
            "--floor-rounds",
            "50",
            "--day",
            "2013-01-09",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for label in ("single row", "batch of 100", "lookup ours", "lookup feast"):
        line = re.search(rf"sqlite {label}\s+20|sqlite {label}\s+2", out)
        assert line, out
    figures = re.findall(r"p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", out)
    assert len(figures) >= 4 and all(float(p99) >= float(p50) > 0 for p50, p99 in figures), out
    assert re.findall(r"non-2xx (\d+)", out) and set(re.findall(r"non-2xx (\d+)", out)) == {"0"}
    ratio = re.search(r"ratio lookup ours/feast p50 ([\d.]+)", out)
    assert ratio and float(ratio.group(1)) > 0, out
    logged = re.search(r"answered (\d+) rows, logged (\d+), distinct (\d+)", out)
    assert logged and int(logged.group(1)) > 0, out
    assert logged.group(1) == logged.group(2) == logged.group(3), out
