"""The Dagster UI on the instance the pipeline wrote: asked through its GraphQL API."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]

QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
  training: assetNodeOrError(assetKey: {path: ["flight_delay", "training_set"]}) {
    ... on AssetNode {
      partitionStats { numMaterialized numPartitions }
      assetMaterializations(limit: 1) { metadataEntries { label } }
    }
  }
  drift: assetNodeOrError(assetKey: {path: ["flight_delay", "drift_report"]}) {
    ... on AssetNode {
      assetMaterializations(partitions: ["2013-01-09"], limit: 1) {
        partition
        metadataEntries { label ... on UrlMetadataEntry { url } ... on PathMetadataEntry { path } }
      }
    }
  }
  repositoriesOrError {
    ... on RepositoryConnection { nodes { sensors { name } schedules { name cronSchedule } } }
  }
  evaluation: assetNodeOrError(assetKey: {path: ["flight_delay", "model_evaluation"]}) {
    ... on AssetNode {
      assetMaterializations(limit: 1) {
        metadataEntries { label ... on UrlMetadataEntry { url } }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(built):
    paths, instance, _ = built
    # The last day's drift report against the built champion (the build ran the days before it).
    from pipelines.definitions import defs

    report = (
        defs()
        .resolve_job_def("flight_delay_partitions")
        .get_subset(asset_selection={dg.AssetKey(["flight_delay", "drift_report"])})
        .execute_in_process(instance=instance, partition_key="2013-01-09")
    )
    assert report.success
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": instance.root_directory,
        "FLIGHTLINE_DATA_ROOT": str(paths.root),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("dagster-webserver did not come up within 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _graphql(url: str) -> dict:
    deadline = time.monotonic() + 60
    while True:  # the code location loads in the background after the server answers
        reply = requests.post(f"{url}/graphql", json={"query": QUERY}, timeout=30).json()
        if reply.get("data", {}).get("assetNodes") or time.monotonic() > deadline:
            return reply


def test_ui_shows_one_graph_grouped_by_stage_with_blocking_checks(webserver):
    data = _graphql(webserver)["data"]
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    stages = ("ingestion", "features", "training", "evaluation", "serving", "monitoring")
    tasks = ("flight_delay", "foot_traffic")  # both tasks of pipelines/defs, side by side
    assert {n["groupName"] for n in nodes.values()} == {f"{t}_{s}" for t in tasks for s in stages}
    assert {k.split("/")[0] for k in nodes} == set(tasks)  # each task's key prefix
    raw, training = nodes["flight_delay/raw_flights"], nodes["flight_delay/training_set"]
    assert raw["isPartitioned"] and training["isPartitioned"]
    checks = raw["assetChecksOrError"]["checks"]
    assert len(checks) == 6 and all(c["blocking"] for c in checks)
    stats = data["training"]["partitionStats"]
    assert stats == {"numMaterialized": 9, "numPartitions": 365}
    labels = {e["label"] for e in data["training"]["assetMaterializations"][0]["metadataEntries"]}
    assert {"summary_chart", "feature_coverage", "feature_service"} <= labels


def test_ui_shows_the_evaluation_its_plots_and_the_blocking_gate(webserver):
    data = _graphql(webserver)["data"]
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    [gate] = nodes["flight_delay/model_evaluation"]["assetChecksOrError"]["checks"]
    assert gate == {"name": "model_evaluation_gate", "blocking": True}
    entries = data["evaluation"]["assetMaterializations"][0]["metadataEntries"]
    labels = {e["label"] for e in entries}
    assert {"metrics", "comparison", "slices", "curves", "mlflow_run"} <= labels
    [link] = [e["url"] for e in entries if e["label"] == "mlflow_run"]
    assert link.startswith("http://127.0.0.1:5000/#/experiments/")


def test_ui_shows_a_drift_report_and_the_automation(webserver):
    data = _graphql(webserver)["data"]
    [report] = data["drift"]["assetMaterializations"]
    entries = {e["label"]: e for e in report["metadataEntries"]}
    assert {"status", "drift_share", "top_drifted", "drift_chart", "reference"} <= set(entries)
    assert entries["evidently_html"]["path"].endswith("2013-01-09.html")
    assert Path(entries["evidently_html"]["path"]).stat().st_size > 100_000
    assert entries["mlflow_report"]["url"].startswith("http://127.0.0.1:5000/#/experiments/")
    [repository] = data["repositoriesOrError"]["nodes"]
    assert {s["name"] for s in repository["sensors"]} == {
        f"{task}_{sensor}_sensor"
        for task in ("flight_delay", "foot_traffic")
        for sensor in ("landing", "drift")
    }
    assert sorted(repository["schedules"], key=lambda s: s["name"]) == [
        {"name": "flight_delay_nightly_retrain", "cronSchedule": "0 2 * * *"},
        {"name": "foot_traffic_nightly_retrain", "cronSchedule": "0 3 * * *"},
    ]
