"""The production profile against the real servers: PostgreSQL on 127.0.0.1:5432 and Redis on
127.0.0.1:6379 (started here when they are down, as `.ci/run` does), and an S3 API server process the tests start
(tests/s3_server.py). Unreachable servers fail these tests, never skip them.

The session gets its own databases (`flightline_test_<random>`, `_mlflow`, `_feast`) and an empty
Redis database index; both are dropped / flushed at the end."""

import contextlib
import os
import random
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import redis

from pipelines.platform.cli import materialize_window
from pipelines.platform.lib.services import (
    DATABASE_SUFFIXES,
    POSTGRES_ENV,
    REDIS_ENV,
    ProductionServices,
    provision,
)
from pipelines.platform.lib.settings import DataPaths
from pipelines.tasks.flight_delay.replay import replay_days
from tests.pipeline_fixture import END, MODEL_RUN_CONFIG, START

ROOT = Path(__file__).resolve().parents[2]
PG_SERVER = os.environ.get(
    "FLIGHTLINE_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432"
)
REDIS_SERVER = os.environ.get("FLIGHTLINE_TEST_REDIS", "redis://127.0.0.1:6379")


@dataclass(frozen=True)
class Profile:
    postgres_url: str
    redis_url: str
    redis_db: int
    object_store: dict[str, str]  # FLIGHTLINE_S3_* and the keys: a bucket of this session's own

    @property
    def services(self) -> ProductionServices:
        return ProductionServices(self.postgres_url, self.redis_url)

    @property
    def databases(self) -> list[str]:
        base = self.postgres_url.rsplit("/", 1)[1]
        return [base + suffix for suffix in DATABASE_SUFFIXES.values()]

    def env(self, data_root: Path) -> dict[str, str]:
        return {
            POSTGRES_ENV: self.postgres_url,
            REDIS_ENV: self.redis_url,
            "FLIGHTLINE_DATA_ROOT": str(data_root),
            **self.object_store,
        }


def admin_connection():
    conn = psycopg2.connect(f"{PG_SERVER}/postgres".replace("+psycopg2", ""), connect_timeout=5)
    conn.autocommit = True
    return conn


def _free_redis_db(client: redis.Redis) -> int:
    # Default Redis has 16 databases; 0 belongs to whoever runs `make run` on this machine.
    candidates = list(range(1, 16))
    random.shuffle(candidates)
    for db in candidates:
        if redis.Redis.from_url(f"{REDIS_SERVER}/{db}").dbsize() == 0:
            return db
    raise RuntimeError("no empty Redis database index (1-15) for the tests")


def start_postgres() -> None:
    cluster = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start"],
        check=False,
        capture_output=True,
    )
    wait_for(lambda: _pg_up(), "PostgreSQL to accept connections")


def stop_postgres() -> None:
    cluster = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "stop", "-m", "fast"],
        check=True,
        capture_output=True,
    )


def _pg_up() -> bool:
    try:
        admin_connection().close()
        return True
    except psycopg2.Error:
        return False


def stop_redis() -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"])
    wait_for(lambda: not _redis_up(), "Redis to stop")


def start_redis() -> None:
    if _redis_up():
        return
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=True,
    )
    wait_for(_redis_up, "Redis to answer")


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_SERVER, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def wait_for(condition, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"waited {seconds}s for {what}")


def _local(url: str) -> bool:
    return "@127.0.0.1" in url or "@localhost" in url or "//127.0.0.1" in url


def start_local_servers() -> None:
    """`make test` by itself has what `.ci/run` starts: this machine's PostgreSQL and Redis,
    started when the tests' URLs point here and find nothing (a remote server is its owner's)."""
    if _local(PG_SERVER) and not _pg_up() and shutil.which("pg_ctlcluster"):
        with contextlib.suppress(TimeoutError, OSError, IndexError):
            start_postgres()
    if _local(REDIS_SERVER) and not _redis_up() and shutil.which("redis-server"):
        with contextlib.suppress(TimeoutError, OSError, subprocess.CalledProcessError):
            start_redis()


@contextlib.contextmanager
def fresh_profile(s3_server):
    """Fresh databases, a Redis index and a bucket on the S3 server; gone afterwards."""
    start_local_servers()
    try:
        admin_connection().close()
    except psycopg2.Error as exc:
        pytest.fail(f"PostgreSQL at {PG_SERVER} is not reachable (nor could it be started): {exc}")
    try:
        redis_db = _free_redis_db(redis.Redis.from_url(REDIS_SERVER))
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_SERVER} is not reachable (nor could it be started): {exc}")
    name = f"flightline_test_{secrets.token_hex(4)}"
    bucket = s3_server.create_bucket()
    current = Profile(
        f"{PG_SERVER}/{name}",
        f"{REDIS_SERVER}/{redis_db}",
        redis_db,
        {**s3_server.env(), "FLIGHTLINE_S3_BUCKET": bucket},
    )
    provision(current.services)
    try:
        yield current
    finally:
        start_postgres()  # a fault test that failed midway must not leave the servers down
        start_redis()
        conn = admin_connection()
        with conn.cursor() as cur:
            for database in current.databases:
                assert database.startswith("flightline_test_")
                cur.execute(f'drop database if exists "{database}" with (force)')
        conn.close()
        redis.Redis.from_url(current.redis_url).flushdb()


@pytest.fixture(scope="session")
def profile(s3_server):
    """The production profile's servers for this session (tests/production's own)."""
    with fresh_profile(s3_server) as current:
        yield current


def postgres_instance(home: Path) -> dg.DagsterInstance:
    """A Dagster instance configured as `make setup` configures production: dagster.yaml plus
    dagster.production.yaml (FLIGHTLINE_POSTGRES_URL must be set)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        (ROOT / "dagster.yaml").read_text() + "\n" + (ROOT / "dagster.production.yaml").read_text()
    )
    return dg.DagsterInstance.from_config(str(home))


@pytest.fixture
def production_env(profile, tmp_path, monkeypatch):
    """The documented switch, for one test: the two variables (and a data root of its own)."""
    for name, value in profile.env(tmp_path / "data").items():
        monkeypatch.setenv(name, value)
    return profile


@pytest.fixture(scope="session")
def prod_built(profile, tmp_path_factory):
    """The nine-day slice, ingestion through promotion and the Bento, on PostgreSQL and Redis."""
    root = tmp_path_factory.mktemp("production")
    env = profile.env(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        paths = DataPaths.from_env()
        replay_days(
            paths.landing_for("flight_delay"), date.fromisoformat(START), date.fromisoformat(END)
        )
        instance = postgres_instance(root / "dagster_home")
        started = time.perf_counter()
        results = materialize_window(
            date.fromisoformat(START),
            date.fromisoformat(END),
            instance,
            run_config=MODEL_RUN_CONFIG,
        )
        seconds = time.perf_counter() - started
    try:
        yield paths, instance, results, env, seconds
    finally:
        instance.dispose()
