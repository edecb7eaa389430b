"""The production setup on the local control plane, for the tests that talk to it.

Namespace, our RBAC, the env ConfigMap, the fake nodes, a Dagster home whose instance is
infra/dagster-instance.yaml with only what a laptop must change (SQLite instead of PostgreSQL,
a kubeconfig carrying the run launcher's service-account token instead of in-cluster config,
a test image name, short monitoring timeouts), and a `dagster-daemon` that dequeues and launches
runs as in production.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.infra.cluster import Cluster

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INFRA = PROJECT_ROOT / "infra"
NAMESPACE = "flightline"
SERVICE_ACCOUNT = "flightline-dagster"
TEST_IMAGE = "ghcr.io/flightline/flightline:test"
SERVICE_IMAGE = "ghcr.io/flightline/flightline:0.1.0"  # infra/manifests/bento.yaml's
SERVICE = "flight-delay-service"
VENV_BIN = Path(sys.executable).parent
# Run monitoring fails a run whose worker has not started within this. Measured with
# `benchmarks/cold_start.py --cluster` at load average 13-17 (the code location alone loading in
# 7.9 s then, 2.6 s quiet): run worker Job -> RUN_START 15.7 s, step Jobs -> STEP_START 13.6-22.6
# s; test_pods_start_within_the_run_monitoring_timeout checks them on every run. 25 s failed a
# quiet machine before issue 18's cold-start work; 120 s is ~5x the busy figures, and only a run
# that can never start (the missing-image test) waits it out.
START_TIMEOUT_SECONDS = 120


def instance_config(
    kubeconfig: Path, storage_dir: Path, postgres_url: str | None = None, **launcher_overrides
) -> dict:
    """infra/dagster-instance.yaml, changed only where a laptop differs from the cluster."""
    config = yaml.safe_load((INFRA / "dagster-instance.yaml").read_text())
    if postgres_url:
        # The URL itself instead of the chart's DAGSTER_PG_* variables and password secret.
        config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    else:
        config["storage"] = {"sqlite": {"base_dir": str(storage_dir)}}
    # Step output goes to the lake; captured stdout/stderr would go to a local folder (the
    # chart points it at the object store with dagster-aws): pods keep no shared folder.
    config["compute_logs"] = {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
    launcher = config["run_launcher"]["config"]
    launcher.update(
        load_incluster_config=False,
        kubeconfig_file=str(kubeconfig),
        job_image=TEST_IMAGE,  # production takes the user-code deployment's image
    )
    launcher.pop("postgres_password_secret")  # the password, if any, is in the URL
    launcher.update(launcher_overrides)
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    config["run_monitoring"].update(
        start_timeout_seconds=START_TIMEOUT_SECONDS, poll_interval_seconds=2
    )
    return config


def write_home(home: Path, config: dict) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


def service_account_kubeconfig(cluster: Cluster, path: Path) -> Path:
    """A kubeconfig with the launcher's service-account token: runs get only what RBAC grants."""
    deadline = time.monotonic() + 180  # the controller manager creates it; busy: tens of s
    while time.monotonic() < deadline:
        out = cluster.kubectl(
            "get", "serviceaccount", SERVICE_ACCOUNT, "-n", NAMESPACE, "-o", "json", check=False
        )
        secrets = json.loads(out.stdout or "{}").get("secrets") if out.returncode == 0 else None
        if secrets:
            break
        time.sleep(0.3)
    else:
        raise TimeoutError("no token for the launcher's service account")
    token_b64 = cluster.kubectl(
        "get", "secret", secrets[0]["name"], "-n", NAMESPACE, "-o", "jsonpath={.data.token}"
    ).stdout
    token = base64.b64decode(token_b64).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": cluster.server,
                            "certificate-authority": str(cluster.ca_file),
                        },
                    }
                ],
                "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "launcher",
                        "context": {
                            "cluster": "local",
                            "user": SERVICE_ACCOUNT,
                            "namespace": NAMESPACE,
                        },
                    }
                ],
                "current-context": "launcher",
            }
        )
    )
    return path


def apply_base(cluster: Cluster, env: dict[str, str], secrets: dict | None = None) -> None:
    cluster.kubectl("apply", "-f", str(INFRA / "manifests" / "namespace.yaml"))
    cluster.kubectl("apply", "-f", str(INFRA / "rbac.yaml"))
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "flightline-env", "namespace": NAMESPACE},
        "data": env,
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "flightline-secrets", "namespace": NAMESPACE},
        "stringData": secrets or {"FLIGHTLINE_SECRET_PLACEHOLDER": "unused"},
    }
    for body in (configmap, secret):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def apply_service(cluster: Cluster) -> None:
    """infra/manifests/bento.yaml's Deployment and Service as they are, but one replica (two
    cores here). No HPA: no metrics server."""
    docs = [d for d in yaml.safe_load_all((INFRA / "manifests" / "bento.yaml").read_text()) if d]
    chosen = [d for d in docs if d["kind"] in ("Deployment", "Service")]
    for doc in chosen:
        if doc["kind"] == "Deployment":
            doc["spec"]["replicas"] = 1
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": chosen})
    cluster.kubectl("apply", "-f", "-", input=body)


def dagster_env(home: Path, data_env: dict[str, str]) -> dict[str, str]:
    """Env of the processes outside the cluster (daemon, CLI): the user-code deployment's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLIGHTLINE_", "DAGSTER_"))}
    env.update(data_env)
    env.update(DAGSTER_HOME=str(home), FLIGHTLINE_EXECUTOR="k8s")
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    return env


@dataclass
class Daemon:
    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, env: dict[str, str], log: Path) -> "Daemon":
        handle = open(log, "wb")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return cls(proc, log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def launch(
    env: dict[str, str],
    run_id: str,
    run_config: dict,
    tags: dict | None = None,
    job: str = "flight_delay_retrain",
    ops: list[str] | None = None,
    workspace: Path = PROJECT_ROOT / "workspace.yaml",
):
    """`dagster job launch`, as a user or the UI would: the instance's coordinator takes it."""
    args = [
        str(VENV_BIN / "dagster"), "job", "launch", "-w", str(workspace),
        "-j", job, "--run-id", run_id, "--config-json", json.dumps(run_config),
    ]  # fmt: skip
    if tags:
        args += ["--tags", json.dumps(tags)]
    if ops:
        args += ["--op-selection", ",".join(ops)]
    return subprocess.run(
        args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
