"""Fixtures of the Kubernetes tests: one control plane for the session, with fake nodes, our
RBAC and a production-configured Dagster instance whose daemon launches runs as Jobs.

The control-plane binaries are built once (infra/local-cluster/build.sh, ~6-8 min) and cached
outside the repository, before the first test (tests/conftest.py) when they are missing.
"""

import shutil
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import k8s_build_error
from tests.infra import cluster as local_cluster
from tests.infra import platform
from tests.infra.fake_kubelet import CPU_NODE, GPU_NODE, FakeKubelet
from tests.pipeline_fixture import END, START


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory, pytestconfig):
    # Built before the first test by tests/conftest.py's pytest_collection_finish, outside any
    # test's timeout; a failed build fails these tests at once instead of building again here.
    if not local_cluster.binaries_ready():
        pytest.fail(k8s_build_error(pytestconfig) or f"no control plane in {local_cluster.BIN}")
    with local_cluster.start(tmp_path_factory.mktemp("k8s-cluster")) as cluster:
        print(f"\nlocal control plane ready in {cluster.startup_seconds:.1f}s at {cluster.server}")
        yield cluster


def _retrain_inputs(data_root: Path) -> None:
    """Materialize, in-process, everything upstream of the retrain job over the nine days."""
    from pipelines.definitions import defs
    from pipelines.platform.cli import materialize_window
    from pipelines.platform.lib.settings import DataPaths
    from pipelines.platform.lib.tracking import ModelRegistry
    from pipelines.tasks.flight_delay.replay import replay_days

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLIGHTLINE_DATA_ROOT", str(data_root))
        definitions = defs()
        graph = definitions.resolve_asset_graph()
        job = definitions.resolve_job_def("flight_delay_retrain")
        selected = job.asset_layer.selected_asset_keys
        upstream = dg.AssetSelection.assets(*selected).upstream().resolve(graph) - set(selected)
        only = {k.to_user_string() for k in upstream if graph.get(k).is_materializable}
        only.add("online_features")  # the Bento's skew check compares online with offline

        replay_days(
            DataPaths.from_env().landing / "flight_delay",
            date.fromisoformat(START),
            date.fromisoformat(END),
        )
        with dg.instance_for_test() as instance:
            results = materialize_window(
                date.fromisoformat(START), date.fromisoformat(END), instance, only=only
            )
        assert all(r.success for r in results), "inputs of the retrain job failed to build"
        # In production the MLflow server owns its database; here the first step to touch the
        # SQLite store would create its tables while the other training step does the same.
        paths = DataPaths.from_env()
        ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root).check_reachable()


@pytest.fixture(scope="session")
def k8s_nodes(k8s_cluster, tmp_path_factory):
    """gpu-node and cpu-node, played by the fake kubelet: pods bound to them run locally."""
    kubelet = FakeKubelet(
        k8s_cluster.kubeconfig,
        workdir=platform.PROJECT_ROOT,  # the image's WORKDIR: the project, its venv on PATH
        images={platform.TEST_IMAGE},
        nodes=(GPU_NODE, CPU_NODE),
        log_dir=tmp_path_factory.mktemp("pod-logs"),
    ).start()
    try:
        yield kubelet
    finally:
        kubelet.stop()


@pytest.fixture(scope="session")
def k8s_platform(k8s_cluster, k8s_nodes, tmp_path_factory):
    root = tmp_path_factory.mktemp("k8s-platform")
    data_root = root / "data"
    started = time.monotonic()
    _retrain_inputs(data_root)
    inputs_seconds = time.monotonic() - started
    # What the flightline-env ConfigMap carries in production (object store, MLflow, Feast).
    data_env = {"FLIGHTLINE_DATA_ROOT": str(data_root), "BENTOML_HOME": str(data_root / "bentoml")}
    platform.apply_base(k8s_cluster, data_env)
    kubeconfig = platform.service_account_kubeconfig(k8s_cluster, root / "launcher-kubeconfig")
    home = platform.write_home(
        root / "dagster_home", platform.instance_config(kubeconfig, root / "dagster_home")
    )
    # Create the SQLite storage once, before the daemon and the CLI race to create it.
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = platform.dagster_env(home, data_env)
    daemon = platform.Daemon.start(env, root / "daemon.log")
    try:
        yield {
            "cluster": k8s_cluster,
            "kubelet": k8s_nodes,
            "home": home,
            "env": env,
            "data_root": data_root,
            "root": root,
            "launcher_kubeconfig": kubeconfig,
            "inputs_seconds": inputs_seconds,
        }
    finally:
        daemon.stop()
        shutil.rmtree(data_root / "lake", ignore_errors=True)
