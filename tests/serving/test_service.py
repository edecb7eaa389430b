"""The prediction service on the nine-day pipeline's champion: in-process through its ASGI app,
and as a real `bentoml serve` process answering HTTP on loopback."""

import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
import requests
from starlette.testclient import TestClient

from pipelines.platform.cli import materialize_window
from pipelines.platform.lib.prediction_log import read_day
from tests.e2e.conftest import END, START
from tests.serving.bento_process import bento_server

ROOT = Path(__file__).resolve().parents[2]
FLIGHT = {
    "carrier": "UA",
    "flight": 1545,
    "tailnum": "N14228",
    "origin": "EWR",
    "dest": "IAH",
    "sched_dep": "2013-01-09T17:00:00",
    "distance": 1400,
}


@pytest.fixture(scope="module")
def packaged(built):
    paths, instance, _ = built
    latest = json.loads((paths.root / "serving" / "flight_delay" / "latest.json").read_text())
    os.environ["FLIGHTLINE_BENTO_MODEL"] = latest["model"]
    return paths, instance, latest


@pytest.fixture(scope="module")
def client(packaged):
    os.environ["FLIGHTLINE_TASK"] = "flight_delay"
    from serving.service import PredictionService

    with TestClient(PredictionService.to_asgi()) as test_client:
        # The door's table of this very service: a Bento build earlier in the session may have
        # imported serving.service again, so the module under that name can be another copy.
        test_client.door_answers = PredictionService.inner.__init__.__globals__["DOOR_ANSWERS"]
        yield test_client


def test_bento_pins_the_champion_and_is_rebuilt_only_when_it_changes(packaged):
    _, instance, latest = packaged
    import bentoml

    bento = bentoml.get(latest["bento"])
    assert bento.info.labels["model_tag"] == latest["model"]
    assert [str(m.tag) for m in bento.info.all_models] == [latest["model"]]
    assert bento.info.args["model_tag"] == latest["model"]  # pinned inside the Bento

    def package() -> dict:
        results = materialize_window(
            date.fromisoformat(START), date.fromisoformat(END), instance, only={"bento"}
        )
        [materialization] = results[-1].asset_materializations_for_node("flight_delay__bento")
        return {k: v.value for k, v in materialization.metadata.items()}

    # Other tests may have moved @champion since the pipeline ran: package whatever it is now,
    # then again with nothing changed.
    first, second = package(), package()
    assert second["rebuilt"] is False and second["model_imported"] is False
    assert second["bento_tag"] == first["bento_tag"]
    assert second["mlflow_model_version"] == first["mlflow_model_version"]


def test_a_second_build_in_one_process_carries_its_own_model_not_the_first_builds(client, packaged):
    """BentoML imports the service only once per process: a build of another model after the
    service module was imported (here by the client) must still declare that other model."""
    import bentoml

    from pipelines.platform.lib.packaging import build_bento, import_version
    from pipelines.platform.lib.tracking import ModelRegistry

    paths, _, latest = packaged
    registry = ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root)
    champion = bentoml.models.get(latest["model"]).info.labels["mlflow_version"]
    versions = registry.client.search_model_versions("name='flight_delay'")
    other = next(v for v in versions if v.version != champion)
    model, _ = import_version(registry, "flight_delay", other)
    assert str(model.tag) != latest["model"]
    from serving import service as served_before

    assert latest["model"] == served_before.MODEL_TAG
    bento = build_bento("flight_delay", str(model.tag), {})
    try:
        assert [str(m.tag) for m in bento.info.all_models] == [str(model.tag)]
        assert bento.info.labels["model_tag"] == str(model.tag)
    finally:
        bentoml.bentos.delete(str(bento.tag))
    # The module others imported before (the client's service) is the one found afterwards.
    from serving import service as served_after

    assert served_after is served_before and latest["model"] == served_after.MODEL_TAG


def test_predicts_one_flight_with_model_version_and_feature_ages(client, packaged):
    reply = client.post("/predict", json={"flight": FLIGHT})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert 0 < body["delay_probability"] < 1
    assert body["model_name"] == "flight_delay" and body["model_version"].isdigit()
    assert {"weather_hourly", "plane_attributes", "carrier_delay_stats"} <= set(
        body["feature_age_seconds"]
    )
    assert body["unknown_tailnum"] is False
    # Predicted at 16:00 on the 9th while the store holds the whole day: the weather reported
    # after 16:00 is withheld (served as missing) and the answer says it is not point-in-time.
    assert body["point_in_time"] is False and "weather_hourly" in body["withheld_views"]
    assert body["feature_age_seconds"]["weather_hourly"] is None


def test_the_door_answers_exactly_what_bentoml_would(client):
    """The prediction routes are answered at the door from the body it validated; with the door's
    answers taken away, BentoML's own routing answers the same requests with the same JSON."""
    answers = client.door_answers  # the guard holds this very table
    assert set(answers) == {"/predict", "/predict_batch", "/features"}
    calls = [
        ("/predict", {"flight": FLIGHT}),
        ("/predict_batch", {"flights": [FLIGHT, {**FLIGHT, "tailnum": "NOPE1"}]}),
        ("/features", {"flight": FLIGHT}),
    ]
    saved, answered_at_door = dict(answers), []
    for route, answer in saved.items():
        answers[route] = lambda body, a=answer, r=route: (answered_at_door.append(r), a(body))[1]
    try:
        at_the_door = [client.post(path, json=body) for path, body in calls]
        assert answered_at_door == [path for path, _ in calls]
        answers.clear()
        by_bentoml = [client.post(path, json=body) for path, body in calls]
        assert len(answered_at_door) == len(calls)  # none of these at the door
    finally:
        answers.clear()
        answers.update(saved)
    for door, framework in zip(at_the_door, by_bentoml, strict=True):
        assert door.status_code == framework.status_code == 200, framework.text
        assert door.headers["content-type"] == framework.headers["content-type"]
        assert door.json() == framework.json()


def test_batch_and_unknown_tailnum(client):
    flights = [FLIGHT, {**FLIGHT, "tailnum": "NOPE1"}, {**FLIGHT, "tailnum": None}]
    reply = client.post("/predict_batch", json={"flights": flights})
    assert reply.status_code == 200, reply.text
    assert [p["unknown_tailnum"] for p in reply.json()] == [False, True, True]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"carrier": "ZZ"}, "carrier"),
        ({"dest": "XXX"}, "dest"),
        ({"origin": "BOS"}, "origin"),
        ({"sched_dep": "tomorrow"}, "sched_dep"),
        ({"distance": "far"}, "distance"),
        ({"flight": None}, "flight"),
        ({"dep_delay": 12}, "dep_delay"),  # known only after departure: refused, not ignored
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(client, change, field):
    reply = client.post("/predict", json={"flight": {**FLIGHT, **change}})
    assert reply.status_code == 400
    assert any(field in detail["loc"] for detail in reply.json()["detail"]), reply.text


def test_missing_field_and_oversized_batch_are_refused(client):
    reply = client.post(
        "/predict", json={"flight": {k: v for k, v in FLIGHT.items() if k != "dest"}}
    )
    assert reply.status_code == 400 and reply.json()["detail"][0]["loc"] == ["flight", "dest"]
    reply = client.post("/predict_batch", json={"flights": [FLIGHT] * 1001})
    assert reply.status_code == 400 and "at most 1000" in reply.text


def _shaped(reply, status: int) -> list[dict]:
    """Every 4xx has one shape: {"detail": [{"loc", "msg", "type", "batch_index"}]}."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    detail = reply.json()["detail"]
    assert isinstance(detail, list) and detail
    for item in detail:
        assert {"loc", "msg", "type", "batch_index"} <= set(item), item
        assert isinstance(item["loc"], list) and item["loc"] and isinstance(item["msg"], str)
    return detail


@pytest.mark.parametrize(
    ("change", "loc", "words"),
    [
        ({"distance": "1990"}, ["flight", "distance"], "valid number"),  # no coercion
        ({"flight": True}, ["flight", "flight"], "valid integer"),
        ({"flight": "1545"}, ["flight", "flight"], "valid integer"),
        ({"sched_dep": "1900-01-09T17:00:00"}, ["flight", "sched_dep"], "serving window"),
        ({"sched_dep": "2099-01-09T17:00:00"}, ["flight", "sched_dep"], "serving window"),
        ({"sched_dep": "2013-03-10T02:30:00"}, ["flight", "sched_dep"], "DST"),  # gap
        ({"sched_dep": "2013-11-03T01:30:00"}, ["flight", "sched_dep"], "DST"),  # overlap
    ],
)
def test_strict_validation_names_the_field(client, change, loc, words):
    [item] = _shaped(client.post("/predict", json={"flight": {**FLIGHT, **change}}), 400)
    assert item["loc"] == loc and words in item["msg"] and item["batch_index"] is None


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_clearly(client, number):
    body = json.dumps({"flight": FLIGHT}).replace('"distance": 1400', f'"distance": {number}')
    reply = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    [item] = _shaped(reply, 400)
    assert item["loc"] == ["flight", "distance"] and "finite" in item["msg"]


def test_extra_fields_are_refused_at_every_level(client):
    [item] = _shaped(client.post("/predict", json={"flight": FLIGHT, "debug": True}), 400)
    assert item["loc"] == ["debug"]
    [item] = _shaped(client.post("/predict_batch", json={"flights": [FLIGHT], "x": 1}), 400)
    assert item["loc"] == ["x"]
    reply = client.post("/predict_batch", json={"flights": [FLIGHT, {**FLIGHT, "dep_delay": 3}]})
    [item] = _shaped(reply, 400)
    assert item["loc"] == ["flights", 1, "dep_delay"] and item["batch_index"] == 1


def test_batch_errors_carry_the_batch_index(client):
    flights = [FLIGHT, {**FLIGHT, "dest": "XXX"}, {**FLIGHT, "distance": "far"}]
    detail = _shaped(client.post("/predict_batch", json={"flights": flights}), 400)
    assert [(d["loc"], d["batch_index"]) for d in detail] == [
        (["flights", 1, "dest"], 1),
        (["flights", 2, "distance"], 2),
    ]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded", None],
)
def test_unsupported_content_types_are_a_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    reply = client.post("/predict", content=json.dumps({"flight": FLIGHT}), headers=headers)
    [item] = _shaped(reply, 415)
    assert item["loc"] == ["header", "content-type"]
    # multipart without a boundary: refused at the door, never a 500 from the framework
    reply = client.post("/predict_batch", content=b"--x", headers=headers)
    assert reply.status_code == 415


def test_oversized_bodies_are_a_413_before_parsing(client):
    big = json.dumps({"flights": [FLIGHT] * 20_000})  # ~3 MB, over the 1 MB default
    reply = client.post("/predict_batch", content=big, headers={"Content-Type": "application/json"})
    [item] = _shaped(reply, 413)
    assert item["loc"] == ["body"]

    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(30):
            yield b" " * 100_000

    reply = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    _shaped(reply, 413)


def test_malformed_json_is_a_400_in_the_same_shape(client):
    for body in (b"{not json", b"", b"[]", b"null"):
        reply = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert all(item["loc"] for item in _shaped(reply, 400))


def test_refused_requests_write_nothing_to_the_prediction_log(client, packaged):
    paths, _, _ = packaged
    root = paths.prediction_log / "flight_delay"
    days_before = {p.name for p in root.iterdir()} if root.exists() else set()
    refused = [
        {"flight": {**FLIGHT, "flight": 7001, "distance": "1990"}},
        {"flight": {**FLIGHT, "flight": 7002, "sched_dep": "1900-01-09T17:00:00"}},
        {"flight": {**FLIGHT, "flight": 7003, "sched_dep": "2099-01-09T17:00:00"}},
        {"flight": {**FLIGHT, "flight": 7004}, "extra": 1},
        {"flight": {**FLIGHT, "flight": 7005, "sched_dep": "2013-01-10T17:00:00", "x": 1}},
    ]
    for body in refused:
        assert client.post("/predict", json=body).status_code == 400
    batch = {"flights": [{**FLIGHT, "flight": 7006}, {**FLIGHT, "flight": 7007, "dest": "XXX"}]}
    assert client.post("/predict_batch", json=batch).status_code == 400
    text = json.dumps({"flight": {**FLIGHT, "flight": 7008}})
    assert (
        client.post("/predict", content=text, headers={"Content-Type": "text/plain"}).status_code
        == 415
    )
    # An accepted request after them: once it is logged, the refused ones would have been too.
    assert client.post("/predict", json={"flight": {**FLIGHT, "flight": 7009}}).status_code == 200
    deadline = time.monotonic() + 60  # the log is written behind the answer
    while time.monotonic() < deadline:
        logged, _ = read_day(root, "2013-01-09")
        if len(logged) and (logged["request.flight"] == 7009).any():
            break
        time.sleep(0.1)
    assert (logged["request.flight"] == 7009).sum() == 1
    assert not logged["request.flight"].between(7001, 7008).any()
    assert {p.name for p in root.iterdir()} - days_before <= {"2013-01-09"}


def test_readiness_and_prediction_log(client, packaged):
    paths, _, _ = packaged
    assert client.post("/ready", json={}).json()["ready"] is True
    client.post("/predict", json={"flight": {**FLIGHT, "flight": 4242}})
    deadline = time.monotonic() + 60  # the log is written behind the answer
    while time.monotonic() < deadline:
        logged, torn = read_day(paths.prediction_log / "flight_delay", "2013-01-09")
        if len(logged) and (logged["request.flight"] == 4242).any():
            break
        time.sleep(0.1)
    row = logged[logged["request.flight"] == 4242].iloc[0]
    assert torn == 0 and row["model_version"].isdigit() and row["latency_ms"] > 0
    assert "features.weather_temp" in logged.columns

    # The daily asset monitoring reads: what was served that day, with a summary in metadata.
    _, instance, _ = packaged
    results = materialize_window(
        date(2013, 1, 9), date(2013, 1, 9), instance, only={"prediction_log"}
    )
    [materialization] = results[-1].asset_materializations_for_node("flight_delay__prediction_log")
    assert materialization.partition == "2013-01-09"
    assert materialization.metadata["predictions"].value >= 1
    assert materialization.metadata["latency_ms_p50"].value > 0


@contextmanager
def bentoml_serve(latest: dict, log: Path | None = None, **env: str):
    """The served Bento's URL (tests/serving/bento_process.py)."""
    with bento_server(latest, log, **env) as (_, url, _):
        yield url


def test_real_bentoml_serve_answers_http_on_loopback(packaged):
    _, _, latest = packaged
    with bentoml_serve(latest) as url:
        reply = requests.post(f"{url}/predict", json={"flight": FLIGHT}, timeout=10)
        assert reply.status_code == 200 and 0 < reply.json()["delay_probability"] < 1
        bad = requests.post(
            f"{url}/predict", json={"flight": {**FLIGHT, "carrier": "ZZ"}}, timeout=10
        )
        assert bad.status_code == 400 and "carrier" in bad.text
        assert bad.json()["detail"][0]["loc"] == ["flight", "carrier"]
        for content_type in ("multipart/form-data", "text/plain"):  # no boundary: not a 500
            refused = requests.post(
                f"{url}/predict",
                data=b"--x",
                headers={"Content-Type": content_type},
                timeout=10,
            )
            assert refused.status_code == 415, refused.text
        big = requests.post(
            f"{url}/predict_batch",
            data=json.dumps({"flights": [FLIGHT] * 20_000}),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert big.status_code == 413 and big.json()["detail"][0]["loc"] == ["body"]
        assert requests.get(f"{url}/docs.json", timeout=10).json()["paths"]["/predict"]
        ready = requests.post(f"{url}/ready", json={}, timeout=10).json()
        assert ready["ready"] and ready["model"].endswith(f"v{reply.json()['model_version']}")


def test_a_stopped_service_has_logged_every_answer_it_gave(packaged):
    """SIGTERM drains the log: with the writer's periodic flush an hour away, only the
    shutdown drain can write these records (BentoML's worker skips atexit hooks)."""
    paths, _, latest = packaged
    root = paths.prediction_log / "flight_delay"
    answered = set()
    with bentoml_serve(latest, FLIGHTLINE_PREDICTION_LOG_FLUSH_S="3600") as url:
        for number in range(8100, 8140):
            body = {"flight": {**FLIGHT, "flight": number}}
            if requests.post(f"{url}/predict", json=body, timeout=10).status_code == 200:
                answered.add(number)
    logged, torn = read_day(root, "2013-01-09")
    ours = logged[logged["request.flight"].between(8100, 8139)]
    assert len(answered) == 40 and torn == 0
    assert sorted(ours["request.flight"]) == sorted(answered)


def test_feature_store_unavailable_is_a_503_with_the_reason(packaged, tmp_path):
    _, _, latest = packaged
    with bentoml_serve(latest, FLIGHTLINE_DATA_ROOT=str(tmp_path / "no-data")) as url:
        reply = requests.post(f"{url}/predict", json={"flight": FLIGHT}, timeout=10)
        assert reply.status_code == 503, reply.text
        assert "feature" in reply.text.lower()
        ready = requests.post(f"{url}/ready", json={}, timeout=10)
        assert ready.status_code == 503 and "not ready" in ready.text


def test_skew_check_passes_on_the_real_path(packaged):
    _, instance, _ = packaged
    import dagster as dg

    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["flight_delay", "bento"]), "bento_feature_skew")]
    )
    evaluation = next(iter(record.values())).event.dagster_event.event_specific_data
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["examples_compared"].value > 0


def test_skew_check_names_a_feature_computed_differently_online(packaged):
    from dataclasses import replace

    import pandas as pd

    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.skew import feature_skew
    from pipelines.platform.resources_config import embedded_resources
    from pipelines.tasks.flight_delay.domain import request_row

    task = load_task("flight_delay")
    paths, _, _ = packaged
    flights = Lake(paths.lake).read("flight_delay/flight_timeline", END).head(50)

    def off_by_one_hour(flight: dict):  # the online path's per-row request features
        keys, features = request_row(flight)
        return keys, {**features, "sched_dep_hour": features["sched_dep_hour"] + 1}

    as_of = pd.Timestamp(END, tz="America/New_York") + pd.Timedelta(days=1)
    store = embedded_resources()["feast"].store()
    assert feature_skew(store, task.spec, task.domain, flights, as_of.tz_convert("UTC"))[0] == {}
    skewed = replace(task.domain, request_row=off_by_one_hour)
    differing, compared = feature_skew(
        store, task.spec, task.domain, flights, as_of.tz_convert("UTC"), online_domain=skewed
    )
    assert differing == {"sched_dep_hour": compared}


def test_pushed_events_make_operational_features_fresh(packaged):
    """A day that is landed but not yet materialized: pushing its departures and landings in
    time order makes the online features of its flights hours fresher."""
    import pandas as pd

    from pipelines.platform.cli import main as cli_main
    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.online import feature_age_seconds, online_vector
    from pipelines.platform.resources_config import embedded_resources
    from pipelines.tasks.flight_delay.replay import replay_days

    task = load_task("flight_delay")
    paths, _, _ = packaged
    replay_days(paths.landing_for("flight_delay"), date(2013, 1, 10), date(2013, 1, 10))
    store = embedded_resources()["feast"].store()
    flights = Lake(paths.lake).read(
        "flight_delay/flight_timeline", END
    )  # flights of the last built day...
    flights = flights.head(20).assign(  # ...asked about as if they left on 01-10 at 13:30
        sched_dep_ts=pd.Timestamp("2013-01-10T13:30", tz="America/New_York").tz_convert("UTC")
    )
    now = pd.Timestamp("2013-01-10T12:30", tz="America/New_York").tz_convert("UTC")

    def departures_age() -> list:
        rows = task.domain.request_frame(flights)
        vector = online_vector(store, rows, task.spec, task.domain)
        return [a["origin_recent_departures"] for a in feature_age_seconds(vector, now)]

    assert all(age is None for age in departures_age())  # 2-hour TTL: last night's are stale
    assert (
        cli_main(
            ["push-events", "--start", "2013-01-10", "--end", "2013-01-10", "--until", "12:30"]
        )
        == 0
    )
    ages = departures_age()
    assert all(age is not None and 0 <= age < 3600 for age in ages), ages


def test_openapi_spec_matches_the_answers_under_schemathesis(packaged, tmp_path):
    """schemathesis against a running service and its /docs.json, bounded, with every check:
    positive-data acceptance too (the spec states the serving window and its DST hours as the
    departure's pattern, so every value it admits is answered). Zero server errors, zero
    mismatches; every listed route answers; the refused requests log no traceback."""
    _, _, latest = packaged
    log = tmp_path / "serve.log"
    with bentoml_serve(latest, log=log) as url:
        spec = requests.get(f"{url}/docs.json", timeout=10).json()
        assert spec["openapi"].startswith("3.1")
        for path, item in spec["paths"].items():
            method = next(iter(item))
            reply = requests.request(method, f"{url}{path}", json={}, timeout=10)
            assert reply.status_code != 404, path
        error = spec["components"]["schemas"]["ErrorItem"]["properties"]
        assert error["loc"]["type"] == "array" and "null" in str(error["batch_index"])
        assert "null" in str(spec["components"]["schemas"]["Readiness"])
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{url}/docs.json",
                "--checks",
                "all",
                "--max-examples",
                "8",
                "--max-time",
                "40",
                "--seed",
                "1",
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--phases",
                "examples,coverage,fuzzing",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-4000:]
        generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
        assert generated and generated.group(1) == generated.group(2), done.stdout[-2000:]
        assert int(generated.group(1)) > 50
        refused = requests.post(
            f"{url}/predict", json={"flight": {**FLIGHT, "distance": "1990"}}, timeout=10
        )
        assert refused.status_code == 400
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert not [line for line in text.splitlines() if "ERROR" in line], text[-3000:]


def test_the_fast_path_serves_what_feast_and_the_frame_path_serve(packaged):
    """The service's per-row path (direct online reads, the task's request_row, LightGBM from
    records) against Feast's get_online_features and the pandas path, on real flights."""
    from dataclasses import replace

    import bentoml
    import numpy as np
    import pandas as pd
    from feast.online_response import TIMESTAMP_POSTFIX

    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.online import _plan, entity_key_rows, online_vector, read_online
    from pipelines.platform.resources_config import embedded_resources

    task = load_task("flight_delay")
    paths, _, latest = packaged
    store = embedded_resources()["feast"].store()
    flights = Lake(paths.lake).read("flight_delay/flight_timeline", END)
    flights = flights.sample(min(300, len(flights)), random_state=1)
    flights.loc[flights.index[:5], "tailnum"] = None
    rows = task.domain.request_frame(flights)
    keys = entity_key_rows(task.domain, rows)
    values, stamps = read_online(store, task.spec.feature_service, keys)
    service = store.get_feature_service(task.spec.feature_service)
    feast = store.get_online_features(features=service, entity_rows=keys).to_dict(
        include_event_timestamps=True
    )
    for read in _plan(store, task.spec.feature_service).views:
        for feature in read.features:
            assert values[feature] == feast[feature], feature
            assert stamps[read.view.name].tolist() == feast[feature + TIMESTAMP_POSTFIX]

    fast = online_vector(store, rows, task.spec, task.domain)
    frames = online_vector(store, rows, task.spec, replace(task.domain, request_row=None))
    pd.testing.assert_frame_equal(fast.features, frames.features)
    for view, known in frames.known_at.items():
        assert (fast.known_at[view] == known).all()
        assert (fast.withheld[view] == frames.withheld[view]).all()
    assert fast.features["plane_year"].notna().any()  # real values, not all missing

    pyfunc = bentoml.mlflow.load_model(bentoml.models.get(latest["model"]))
    classifier = pyfunc.unwrap_python_model().classifier
    if hasattr(classifier, "predict_records"):
        np.testing.assert_array_equal(
            classifier.predict_records(fast.records), classifier.predict_proba(frames.features)
        )


def test_prediction_log_writes_every_record_once_and_drains_on_close(tmp_path):
    from pipelines.platform.lib.prediction_log import PredictionLogWriter

    writer = PredictionLogWriter(tmp_path, flush_every_s=0.05)
    for i in range(5000):
        writer.append("2013-01-0" + str(1 + i % 2), {"i": i})
    writer.close()
    logged = [read_day(tmp_path, day)[0] for day in ("2013-01-01", "2013-01-02")]
    assert sorted(pd_i for frame in logged for pd_i in frame["i"]) == list(range(5000))
    assert writer.written == 5000 and writer.dropped == 0
