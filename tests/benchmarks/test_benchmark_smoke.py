"""Benchmarks that stop working fail here, not rot: a tiny run of each benchmark in benchmarks/
(a few days, one repeat) as the README runs it, in a fresh interpreter, its printed figures
parsed. No time bound on the figures: speed is measured by the benchmarks, not asserted.
cold_start.py's smoke run is in tests/platform/test_cold_start.py; serving_load.py's comes with
the serving work."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_scratch import empty_redis_url

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"([\d,]+(?:\.\d+)?)"

# A tiny run still pays imports, Feast and MLflow set-up and a Dagster run on a busy 2-core
# machine: minutes, not seconds, for the slowest (model_training: ~3.5 min at load average 7).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def run_benchmark(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def figure(pattern: str, out: str) -> float:
    """The number the pattern's first group captures in the benchmark's output."""
    found = re.search(pattern, out)
    assert found, f"no {pattern!r} in the output:\n{out}"
    return float(found.group(1).replace(",", ""))


def assert_every_family_learned(out: str) -> None:
    """Each model family's holdout ROC AUC: better than chance, even on a few days."""
    for family in ("lightgbm", "torch", "baseline"):
        assert 0.5 < figure(rf"{family}\s+ROC AUC {NUMBER}", out) <= 1


def test_pipeline_overhead_runs_both_sides_from_the_task_definition():
    out = run_benchmark("pipeline_overhead.py", "--end", "2013-01-02", "--repeat", "1")
    assert figure(rf"2 days, {NUMBER} training rows", out) > 1000
    assert figure(rf"bare script \(lib functions\):\s+{NUMBER} s", out) > 0
    assert figure(rf"through Dagster:\s+{NUMBER} s", out) > 0
    assert figure(rf"ratio dagster / bare:\s+{NUMBER}", out) > 0


def test_pipeline_overhead_measures_the_postgres_profile_and_drops_its_database():
    import psycopg2

    try:
        conn = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no local PostgreSQL (.ci/run starts one): {exc}")
    out = run_benchmark(
        "pipeline_overhead.py", "--end", "2013-01-02", "--storage", "postgres",
        "--postgres-url", "postgresql+psycopg2://postgres@127.0.0.1:5432",
    )  # fmt: skip
    assert "Dagster's storage on postgres" in out
    assert figure(rf"through Dagster:\s+{NUMBER} s", out) > 0
    with conn, conn.cursor() as cur:  # the scratch database is gone
        cur.execute("select datname from pg_database where datname like 'flightline_bench_%'")
        assert cur.fetchall() == []
    conn.close()


def test_scale_measures_each_synthesized_year_count():
    """Two years of three days each: the second is 2013's days shifted by 52 weeks."""
    out = run_benchmark("scale.py", "--years", "1", "2", "--days-per-year", "3")
    one = figure(rf"1 ingestion->training_set\s+{NUMBER}", out)
    two = figure(rf"2 ingestion->training_set\s+{NUMBER}", out)
    assert one > 1000
    assert 1.8 * one < two < 2.2 * one  # the shifted days are 2013's rows again
    assert figure(rf"2 training\s+{NUMBER}", out) == two
    assert figure(rf"2 training\s+[\d,]+\s+[\d.]+\s+[\d,]+\s+{NUMBER}", out) > 100  # peak MB


def test_online_materialization_runs_the_platform_feast_and_the_direct_floor():
    redis_url = empty_redis_url()
    out = run_benchmark(
        "online_materialization.py", "--end", "2013-01-02", "--repeat", "1",
        "--redis-url", redis_url,
    )  # fmt: skip
    online_rows = figure(rf"-> {NUMBER} online rows", out)
    assert online_rows > 1000
    assert "tables identical to Feast's" in out  # else the benchmark exits non-zero
    assert figure(rf"platform materialize:\s+{NUMBER} s", out) > 0
    assert figure(rf"Feast's own materialize:\s+{NUMBER} s", out) > 0
    assert figure(rf"direct SQLite inserts:\s+{NUMBER} s", out) > 0
    assert figure(rf"ratio platform / direct:\s+{NUMBER}x", out) > 0
    if redis_url != "none":  # the Redis hashes equal Feast's, else the benchmark exits non-zero
        assert figure(rf"platform -> Redis:\s+{NUMBER} s", out) > 0
        assert figure(rf"direct Redis HSETs:\s+{NUMBER} s", out) > 0
        assert figure(rf"ratio platform / direct \(Redis\):\s+{NUMBER}x", out) > 0


@pytest.fixture(scope="module")
def six_days(tmp_path_factory):
    """One data root for the model and drift benchmarks: the first builds its six days' training
    set with the bare lib pipeline, the others find it there (as their --data-root re-runs do)."""
    return tmp_path_factory.mktemp("bench-six-days")


def test_model_training_runs_the_bare_train_and_the_assets(six_days):
    out = run_benchmark(
        "model_training.py", "--end", "2013-01-06", "--repeat", "1",
        "--validation-days", "1", "--holdout-days", "2", "--max-epochs", "2",
        "--bootstrap-samples", "50", "--data-root", str(six_days),
    )  # fmt: skip
    assert figure(rf"6 days, {NUMBER} training-set rows", out) > 1000
    assert figure(rf"ratio asset / bare train: {NUMBER}", out) > 0
    assert figure(rf"torch MLP: {NUMBER} rows/s", out) > 0
    assert_every_family_learned(out)


def test_model_quality_trains_every_family_on_a_fixed_split(six_days):
    out = run_benchmark(
        "model_quality.py", "--end", "2013-01-06", "--train-end", "2013-01-04",
        "--valid-days", "1", "--test-start", "2013-01-05", "--max-epochs", "2",
        "--data-root", str(six_days),
    )  # fmt: skip
    assert figure(rf"train {NUMBER} / valid", out) > 1000
    assert figure(rf"/ test {NUMBER}", out) > 100
    assert_every_family_learned(out)


def test_drift_check_compares_the_cached_reference_with_evidently(six_days):
    out = run_benchmark(
        "drift_check.py", "--data-root", str(six_days / "data"),
        "--build", "2013-01-01..2013-01-04", "--sizes", "2000", "--repeat", "1",
    )  # fmt: skip
    assert figure(rf"reference: {NUMBER} rows", out) > 1000
    for side in ("one day", "2,000 rows"):  # rows, cached reference s, Evidently s, ratio
        row = re.search(rf"^\|\s*{side}\s*\|(.*)\|\s*$", out, re.MULTILINE)
        assert row, f"no row {side!r} in the output:\n{out}"
        cells = [float(c.strip().replace(",", "")) for c in row.group(1).split("|")]
        assert len(cells) == 4 and all(c > 0 for c in cells), row.group(0)
    for sensor in ("landing_sensor", "drift_sensor"):
        assert figure(rf"sensor tick, {sensor}[^:]*: {NUMBER} ms", out) >= 0


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
    for label in ("single row", "batch of 100", "lookup ours", "lookup feast", "HTTP floor"):
        line = re.search(rf"sqlite {label}\s+20|sqlite {label}\s+2", out)
        assert line, out
    figures = re.findall(r"p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", out)
    assert len(figures) >= 4 and all(float(p99) >= float(p50) > 0 for p50, p99 in figures), out
    assert re.findall(r"non-2xx (\d+)", out) and set(re.findall(r"non-2xx (\d+)", out)) == {"0"}
    assert re.search(r"HTTP floor p50 [\d.]+ ms; predict above it -?[\d.]+ ms", out), out
    ratio = re.search(r"ratio lookup ours/feast p50 ([\d.]+)", out)
    assert ratio and float(ratio.group(1)) > 0, out
    logged = re.search(r"answered (\d+) rows, logged (\d+), distinct (\d+)", out)
    assert logged and int(logged.group(1)) > 0, out
    assert logged.group(1) == logged.group(2) == logged.group(3), out


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
