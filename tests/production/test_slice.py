"""The nine-day slice on the production profile: ingestion through promotion and the Bento on
PostgreSQL (Dagster, MLflow, Feast registry) and Redis (online store), then a served prediction
whose features come from Redis; Redis going down and coming back under the running service."""

import json
import sys
import time

import pandas as pd
import psycopg2
import pytest
import redis
from starlette.testclient import TestClient

from pipelines.platform.cli import run_succeeded
from pipelines.platform.lib.tracking import ModelRegistry
from tests.production.conftest import start_redis, stop_redis
from tests.serving.test_service import FLIGHT  # the same flight the embedded tests serve


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg2.connect(url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def test_slice_lives_in_postgres_redis_and_the_object_store(prod_built, profile, s3_server):
    paths, instance, results, _, seconds = prod_built
    assert run_succeeded(results), [r.success for r in results]
    print(f"nine-day slice on PostgreSQL + Redis: {seconds:.1f}s")

    # Dagster: the instance's runs and events are PostgreSQL rows.
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    stored = dict(_rows(profile.postgres_url, "select run_id, status from runs"))
    # (Other tests share this instance; test_faults leaves a run its PostgreSQL stop killed.)
    ours = {stored[r.run_id] for r in results}
    assert ours <= {"SUCCESS", "FAILURE"}, ours  # a refusing gate is an outcome: SUCCESS

    # MLflow: experiments and the registry in <db>_mlflow, with a champion.
    assert paths.mlflow_tracking_uri == profile.services.mlflow_tracking_uri
    registry = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
    assert registry.champion_version("flight_delay") is not None
    versions = _rows(paths.mlflow_tracking_uri, "select count(*) from model_versions")[0][0]
    assert versions >= 2  # both families registered

    # Feast: the SQL registry in <db>_feast; online values in the session's Redis database.
    views = _rows(
        profile.services.feast_registry_url,
        "select feature_view_name from feature_views where project_id = 'flightline'",
    )
    assert {"weather_hourly", "plane_attributes", "carrier_delay_stats"} <= {v for (v,) in views}
    assert redis.Redis.from_url(profile.redis_url).dbsize() > 0

    # Files: the lake (Feast's offline store read it there through DuckDB's httpfs)
    # and MLflow's artifacts are objects in the session's bucket.
    bucket = profile.object_store["FLIGHTLINE_S3_BUCKET"]
    assert paths.lake == f"s3://{bucket}/lake"
    keys = s3_server.keys("", bucket)
    assert any(k.startswith("lake/flight_delay/training_set/") for k in keys)
    assert any(k.startswith("mlflow/") and k.endswith("MLmodel") for k in keys)
    assert not [k for k in keys if ".tmp-" in k]  # no write left a temporary object

    # Nothing of the embedded stores was created on the side.
    for embedded in (
        "feast/registry.db",
        "feast/online_store.db",
        "mlflow/mlflow.db",
        "lake",
        "mlflow",
    ):
        assert not (paths.root / embedded).exists(), embedded


@pytest.fixture(scope="module")
def prod_client(prod_built):
    """The service, in-process through its ASGI app, started with the production variables.
    serving.service reads its model tag at import: a fresh import, put back afterwards."""
    paths, _, _, env, _ = prod_built
    latest = json.loads((paths.root / "serving" / "flight_delay" / "latest.json").read_text())
    saved = sys.modules.pop("serving.service", None)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            mp.setenv("FLIGHTLINE_BENTO_MODEL", latest["model"])
            # Explicit: an earlier in-process Bento build (another task's) leaves its arguments.
            mp.setenv("FLIGHTLINE_TASK", "flight_delay")
            from serving.service import PredictionService

            with TestClient(PredictionService.to_asgi()) as client:
                yield client
    finally:
        sys.modules.pop("serving.service", None)
        if saved is not None:
            sys.modules["serving.service"] = saved


def test_served_prediction_reads_features_from_redis(prod_client, prod_built):
    paths = prod_built[0]
    champion = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
    reply = prod_client.post("/predict", json={"flight": FLIGHT})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert 0 < body["delay_probability"] < 1
    assert body["model_version"] == champion.champion_version("flight_delay")
    # Values known from the online store (None would mean the store had nothing for the flight);
    # the store holds the whole day, so the weather reported after the prediction is withheld.
    ages = body["feature_age_seconds"]
    assert ages["plane_attributes"] is not None and ages["scheduled_traffic"] is not None
    assert body["point_in_time"] is False and "weather_hourly" in body["withheld_views"]
    ready = prod_client.post("/ready", json={})
    assert ready.status_code == 200 and ready.json()["ready"] is True
    # The service's prediction log is objects in the bucket, where monitoring (another pod on
    # a cluster) reads it.
    from pipelines.platform.lib.prediction_log import read_day

    day = FLIGHT["sched_dep"][:10]  # the scheduled local day: the log's partition
    deadline = time.monotonic() + 15
    logged = pd.DataFrame()
    while time.monotonic() < deadline and logged.empty:
        logged = read_day(paths.prediction_log_for("flight_delay"), day)[0]
        time.sleep(0.5)
    assert str(paths.prediction_log).startswith("s3://")
    assert body["model_version"] in set(logged["model_version"])


def test_redis_down_is_a_503_with_the_reason_and_recovers_by_itself(prod_client, profile):
    """Runs last in this module: Redis restarts empty (no persistence on the test server)."""
    try:
        stop_redis()
        for reply in (
            prod_client.post("/ready", json={}),
            prod_client.post("/predict", json={"flight": FLIGHT}),
        ):
            assert reply.status_code == 503, reply.text
            assert f"online store unreachable: {profile.redis_url}" in reply.json()["reason"]
    finally:
        start_redis()
    # Same service object, no restart: redis-py reconnects on the next command.
    ready = prod_client.post("/ready", json={})
    assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
    assert prod_client.post("/predict", json={"flight": FLIGHT}).status_code == 200
