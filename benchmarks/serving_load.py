"""Load test of the prediction service at a fixed rate (open loop), side by side with Feast's own
feature server and the in-process floor, on the data `make run` built.

The client is an asyncio HTTP/1.1 client on keep-alive connections that sends each request at
its scheduled instant whether or not earlier ones have been answered (open loop, as wrk2 or
vegeta do), and measures latency from that instant, so a stall shows as queueing in every
request behind it. The service runs as `bentoml serve` of this checkout's service (1 worker)
on loopback. For one online store (SQLite, or Redis with the same features), in one run:

- single row `/predict` at `--rate` req/s, and batches of 100 at `--batch-rate`;
- lookup only: our `/features` and Feast's feature server (`FeatureStore.serve`, the server of
  `feast serve`) for the same FeatureService and entities, each at `--rate`;
- maximum throughput: closed loop, `--connections` requests always in flight;
- the floor: the same lookup and lookup + predict called in-process;
- the HTTP floor: a bare ASGI app on the same server stack (uvicorn, uvloop, httptools, 1 worker)
  that reads and parses each `/predict` body and answers a small JSON, under the same load: what
  any Python HTTP service pays here before it does any work;
- the prediction log afterwards: every answered row logged exactly once.

    make run && python benchmarks/serving_load.py                   # 200 req/s, 10 s, SQLite
    python benchmarks/serving_load.py --online-store both           # SQLite, then Redis
    python benchmarks/serving_load.py --rate 400 --seconds 20
"""

import argparse
import asyncio
import contextlib
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.platform.lib.settings import DataPaths

ROOT = Path(__file__).resolve().parents[1]
TASK = "flight_delay"
NEW_YORK = ZoneInfo("America/New_York")
ROUTES = [  # (carrier, tailnum, origin, dest, distance): flights of January 2013
    ("UA", "N14228", "EWR", "IAH", 1400.0),
    ("DL", "N3ASAA", "JFK", "ATL", 760.0),
    ("B6", "N516JB", "JFK", "BOS", 187.0),
    ("AA", "N3DUAA", "LGA", "ORD", 733.0),
]


class Flights:
    """A new flight for every request (number and departure minute), so that the prediction log
    can be checked for each answered request exactly once."""

    def __init__(self, day: str) -> None:
        self.day, self.count = day, 0

    def row(self) -> dict:
        """The same as the service hands it to the predictor (departure as a UTC datetime)."""
        flight = self.one()
        local = datetime.fromisoformat(flight.pop("sched_dep")).replace(tzinfo=NEW_YORK)
        return {**flight, "sched_dep_ts": local.astimezone(UTC)}

    def one(self) -> dict:
        i, self.count = self.count, self.count + 1
        carrier, tailnum, origin, dest, distance = ROUTES[i % len(ROUTES)]
        minute = 6 * 60 + (i // 9999) % (15 * 60)
        return {
            "carrier": carrier,
            "flight": i % 9999 + 1,
            "tailnum": tailnum,
            "origin": origin,
            "dest": dest,
            "sched_dep": f"{self.day}T{minute // 60:02d}:{minute % 60:02d}:00",
            "distance": distance,
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """HTTP/1.1 POSTs over a pool of keep-alive connections; little CPU per request, so the
    2 cores go to the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list = []  # (reader, writer, last used)

    async def _connection(self):
        now = time.monotonic()
        while self.idle:
            reader, writer, used = self.idle.pop()
            if now - used < 2.0:  # servers close keep-alive connections idle for 5 s
                return reader, writer
            writer.close()
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        reader, writer = await self._connection()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        payload = await reader.readexactly(length)
        self.idle.append((reader, writer, time.monotonic()))
        return status, payload

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


def _summary(latencies: list[float], statuses: list[int], elapsed: float, rows: int) -> dict:
    ms = np.array(latencies) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "req_per_s": len(ms) / elapsed,
        "rows_per_s": len(ms) * rows / elapsed,
        "non_2xx": sum(1 for s in statuses if not 200 <= s < 300),
        "answered_rows": sum(rows for s in statuses if s == 200),
        "elapsed_s": elapsed,
    }


@contextlib.contextmanager
def client_gc_paused():
    """No garbage collection in the load generator while it measures: once this process holds
    the in-process floor's model and stores (the SQLite line before the Redis one), a full
    collection stalls its event loop for ~280 ms, which would be counted as the service's latency."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def open_loop(port: int, path: str, bodies: list[bytes], rate: float, rows: int = 1) -> dict:
    """Each request at start + i/rate; latency from that instant (queueing included)."""
    with client_gc_paused():
        return await _open_loop(port, path, bodies, rate, rows)


async def _open_loop(port: int, path: str, bodies: list[bytes], rate: float, rows: int) -> dict:
    client, loop = Client(port), asyncio.get_running_loop()
    latencies, statuses = [0.0] * len(bodies), [0] * len(bodies)
    start = loop.time() + 0.05

    async def one(i: int) -> None:
        at = start + i / rate
        await asyncio.sleep(max(0.0, at - loop.time()))
        statuses[i], _ = await client.post(path, bodies[i])
        latencies[i] = loop.time() - at

    await asyncio.gather(*(one(i) for i in range(len(bodies))))
    elapsed = loop.time() - start
    client.close()
    return _summary(latencies, statuses, elapsed, rows)


async def closed_loop(port: int, path: str, body_of, connections: int, seconds: float) -> dict:
    """`connections` requests always in flight for `seconds`: the most the service answers."""
    with client_gc_paused():
        return await _closed_loop(port, path, body_of, connections, seconds)


async def _closed_loop(port: int, path: str, body_of, connections: int, seconds: float) -> dict:
    client, loop = Client(port), asyncio.get_running_loop()
    latencies, statuses = [], []
    end = loop.time() + seconds

    async def worker() -> None:
        while loop.time() < end:
            sent = loop.time()
            status, _ = await client.post(path, body_of())
            latencies.append(loop.time() - sent)
            statuses.append(status)

    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = loop.time() - started
    client.close()
    return _summary(latencies, statuses, elapsed, 1)


def cpu_seconds(process: subprocess.Popen) -> float:
    """CPU time the server (with its worker processes) has used: a cost per request that a
    noisy, shared machine distorts much less than latency."""
    import psutil

    root = psutil.Process(process.pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def timed_run(process: subprocess.Popen, coroutine) -> dict:
    before = cpu_seconds(process)
    result = asyncio.run(coroutine)
    requests_sent = result["req_per_s"] * result["elapsed_s"]
    result["cpu_ms_per_req"] = (cpu_seconds(process) - before) * 1000 / max(requests_sent, 1)
    return result


def _wait_ready(url: str, process: subprocess.Popen, path: str = "/readyz") -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited with {process.returncode} before it was ready ({url})")
        try:
            if requests.get(f"{url}{path}", timeout=5).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    sys.exit(f"server at {url} not ready within 180 s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def serve_ours(
    model_tag: str, log_root: Path, shadow: str | None = None
) -> tuple[subprocess.Popen, int]:
    """This checkout's service from source (what the Bento packs), one worker; its prediction
    log under `log_root` (a scratch folder), every row marked as benchmark traffic. `shadow`: a
    challenger's model tag, scored beside the champion on every request (rollout's shadow)."""
    port = _free_port()
    env = {
        **os.environ,
        "FLIGHTLINE_TASK": TASK,
        "FLIGHTLINE_BENTO_MODEL": model_tag,
        # Synthetic traffic: labelled as such, and logged outside the user's data root.
        "FLIGHTLINE_TRAFFIC_SOURCE": "benchmark",
        "FLIGHTLINE_PREDICTION_LOG": str(log_root),
    }
    if shadow:
        env |= {"FLIGHTLINE_CHALLENGER_MODEL": shadow, "FLIGHTLINE_ROLLOUT_STAGE": "shadow"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "serving.service:PredictionService",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_ready(f"http://127.0.0.1:{port}", process)
    return process, port


FEAST_SERVER = """
import sys
from pipelines.platform.lib.feature_store import location_from_paths, open_store
from pipelines.platform.lib.settings import DataPaths
store = open_store(location_from_paths(DataPaths.from_env()))
# Feast's defaults, except no worker recycling every 1000 requests (it would stall the run).
store.serve("127.0.0.1", int(sys.argv[1]), workers=1, max_requests=0, no_access_log=True)
"""


def serve_script(script: str, ready_path: str) -> tuple[subprocess.Popen, int]:
    """A server written as a Python script that takes its port as its argument, once ready."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_ready(f"http://127.0.0.1:{port}", process, ready_path)
    return process, port


# The HTTP floor: BentoML's server stack with nothing of ours on it.
HTTP_FLOOR_SERVER = """
import json, sys
import uvicorn

async def app(scope, receive, send):
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    payload = json.dumps({"fields": len(json.loads(body or b"{}"))}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            lifespan="off", access_log=False, log_level="warning")
"""


def feast_body(row: dict, service: str) -> bytes:
    """Feast's request for the same flight: the FeatureService and the task's entity keys."""
    from pipelines.platform.components.task import load_task

    keys, _ = load_task(TASK).domain.request_row(row)
    return json.dumps(
        {"feature_service": service, "entities": {k: [v] for k, v in keys.items()}}
    ).encode()


def floor(flights: Flights, rounds: int) -> dict:
    """Lookup, and lookup + predict, in-process: the service's code minus HTTP and BentoML."""
    from benchmarks.common import in_process_predictor

    predictor = in_process_predictor(TASK)
    lookup, total = [], []
    for i in range(rounds + 50):
        row = flights.row()
        started = time.perf_counter()
        predictor.lookup([row])
        looked_up = time.perf_counter()
        predictor.predict([row])
        done = time.perf_counter()
        if i >= 50:  # warm-up
            lookup.append((looked_up - started) * 1000)
            total.append((done - looked_up) * 1000)
    return {
        "lookup_p50_ms": statistics.median(lookup),
        "predict_p50_ms": statistics.median(total),
        "predict_p99_ms": float(np.percentile(total, 99)),
    }


def logged_rows(log_root: Path, before: set[Path]) -> tuple[int, int]:
    """Records in the log files the server wrote, and how many distinct flights they are."""
    records, keys = 0, set()
    for path in set(log_root.rglob("*.jsonl")) - before:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert record.get("source") == "benchmark", record.get("source")
            records += 1
            keys.add((record["request"]["flight"], record["request"]["sched_dep_ts"]))
    return records, len(keys)


def measure(args, model_tag: str, flights: Flights) -> dict:
    from pipelines.platform.components.task import load_task

    service = load_task(TASK).definition.features.feature_service
    # Synthetic traffic never lands in the user's prediction log (monitoring would judge it).
    scratch_log = Path(tempfile.mkdtemp(prefix="flightline-bench-log-"))
    log_root = scratch_log / TASK
    before: set[Path] = set()
    n = int(args.rate * args.seconds)

    def bodies(count: int, batch: int = 0) -> list[bytes]:
        if batch:
            return [
                json.dumps({"flights": [flights.one() for _ in range(batch)]}).encode()
                for _ in range(count)
            ]
        return [json.dumps({"flight": flights.one()}).encode() for _ in range(count)]

    result: dict = {}
    process, port = serve_ours(model_tag, scratch_log)
    try:
        # Every route warm before it is measured (the first calls of a route pay one-time costs:
        # a 250 ms stall at the start of /features queued ~50 requests behind it).
        result["warm"] = asyncio.run(open_loop(port, "/predict", bodies(200), 100))
        asyncio.run(open_loop(port, "/features", bodies(200), 100))
        result["single"] = timed_run(process, open_loop(port, "/predict", bodies(n), args.rate))
        batches = max(2, int(args.batch_rate * args.seconds))
        result["batch"] = timed_run(
            process,
            open_loop(port, "/predict_batch", bodies(batches, 100), args.batch_rate, rows=100),
        )
        result["lookup"] = timed_run(process, open_loop(port, "/features", bodies(n), args.rate))
        result["max"] = asyncio.run(
            closed_loop(
                port,
                "/predict",
                lambda: json.dumps({"flight": flights.one()}).encode(),
                args.connections,
                args.seconds,
            )
        )
    finally:
        _stop(process)  # the service drains its prediction log as it stops
    result["answered"] = sum(result[k]["answered_rows"] for k in ("warm", "single", "batch", "max"))
    result["logged"], result["distinct"] = logged_rows(log_root, before)

    if args.shadow:
        # The same load with a challenger in shadow: two models score every request.
        process, port = serve_ours(model_tag, scratch_log, shadow=args.shadow)
        try:
            warm = asyncio.run(open_loop(port, "/predict", bodies(200), 100))
            result["shadow"] = timed_run(process, open_loop(port, "/predict", bodies(n), args.rate))
        finally:
            _stop(process)
        result["logged_shadow"] = _logged_with_challenger(log_root)
        result["answered_shadow"] = warm["answered_rows"] + result["shadow"]["answered_rows"]
    process, port = serve_script(FEAST_SERVER, "/health")
    try:
        feast_bodies = [feast_body(flights.row(), service) for _ in range(n + 200)]
        asyncio.run(open_loop(port, "/get-online-features", feast_bodies[:200], 100))
        result["feast"] = timed_run(
            process, open_loop(port, "/get-online-features", feast_bodies[200:], args.rate)
        )
    finally:
        _stop(process)
    process, port = serve_script(HTTP_FLOOR_SERVER, "/")
    try:
        asyncio.run(open_loop(port, "/predict", bodies(200), 100))
        result["http_floor"] = timed_run(process, open_loop(port, "/predict", bodies(n), args.rate))
    finally:
        _stop(process)
    result["floor"] = floor(flights, args.floor_rounds)
    return result


def _logged_with_challenger(log_root: Path) -> int:
    """Rows of the prediction log that carry the challenger's score (every shadow answer)."""
    count = 0
    for path in log_root.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if json.loads(line).get("challenger_score") is not None:
                    count += 1
    return count


def redis_copy(paths: DataPaths, url: str) -> None:
    """The same feature tables, materialized up to the same moment, into Redis: the service then
    reads the same registry file and its online features from Redis (FLIGHTLINE_REDIS_URL)."""
    import redis

    from pipelines.platform.components.task import load_task
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
    task = load_task(TASK)
    apply_definitions(store, task.feast_objects(paths.lake), task.name)
    materialize_up_to(store, end)


def report(name: str, m: dict, args) -> None:
    def line(label: str, r: dict, rate: float) -> str:
        return (
            f"  {name:<7}{label:<14}{rate:6.0f} req/s: p50 {r['p50_ms']:7.2f} ms  p99 "
            f"{r['p99_ms']:7.2f} ms  max {r['max_ms']:7.1f} ms  held {r['req_per_s']:6.1f} req/s  "
            f"({r['rows_per_s']:,.0f} rows/s)  server CPU {r['cpu_ms_per_req']:.2f} ms/req  "
            f"non-2xx {r['non_2xx']}"
        )

    print(line("single row", m["single"], args.rate))
    print(line("batch of 100", m["batch"], args.batch_rate))
    if "shadow" in m:
        print(line("shadow, 2 models", m["shadow"], args.rate))
        print(
            f"  {name:<7}shadow / one model p99 {m['shadow']['p99_ms'] / m['single']['p99_ms']:.2f}"
            f"  (p99 {m['shadow']['p99_ms']:.2f} ms, target < 10 ms); rows logged with both scores "
            f"{m['logged_shadow']} of {m['answered_shadow']} answered"
        )
    print(line("lookup ours", m["lookup"], args.rate))
    print(line("lookup feast", m["feast"], args.rate))
    print(line("HTTP floor", m["http_floor"], args.rate))
    mx, f = m["max"], m["floor"]
    print(
        f"  {name:<7}max throughput {mx['req_per_s']:.1f} req/s (closed loop, {args.connections} "
        f"in flight): p50 {mx['p50_ms']:.2f} ms  p99 {mx['p99_ms']:.2f} ms  non-2xx {mx['non_2xx']}"
    )
    print(
        f"  {name:<7}floor (in-process): lookup p50 {f['lookup_p50_ms']:.2f} ms, "
        f"lookup + predict p50 {f['predict_p50_ms']:.2f} ms  p99 {f['predict_p99_ms']:.2f} ms"
    )
    print(
        f"  {name:<7}ratio lookup ours/feast p50 {m['lookup']['p50_ms'] / m['feast']['p50_ms']:.2f}"
        f"  p99 {m['lookup']['p99_ms'] / m['feast']['p99_ms']:.2f}  server CPU per request "
        f"{m['lookup']['cpu_ms_per_req'] / m['feast']['cpu_ms_per_req']:.2f} (target < 1); "
        f"predict HTTP/floor p50 {m['single']['p50_ms'] / f['predict_p50_ms']:.2f} (target <= 2)"
    )
    # What is ours: the single-row p50 above a bare HTTP round trip, against the in-process work.
    ours = m["single"]["p50_ms"] - m["http_floor"]["p50_ms"]
    print(
        f"  {name:<7}HTTP floor p50 {m['http_floor']['p50_ms']:.2f} ms; predict above it "
        f"{ours:.2f} ms p50 = {ours / f['predict_p50_ms']:.2f}x the in-process lookup + predict; "
        f"predict / (HTTP floor + in-process floor) p50 "
        f"{m['single']['p50_ms'] / (m['http_floor']['p50_ms'] + f['predict_p50_ms']):.2f}"
    )
    print(
        f"  {name:<7}prediction log: answered {m['answered']} rows, logged {m['logged']}, "
        f"distinct {m['distinct']} (each once: {m['answered'] == m['logged'] == m['distinct']})"
    )


def _other_model(champion: str) -> str:
    """The newest model in the BentoML store under the champion's name other than the champion
    (the other family's latest version); the champion itself if there is none."""
    import bentoml

    name = champion.split(":")[0]
    others = [m for m in bentoml.models.list(name) if str(m.tag) != champion]
    return str(max(others, key=lambda m: m.creation_time).tag) if others else champion


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="single rows per second")
    parser.add_argument("--batch-rate", type=float, default=5.0, help="batches of 100 per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=8, help="closed loop, in flight")
    parser.add_argument("--floor-rounds", type=int, default=1000)
    parser.add_argument("--day", default="2013-01-31", help="departure day of the flights sent")
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
    parser.add_argument(
        "--shadow",
        nargs="?",
        const="",
        default=None,
        help="also measure single rows with a challenger in shadow (a BentoML model tag; "
        "without one, the newest other model of the task in the store)",
    )
    args = parser.parse_args()
    os.environ.pop("FLIGHTLINE_REDIS_URL", None)  # the embedded store unless asked
    paths = DataPaths.from_env()
    latest = json.loads((paths.root / "serving" / TASK / "latest.json").read_text())
    if args.shadow == "":
        args.shadow = _other_model(latest["model"])
    stores = ["sqlite", "redis"] if args.online_store == "both" else [args.online_store]
    flights = Flights(args.day)
    results = {}
    print("figures per online store (latency from each request's scheduled send time):", flush=True)
    try:
        if "redis" in stores:
            redis_copy(paths, args.redis_url)
        for name in stores:
            if name == "redis":
                os.environ["FLIGHTLINE_REDIS_URL"] = args.redis_url
            results[name] = measure(args, latest["model"], flights)
            os.environ.pop("FLIGHTLINE_REDIS_URL", None)
            print(  # each store as soon as it is measured
                f"\nbentoml serve of this checkout (model {latest['model']}, 1 worker) and "
                f"Feast's feature server, open loop {args.seconds:g} s per line, loopback, "
                f"load average {os.getloadavg()[0]:.1f}:",
                flush=True,
            )
            report(name, results[name], args)
            sys.stdout.flush()
    finally:
        if "redis" in stores:
            import redis

            redis.Redis.from_url(args.redis_url).flushdb()


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    main()
