"""Production deployment shape: `dagster-webserver` and `dagster-daemon` as two processes sharing
the PostgreSQL instance (`make ui-prod`); two runs launched at once through the webserver are
dequeued by the daemon, run as their own processes, and both land in the shared event log."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from tests.production.conftest import postgres_instance, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKSPACE = ("-w", "workspace.yaml")
RUNS = """
query ($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) {
    ... on Runs { results { runId status startTime endTime } }
  }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } }
}
"""


def _port_in_range(low: int = 3100, high: int = 3199) -> int:
    # The project's port plan: this feature's servers use 3100-3199.
    for port in range(low, high + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


@pytest.fixture
def webserver_and_daemon(production_env, tmp_path):
    home = tmp_path / "dagster_home"
    instance = postgres_instance(home)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    port = _port_in_range()
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("webserver", "daemon")}  # noqa: SIM115
    commands = {
        "webserver": [BIN / "dagster-webserver", *WORKSPACE, "-h", "127.0.0.1", "-p", str(port)],
        "daemon": [BIN / "dagster-daemon", "run", *WORKSPACE],
    }
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logs[n], stderr=subprocess.STDOUT)
        for n, cmd in commands.items()
    ]
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/server_info"), "the webserver", 120)
        yield port, instance, tmp_path, procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        for log in logs.values():
            log.close()
        instance.dispose()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False


def _graphql(url: str, ids: list[str]) -> dict:
    reply = requests.post(
        f"{url}/graphql", json={"query": RUNS, "variables": {"ids": ids}}, timeout=30
    )
    return reply.json()["data"]


def test_webserver_and_daemon_share_the_instance_and_run_two_at_once(webserver_and_daemon):
    port, instance, logs, procs = webserver_and_daemon
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    deadline = time.monotonic() + 300  # busy 2 cores: the location loads in 10-60 s
    while True:  # the webserver loads the code location in the background
        try:
            ids = [
                client.submit_job_execution(
                    "__ASSET_JOB", repository_location_name="flightline", asset_selection=[key]
                )
                for key in (["flight_delay", "airlines"], ["flight_delay", "airports"])
            ]
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        data = _graphql(url, ids)
        runs = {r["runId"]: r for r in data["runsOrError"]["results"]}
        if all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs.values()):
            break
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            daemon_log = (logs / "daemon.log").read_text()[-3000:]
            pytest.fail(f"runs not finished (or a server exited): {runs}\n{daemon_log}")
        time.sleep(2)
    assert {r["status"] for r in runs.values()} == {"SUCCESS"}, runs
    first, second = sorted(runs.values(), key=lambda r: r["startTime"])
    # Both run processes were alive at once: the daemon launched the second (RUN_STARTING) before
    # the first ended. (Their execution windows proper last ~1 s and may not overlap on a loaded
    # machine; each process spends ~10 s loading the code location first.)
    [launched] = instance.all_logs(second["runId"], of_type=dg.DagsterEventType.RUN_STARTING)
    assert launched.timestamp < first["endTime"], (
        "the second run was launched after the first ended"
    )

    # The daemon (a separate process) reports its heartbeat through the same database.
    statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
    assert all(s["healthy"] for s in statuses if s["required"]), statuses
    assert "QUEUED_RUN_COORDINATOR" in {s["daemonType"] for s in statuses}

    # Each run's events are in PostgreSQL exactly once, read back by a third process (this one).
    for run_id, asset in zip(ids, ("airlines", "airports"), strict=True):
        kinds = [e.dagster_event.event_type for e in instance.all_logs(run_id)]
        assert kinds.count(dg.DagsterEventType.RUN_SUCCESS) == 1
        assert kinds.count(dg.DagsterEventType.ASSET_MATERIALIZATION) == 1
        materialization = instance.get_latest_materialization_event(
            dg.AssetKey(["flight_delay", asset])
        )
        assert materialization is not None and materialization.run_id == run_id
