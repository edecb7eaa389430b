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


def test_lake_throughput_measures_local_disk_and_the_s3_server():
    done = subprocess.run(
        [sys.executable, "benchmarks/lake_throughput.py", "--end", "2013-01-02", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.search(r"([\d,]+) rows x (\d+) columns", done.stdout)
    ratio = re.search(r"ratio s3 / local time: write ([\d.]+)x, read ([\d.]+)x", done.stdout)
    assert rows and int(rows.group(1).replace(",", "")) > 1000, done.stdout
    assert ratio and float(ratio.group(1)) > 0 and float(ratio.group(2)) > 0, done.stdout
