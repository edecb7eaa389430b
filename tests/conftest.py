"""Shared fixtures: every test gets its own data root, so nothing touches ./data."""

import os
import subprocess
import tempfile
import time

# BentoML fixes its store location when first imported: one throwaway store for the session.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="flightline-bentoml-")
# One worker per `bentoml serve` in tests (each loads a model and a store: on two cores a second
# one doubles every start); the restart test asks for the default two itself.
os.environ.setdefault("FLIGHTLINE_SERVING_WORKERS", "1")

from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.sqlite_event_log import embedded_overrides
from pipelines.tasks.flight_delay.replay import replay_days
from pipelines.tasks.flight_delay.source import day_key, read_table


@pytest.fixture
def data_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataPaths:
    monkeypatch.setenv("FLIGHTLINE_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("FLIGHTLINE_LAKE_ROOT", raising=False)
    monkeypatch.delenv("FLIGHTLINE_LANDING_DIR", raising=False)
    return DataPaths.from_env()


@pytest.fixture
def instance(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), overrides=embedded_overrides(home)) as inst:
        yield inst


@pytest.fixture
def replay(data_paths: DataPaths):
    def _replay(start: str, end: str):
        return replay_days(
            data_paths.landing_for("flight_delay"),
            date.fromisoformat(start),
            date.fromisoformat(end),
        )

    return _replay


def source_day(table: str, day: str) -> pd.DataFrame:
    frame = read_table(table)
    return frame[day_key(frame) == day].reset_index(drop=True).copy()


K8S_BUILD_ERROR = pytest.StashKey[str]()
# Shared set-ups that materialize real data run inside the first test that uses them, under its
# timeout (pyproject: 600 s): tests using them get this much more (on a busy 2-core machine the
# nine-day pipeline with training takes several minutes). A test's own timeout mark wins.
SET_UP_SECONDS = {
    "built": 1200,
    "prod_built": 1200,
    "toy_built": 900,
    "k8s_cluster": 300,
    "k8s_platform": 1200,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    default = float(config.getini("timeout") or 0)
    for item in items:
        names = getattr(item, "fixturenames", ())
        extra = sum(seconds for name, seconds in SET_UP_SECONDS.items() if name in names)
        if default and extra and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(default + extra))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The Kubernetes tests' control plane is built here when it is not cached yet (once, ~6-8
    min on 2 cores, then cached in ~/.cache/flightline): after collection, before any test's own
    timeout starts, so that `make test` on a fresh clone needs nothing built in advance."""
    if session.config.option.collectonly or not any(
        "k8s_cluster" in getattr(item, "fixturenames", ()) for item in session.items
    ):
        return
    from tests.infra import cluster

    if cluster.binaries_ready():
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the build's progress, live
        print(
            f"\nbuilding the local Kubernetes control plane into {cluster.BIN} (once)", flush=True
        )
        started = time.monotonic()
        done = subprocess.run(["bash", str(cluster.PROJECT_ROOT / "infra/local-cluster/build.sh")])
        print(f"control-plane build: exit {done.returncode} in {time.monotonic() - started:.0f}s")
    if done.returncode != 0 or not cluster.binaries_ready():
        session.config.stash[K8S_BUILD_ERROR] = (
            f"infra/local-cluster/build.sh exited with {done.returncode} before the tests "
            f"started (its output is above them); {cluster.BIN} lacks binaries"
        )


def k8s_build_error(config: pytest.Config) -> str | None:
    """Why the control plane could not be built before the tests, if it could not."""
    return config.stash.get(K8S_BUILD_ERROR, None)


from tests.pipeline_fixture import built  # noqa: E402, F401  (session fixture: e2e and serving)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API server process on loopback for the session (tests/s3_server.py)."""
    from tests import s3_server as server

    started = server.start(tmp_path_factory.mktemp("s3") / "moto_server.log")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def object_store(s3_server, monkeypatch):
    """The production profile's object store for one test: its own bucket, the relay restored."""
    if not s3_server.relay.up:
        s3_server.relay.restore()
    bucket = s3_server.create_bucket()
    env = {**s3_server.env(), "FLIGHTLINE_S3_BUCKET": bucket}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield s3_server, bucket
    if not s3_server.relay.up:
        s3_server.relay.restore()
