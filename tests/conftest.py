"""Shared fixtures: every test gets its own data root, so nothing touches ./data."""

import os
import tempfile

# BentoML fixes its store location when first imported: one throwaway store for the session.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="flightline-bentoml-")

from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pipelines.platform.lib.settings import DataPaths
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
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def replay(data_paths: DataPaths):
    def _replay(start: str, end: str):
        return replay_days(
            data_paths.landing / "flight_delay", date.fromisoformat(start), date.fromisoformat(end)
        )

    return _replay


def source_day(table: str, day: str) -> pd.DataFrame:
    frame = read_table(table)
    return frame[day_key(frame) == day].reset_index(drop=True).copy()


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
