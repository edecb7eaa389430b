"""Load test of the prediction service: `wrk` (a real HTTP load generator) against `bentoml serve`
of the Bento that `make run` built, on loopback, at a fixed concurrency; single rows and batches
of 100. In the same run, the floor: the Feast online lookup + model predict called in-process.

    make run && python benchmarks/serving_load.py            # needs wrk (apt-get install wrk)
    python benchmarks/serving_load.py --connections 8 --seconds 20
    python benchmarks/serving_load.py --online-store both    # SQLite, then Redis, same load
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.platform.lib.settings import DataPaths

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS = [
    {
        "carrier": c,
        "flight": 100 + i,
        "tailnum": t,
        "origin": o,
        "dest": d,
        "sched_dep": f"2013-01-31T{8 + i % 12:02d}:00:00",
        "distance": dist,
    }
    for i, (c, t, o, d, dist) in enumerate(
        [
            ("UA", "N14228", "EWR", "IAH", 1400.0),
            ("DL", "N3ASAA", "JFK", "ATL", 760.0),
            ("B6", "N516JB", "JFK", "BOS", 187.0),
            ("AA", "N3DUAA", "LGA", "ORD", 733.0),
        ]
        * 25
    )
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, body: dict, connections: int, seconds: int) -> dict:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{json.dumps(body)}]]\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(2, connections)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(pct: str) -> float:
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def floor(batch: int, rounds: int) -> dict:
    """Lookup + predict in-process: the same code the service runs, minus HTTP and BentoML."""
    import bentoml

    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.online import online_vector
    from pipelines.platform.resources_config import embedded_resources

    task = load_task("flight_delay")
    latest = json.loads(
        (DataPaths.from_env().root / "serving" / "flight_delay" / "latest.json").read_text()
    )
    classifier = (
        bentoml.mlflow.load_model(bentoml.models.get(latest["model"]))
        .unwrap_python_model()
        .classifier
    )
    store = embedded_resources()["feast"].store()
    flights = pd.DataFrame(FLIGHTS[:batch]).rename(columns={"sched_dep": "sched_dep_ts"})
    flights["sched_dep_ts"] = pd.to_datetime(flights["sched_dep_ts"]).dt.tz_localize(
        "America/New_York"
    )
    lookup, total = [], []
    for i in range(rounds + 50):
        started = time.perf_counter()
        vector = online_vector(store, task.domain.request_frame(flights), task.spec, task.domain)
        looked_up = time.perf_counter()
        classifier.predict_proba(vector.features)
        done = time.perf_counter()
        if i >= 50:  # warm-up
            lookup.append((looked_up - started) * 1000)
            total.append((done - started) * 1000)
    return {
        "p50_ms": statistics.median(total),
        "p99_ms": float(np.percentile(total, 99)),
        "lookup_p50_ms": statistics.median(lookup),
        "predict_p50_ms": statistics.median(total) - statistics.median(lookup),
    }


def redis_copy(paths: DataPaths, url: str) -> None:
    """The same feature tables, materialized up to the same moment, into Redis: the service then
    reads the same registry file and its online features from Redis (FLIGHTLINE_REDIS_URL)."""
    import redis

    from pipelines.platform.lib.feature_store import (
        FeastLocation,
        apply_definitions,
        location_from_paths,
        materialize_up_to,
        open_store,
    )

    if redis.Redis.from_url(url).dbsize():
        sys.exit(f"{url} is not empty: pick an empty database index (--redis-url)")
    embedded = open_store(location_from_paths(paths))
    end = max(i[1] for v in embedded.list_feature_views() for i in v.materialization_intervals)
    scratch = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    location = FeastLocation(
        "flightline", str(scratch / "registry.db"), "", paths.lake, embedded.repo_path, url
    )
    store = open_store(location)
    apply_definitions(store, paths.lake)
    materialize_up_to(store, end)


def measure(bento: str, connections: int, seconds: int) -> dict:
    """wrk against `bentoml serve` of the Bento, then the in-process floor, on whatever online
    store the environment names."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            bento,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                if requests.get(f"{url}/readyz", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        single = wrk(f"{url}/predict", {"flight": FLIGHTS[0]}, connections, seconds)
        batch = wrk(f"{url}/predict_batch", {"flights": FLIGHTS[:100]}, connections, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "single": single,
        "batch": batch,
        "floor_single": floor(1, 1000),
        "floor_batch": floor(100, 200),
    }


def report(name: str, m: dict) -> None:
    for label, http, base, rows in (
        ("single row", m["single"], m["floor_single"], 1),
        ("batch of 100", m["batch"], m["floor_batch"], 100),
    ):
        print(
            f"  {name:<7}{label:<12} HTTP p50 {http['p50_ms']:6.2f} ms  p99 {http['p99_ms']:6.2f} ms  "
            f"{http['req_per_s']:8.1f} req/s ({http['req_per_s'] * rows:,.0f} flights/s, {http['non_2xx']} non-2xx)"
        )
        print(
            f"  {'':<7}{'':<12} floor p50 {base['p50_ms']:6.2f} ms  p99 {base['p99_ms']:6.2f} ms "
            f"(lookup {base['lookup_p50_ms']:.2f} + predict {base['predict_p50_ms']:.2f}); "
            f"ratio HTTP/floor p50 {http['p50_ms'] / base['p50_ms']:.2f}, p99 {http['p99_ms'] / base['p99_ms']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument(
        "--online-store",
        choices=("sqlite", "redis", "both"),
        default="sqlite",
        help="redis/both: copy the online features into Redis and serve from there too",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="an empty Redis database (flushed afterwards)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    os.environ.pop("FLIGHTLINE_REDIS_URL", None)  # the embedded store unless asked
    paths = DataPaths.from_env()
    latest = json.loads((paths.root / "serving" / "flight_delay" / "latest.json").read_text())
    stores = ["sqlite", "redis"] if args.online_store == "both" else [args.online_store]
    results = {}
    try:
        if "redis" in stores:
            redis_copy(paths, args.redis_url)
        for name in stores:
            if name == "redis":
                os.environ["FLIGHTLINE_REDIS_URL"] = args.redis_url
            results[name] = measure(latest["bento"], args.connections, args.seconds)
            os.environ.pop("FLIGHTLINE_REDIS_URL", None)
    finally:
        if "redis" in stores:
            import redis

            redis.Redis.from_url(args.redis_url).flushdb()
    print(
        f"\nbentoml serve {latest['bento']} (1 worker), wrk -c {args.connections} -d {args.seconds}s, loopback:"
    )
    for name, m in results.items():
        report(name, m)
    if len(results) == 2:
        for label in ("single", "batch"):
            r, q = results["redis"][label], results["sqlite"][label]
            print(
                f"  redis/sqlite {label:<6} p50 {r['p50_ms'] / q['p50_ms']:.2f}x  "
                f"p99 {r['p99_ms'] / q['p99_ms']:.2f}x"
            )


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    main()
