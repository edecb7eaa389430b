"""The Dagster UI on the instance the pipeline wrote: asked through its GraphQL API."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from pipelines.platform.lib.drift import evidently_verdict
from tests.browser import ARGS, ARTIFACTS, ensure_chromium
from tests.pipeline_fixture import free_port

ROOT = Path(__file__).resolve().parents[2]
DAY = "2013-01-09"
# The module's first test builds the shared nine-day pipeline when no earlier test did (5-7
# minutes on a loaded 2-core machine), then the day's runs and two servers.
pytestmark = pytest.mark.timeout(1200)

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


def _serve(command: list[str], url: str, env: dict, log: Path) -> subprocess.Popen:
    # Output to a file, never a pipe nobody reads (a full pipe blocks the server); a session of
    # its own, so that stopping it stops its workers (code server, uvicorn) too.
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_up(proc: subprocess.Popen, url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + 300  # a loaded 2-core machine: imports alone take a minute
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.RequestException:  # not listening yet, or too busy booting to answer
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} did not come up within 300 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def webserver(built, tmp_path_factory):
    paths, instance, _ = built
    logs = tmp_path_factory.mktemp("servers")
    env = {
        **os.environ,
        "DAGSTER_HOME": instance.root_directory,
        "FLIGHTLINE_DATA_ROOT": str(paths.root),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Both servers boot (a minute or more on a loaded machine) while the day's runs below go.
    dagster_ui = _serve(
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
        url,
        env,
        logs / "dagster.log",
    )
    # The MLflow UI the metadata links to (the fixture chose its address), serving the pictures.
    mlflow_url = os.environ["FLIGHTLINE_MLFLOW_UI_URL"]
    mlflow_ui = _serve(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--workers",
            "1",
            "--backend-store-uri",
            paths.mlflow_tracking_uri,
            "--default-artifact-root",
            paths.mlflow_artifact_root,
            "--host",
            "127.0.0.1",
            "--port",
            mlflow_url.rsplit(":", 1)[1],
        ],
        mlflow_url,
        env,
        logs / "mlflow.log",
    )
    try:
        from pipelines.definitions import defs

        job = defs().resolve_job_def("flight_delay_partitions")
        # The last day's drift report against the built champion (the build ran the days
        # before it). Judged again if an earlier test judged it: a kept verdict's run carries
        # no page of its own.
        report = job.get_subset(
            asset_selection={dg.AssetKey(["flight_delay", "drift_report"])}
        ).execute_in_process(
            instance=instance,
            partition_key=DAY,
            run_config={"ops": {"flight_delay__drift_report": {"config": {"rejudge": True}}}},
        )
        assert report.success
        # One day of raw flights with its checks, as the landing sensor runs a landed day.
        raw = {dg.AssetKey(["flight_delay", "raw_flights"])}
        checks = {k for k in job.asset_layer.asset_graph.asset_check_keys if k.asset_key in raw}
        day = job.get_subset(asset_selection=raw, asset_check_selection=checks)
        assert day.execute_in_process(instance=instance, partition_key=DAY).success
        _wait_up(dagster_ui, f"{url}/server_info", logs / "dagster.log", "dagster-webserver")
        _wait_up(mlflow_ui, f"{mlflow_url}/health", logs / "mlflow.log", "mlflow server")
        yield url
    finally:
        for proc in (dagster_ui, mlflow_ui):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in (dagster_ui, mlflow_ui):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


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
    tasks = ("flight_delay", "wind_power")  # both tasks of pipelines/defs, side by side
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
    assert link.startswith(f"{os.environ['FLIGHTLINE_MLFLOW_UI_URL']}/#/experiments/")


def test_ui_shows_a_drift_report_and_the_automation(webserver):
    data = _graphql(webserver)["data"]
    [report] = data["drift"]["assetMaterializations"]
    entries = {e["label"]: e for e in report["metadataEntries"]}
    assert {"status", "drift_share", "top_drifted", "drift_chart", "reference"} <= set(entries)
    assert entries["evidently_html"]["path"].endswith("2013-01-09.html")
    assert Path(entries["evidently_html"]["path"]).stat().st_size > 100_000
    assert entries["mlflow_report"]["url"].startswith(
        f"{os.environ['FLIGHTLINE_MLFLOW_UI_URL']}/#/experiments/"
    )
    [repository] = data["repositoriesOrError"]["nodes"]
    assert {s["name"] for s in repository["sensors"]} == {
        f"{task}_{sensor}_sensor"
        for task in ("flight_delay", "wind_power")
        for sensor in ("landing", "drift", "alert")
    } | {"run_failure_alerts", "run_recovery_alerts"}
    assert sorted(repository["schedules"], key=lambda s: s["name"]) == [
        {"name": "flight_delay_nightly_retrain", "cronSchedule": "0 2 * * *"},
        {"name": "wind_power_nightly_retrain", "cronSchedule": "0 4 * * *"},
    ]


def test_drift_metadata_is_evidentlys_own_verdict(webserver, built):
    """The day's Dagster metadata against the numbers Evidently saved beside its page."""
    _, instance, _ = built
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["flight_delay", "drift_report"]), asset_partitions=[DAY]
        ),
        limit=1,
    ).records
    meta = record.asset_materialization.metadata
    saved = Path(meta["evidently_html"].path).with_suffix(".json")
    evidently = evidently_verdict(json.loads(saved.read_text()))
    assert set(meta["drifted_columns"].data) == evidently["drifted"] - {"prediction"}
    assert meta["drift_share"].value == pytest.approx(evidently["share"], abs=1e-12)
    assert meta["drifted"].text == f"{evidently['count']} of {len(evidently['columns'])} columns"
    assert meta["status"].text == ("drift" if evidently["share"] >= 0.5 else "no_drift")
    for row in meta["top_drifted"].records:  # the same distances, against the same thresholds
        column = row.data["column"]
        assert evidently["distances"][column] == pytest.approx(row.data["distance"], abs=1e-4)
        assert (column in evidently["drifted"]) == row.data["drifted"]


# --- The same UI in a real browser: what a person sees on the rendered pages. -----------------


@pytest.fixture(scope="module")
def page(webserver):
    try:
        chromium = ensure_chromium()
    except RuntimeError as exc:
        pytest.skip(f"no browser: {exc}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        tab = browser.new_page(viewport={"width": 1600, "height": 1100})
        tab.set_default_timeout(60_000)
        # The UI's first-visit newsletter dialog stays closed (it remembers a dismissal so).
        tab.add_init_script("window.localStorage.setItem('communityNux', '1')")
        yield tab
        browser.close()


def _open(page, url: str, ready: str) -> None:
    page.goto(url)
    page.get_by_text(ready, exact=True).first.wait_for()


def _shot(page, name: str) -> None:
    (ARTIFACTS / "ui").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui" / f"{name}.png"), full_page=True)


def _metadata_row(page, label: str):
    """The row of a metadata entry in the asset page's metadata table (its first cell is the
    label; a table value nests rows of its own)."""
    first_cell = page.locator(":scope > td:first-child", has_text=re.compile(rf"^\s*{label}\s*$"))
    return page.locator("tr").filter(has=first_cell).first


def _picture_loaded(cell) -> bool:
    image = cell.locator("img").first
    image.wait_for()
    image.scroll_into_view_if_needed()  # the screenshot then shows it
    # Served by the MLflow UI: a broken link would leave naturalWidth at 0.
    return (
        image.evaluate(
            "img => img.complete ? img.naturalWidth : new Promise(r => "
            "{img.onload = () => r(img.naturalWidth); img.onerror = () => r(0);})"
        )
        > 100
    )


def test_browser_lineage_shows_every_group(page, webserver):
    stages = ["evaluation", "features", "ingestion", "monitoring", "serving", "training"]
    _open(page, f"{webserver}/asset-groups", "Global asset lineage")
    # The graph draws each group as a node whose label ends with the stage (its start is
    # elided to fit); the sidebar lists the groups by full name.
    tasks = ("flight_delay", "wind_power")  # both tasks of pipelines/defs, side by side
    nodes = page.locator("svg foreignObject")
    nodes.nth(len(tasks) * len(stages) - 1).wait_for()
    labels = [nodes.nth(i).text_content() for i in range(nodes.count())]
    assert sorted(label.rsplit("_", 1)[-1] for label in labels) == sorted(stages * 2), labels
    for task in tasks:
        for stage in stages:
            page.get_by_title(f"{task}_{stage}", exact=True).first.wait_for()
    _shot(page, "lineage")


def test_browser_checks_tab_shows_a_days_passed_checks(page, webserver):
    _open(page, f"{webserver}/assets/flight_delay/raw_flights?view=checks", "Checks (6)")
    names = [
        "raw_flights_keys_not_null",
        "raw_flights_on_partition_day",
        "raw_flights_row_count",
        "raw_flights_schema",
        "raw_flights_unique_rows",
        "raw_flights_values_in_range",
    ]
    for name in names:
        page.get_by_text(name, exact=True).first.click()
        page.get_by_text(name, exact=True).nth(2).wait_for()  # list, its tag, the detail's title
        # "Latest execution": a row of fields (result, time, materialization, partition).
        latest = page.get_by_text("Evaluation result", exact=True).locator("xpath=../..")
        latest.get_by_text("Passed", exact=True).wait_for()
        latest.get_by_text(DAY, exact=True).wait_for()
        if name == names[0]:
            _shot(page, "raw_flights_checks")
    body = page.inner_text("body")
    assert "Failed" not in body


def test_browser_model_evaluation_shows_its_metadata(page, webserver):
    _open(page, f"{webserver}/assets/flight_delay/model_evaluation", "Metadata")
    for label in ("metrics", "comparison", "slices", "curves", "mlflow_run"):
        _metadata_row(page, label).wait_for()
    metrics = _metadata_row(page, "metrics").inner_text()
    assert all(name in metrics for name in ("lightgbm", "torch", "baseline", "roc_auc"))
    assert _picture_loaded(_metadata_row(page, "curves"))
    _shot(page, "model_evaluation")


def test_browser_drift_report_shows_its_metadata(page, webserver):
    url = f"{webserver}/assets/flight_delay/drift_report?view=partitions&partition={DAY}"
    _open(page, url, "drift_share")
    for label in ("status", "drifted", "top_drifted", "drift_chart", "evidently_report"):
        _metadata_row(page, label).wait_for()
    drifted = _metadata_row(page, "drifted").inner_text()
    assert " of " in drifted and "columns" in drifted
    assert "threshold" in _metadata_row(page, "top_drifted").inner_text()
    assert _picture_loaded(_metadata_row(page, "drift_chart"))
    link = _metadata_row(page, "evidently_report").locator("a").first.get_attribute("href")
    assert link.endswith(f"/artifactPath/{DAY}.html")
    _shot(page, "drift_report")
    # Evidently's page, rendered by the MLflow UI: the same count of drifted columns.
    count, total = re.search(r"(\d+) of (\d+) columns", drifted).groups()
    page.goto(link)
    verdict = re.compile(rf"Drift is (not )?detected for .* \({count} out of {total}\)")
    deadline = time.monotonic() + 240  # a 7 MB page, rendered by the MLflow UI in an iframe
    while not any(verdict.search(frame_text(f)) for f in page.frames[1:]):
        if time.monotonic() > deadline:
            _shot(page, "evidently_in_mlflow_failed")
            texts = [frame_text(f)[:300] for f in page.frames]
            pytest.fail(
                f"Evidently's page did not show {verdict.pattern} in the MLflow UI: {texts}"
            )
        page.wait_for_timeout(1000)
    _shot(page, "evidently_in_mlflow")


def frame_text(frame) -> str:
    try:
        return frame.locator("body").inner_text(timeout=2000)
    except Exception:  # a frame still loading, or gone
        return ""
