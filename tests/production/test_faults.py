"""Faults on the production profile: PostgreSQL stopped under a running run, and wrong
credentials, which must fail at start-up with the URL named (password masked)."""

import re
import threading
import time

import dagster as dg
import pandas as pd
import psycopg2
import pytest

from pipelines.platform.cli import main, materialize_window
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.services import ServiceUnavailable, check_services
from pipelines.platform.lib.tracking import ModelRegistry
from pipelines.platform.resources_config import embedded_resources
from tests.pipeline_fixture import DAYS
from tests.production.conftest import start_postgres, stop_postgres

RERUN = DAYS[-2:]  # the last two days again: ingestion through the online store


def _partitioned_assets() -> set[str]:
    from pipelines.definitions import defs

    graph = defs().resolve_asset_graph()
    return {
        k.to_user_string() for k in graph.materializable_asset_keys if graph.get(k).partitions_def
    }


def _state(paths, profile) -> dict:
    lake = Lake(paths.lake)
    registry = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
    feast_db = profile.services.feast_registry_url.replace("+psycopg2", "")
    with psycopg2.connect(feast_db) as conn, conn.cursor() as cur:
        cur.execute("select feature_view_name, count(*) from feature_views group by 1")
        views = dict(cur.fetchall())
    return {
        "rows": {
            table: len(lake.read_partitions(f"flight_delay/{table}", RERUN))
            for table in ("raw_flights", "raw_weather", "weather_features")
        },
        "views": views,
        "champion": registry.champion_version("flight_delay"),
        "versions": len(registry.client.search_model_versions("name='flight_delay'")),
    }


def _steps_started(instance, known: set[str]) -> bool:
    new = [r.run_id for r in instance.get_runs() if r.run_id not in known]
    return any(instance.all_logs(i, of_type=dg.DagsterEventType.STEP_START) for i in new)


def test_postgres_stopped_mid_run_fails_clearly_and_a_rerun_loses_nothing(prod_built, profile):
    paths, instance, _, env, _ = prod_built
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        only = _partitioned_assets()
        before = _state(paths, profile)
        start, end = (pd.Timestamp(d).date() for d in (RERUN[0], RERUN[-1]))
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["results"] = materialize_window(start, end, instance, only=only)
            except Exception as exc:  # the event log write that cannot reach PostgreSQL
                outcome["error"] = exc

        known = {r.run_id for r in instance.get_runs()}
        worker = threading.Thread(target=run)
        worker.start()
        try:
            # Inside the steps: a step has started (not a fixed sleep, which a busy machine
            # can outlast before the run even begins, or cut short).
            deadline = time.monotonic() + 300
            while not _steps_started(instance, known):
                assert time.monotonic() < deadline, "no step of the run started in 300 s"
                time.sleep(0.1)
            stop_postgres()
            worker.join(timeout=600)
        finally:
            start_postgres()
        assert not worker.is_alive()
        if "error" in outcome:
            message = f"{type(outcome['error']).__name__}: {outcome['error']}"
        else:
            [result] = outcome["results"]
            assert not result.success, "the run did not notice PostgreSQL going away"
            failures = [e for e in result.all_events if e.is_failure]
            message = " ".join(str(e.event_specific_data.error.message) for e in failures)
        assert "connect" in message.lower() or "server closed" in message.lower(), message

        # Re-run the same days: succeeds, and leaves exactly what the first run left.
        [rerun] = materialize_window(start, end, instance, only=only)
        assert rerun.success
        assert _state(paths, profile) == before
        materialized = [
            e for e in rerun.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        ]
        assert len({(e.asset_key, e.partition) for e in materialized}) == len(materialized)


def test_wrong_credentials_fail_at_start_up_naming_the_url(profile, monkeypatch, capsys):
    wrong_password = profile.postgres_url.replace("postgres@", "flightline_nobody:s3cret@")
    monkeypatch.setenv("FLIGHTLINE_POSTGRES_URL", wrong_password)
    monkeypatch.setenv("FLIGHTLINE_REDIS_URL", profile.redis_url)
    with pytest.raises(ServiceUnavailable) as caught:
        check_services()
    assert "flightline_nobody:***@" in str(caught.value) and "s3cret" not in str(caught.value)
    assert 'role "flightline_nobody" does not exist' in str(caught.value)

    # `flightline run` stops before replaying anything, with the reason.
    assert main(["run", "--start", "2013-01-01", "--end", "2013-01-01"]) == 2
    assert "refused the connection" in capsys.readouterr().err

    # A database that does not exist, and a bare postgresql:// (the psycopg 3 trap).
    monkeypatch.setenv("FLIGHTLINE_POSTGRES_URL", profile.postgres_url + "_missing")
    with pytest.raises(ServiceUnavailable, match="does not exist"):
        check_services()
    monkeypatch.setenv(
        "FLIGHTLINE_POSTGRES_URL", profile.postgres_url.replace("postgresql+psycopg2", "postgresql")
    )
    with pytest.raises(ServiceUnavailable, match="use postgresql\\+psycopg2"):
        check_services()

    # Redis that does not answer.
    monkeypatch.setenv("FLIGHTLINE_POSTGRES_URL", profile.postgres_url)
    monkeypatch.setenv("FLIGHTLINE_REDIS_URL", "redis://127.0.0.1:6399/0")
    with pytest.raises(
        ServiceUnavailable, match=re.escape("online store unreachable: redis://127.0.0.1:6399")
    ):
        check_services()


def test_a_run_with_wrong_credentials_fails_at_resource_set_up(profile, tmp_path, monkeypatch):
    monkeypatch.setenv("FLIGHTLINE_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv(
        "FLIGHTLINE_POSTGRES_URL", profile.postgres_url.replace("postgres@", "nobody:pw@")
    )
    monkeypatch.delenv("FLIGHTLINE_REDIS_URL", raising=False)

    @dg.asset(required_resource_keys={"feast"})
    def needs_feast(context) -> None:
        raise AssertionError("must not run: the resource fails first")

    result = dg.materialize(
        [needs_feast], resources={"feast": embedded_resources()["feast"]}, raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_failure]
    # Dagster reports the resource that failed, caused by our error naming the URL.
    chain = failure.event_specific_data.error.to_string()
    assert "ResourceDefinition feast" in chain and "nobody:***@" in chain, chain
