"""Fixtures of the Kubernetes tests: one control plane for the session, with fake nodes, our
RBAC and a production-configured Dagster instance whose daemon launches runs as Jobs.

Pods share no disk with the test or with each other (fake_kubelet.py): state flows through the
production profile's services only, PostgreSQL (Dagster, MLflow, Feast registry), Redis (online
store) and the S3 server (lake, artifacts, Bentos, prediction log), a set of this session's own.

The control-plane binaries are built once (infra/local-cluster/build.sh, ~6-8 min) and cached
outside the repository, before the first test (tests/conftest.py) when they are missing.
"""

import time
from datetime import date

import dagster as dg
import pytest

from tests.conftest import k8s_build_error
from tests.infra import cluster as local_cluster
from tests.infra import platform, runs
from tests.infra.fake_kubelet import CPU_NODE, GPU_NODE, FakeKubelet
from tests.pipeline_fixture import END, MODEL_RUN_CONFIG, START
from tests.production.conftest import fresh_profile


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory, pytestconfig):
    # Built before the first test by tests/conftest.py's pytest_collection_finish, outside any
    # test's timeout; a failed build fails these tests at once instead of building again here.
    if not local_cluster.binaries_ready():
        pytest.fail(k8s_build_error(pytestconfig) or f"no control plane in {local_cluster.BIN}")
    with local_cluster.start(tmp_path_factory.mktemp("k8s-cluster")) as cluster:
        print(f"\nlocal control plane ready in {cluster.startup_seconds:.1f}s at {cluster.server}")
        yield cluster


def _retrain_inputs(env: dict[str, str]) -> None:
    """Materialize, in-process, everything upstream of the retrain job over the nine days, into
    the profile's services (the landing folder is the test's: no pod reads it)."""
    from pipelines.definitions import defs
    from pipelines.platform.cli import materialize_window
    from pipelines.platform.lib.settings import DataPaths
    from pipelines.platform.lib.tracking import ModelRegistry
    from pipelines.tasks.flight_delay.replay import replay_days

    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        definitions = defs()
        graph = definitions.resolve_asset_graph()
        job = definitions.resolve_job_def("flight_delay_retrain")
        selected = job.asset_layer.selected_asset_keys
        upstream = dg.AssetSelection.assets(*selected).upstream().resolve(graph) - set(selected)
        only = {k.to_user_string() for k in upstream if graph.get(k).is_materializable}
        only.add("online_features")  # the Bento's skew check compares online with offline

        replay_days(
            DataPaths.from_env().landing_for("flight_delay"),
            date.fromisoformat(START),
            date.fromisoformat(END),
        )
        with dg.instance_for_test() as instance:
            results = materialize_window(
                date.fromisoformat(START), date.fromisoformat(END), instance, only=only
            )
        assert all(r.success for r in results), "inputs of the retrain job failed to build"
        # In production the MLflow server owns its database; here the first step to touch the
        # store would create its tables while the other training step does the same.
        paths = DataPaths.from_env()
        ModelRegistry(paths.mlflow_tracking_uri, paths.mlflow_artifact_root).check_reachable()


@pytest.fixture(scope="session")
def k8s_nodes(k8s_cluster, tmp_path_factory):
    """gpu-node and cpu-node, played by the fake kubelet: pods bound to them run locally."""
    kubelet = FakeKubelet(
        k8s_cluster.kubeconfig,
        pods_root=tmp_path_factory.mktemp("pods"),  # one empty directory per pod
        images={platform.TEST_IMAGE, platform.SERVICE_IMAGE},
        nodes=(GPU_NODE, CPU_NODE),
        log_dir=tmp_path_factory.mktemp("pod-logs"),
        code_root=platform.PROJECT_ROOT,  # the image's code; its venv is first on PATH
    ).start()
    try:
        yield kubelet
    finally:
        kubelet.stop()


@pytest.fixture(scope="session")
def k8s_profile(s3_server):
    """PostgreSQL databases, a Redis index and a bucket of the Kubernetes tests' own."""
    with fresh_profile(s3_server) as current:
        yield current


@pytest.fixture(scope="session")
def k8s_platform(k8s_cluster, k8s_nodes, k8s_profile, s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("k8s-platform")
    data_root = root / "data"  # the test's landing folder: no pod is given it
    env = k8s_profile.env(data_root)
    started = time.monotonic()
    _retrain_inputs(env)
    inputs_seconds = time.monotonic() - started
    # What the flightline-env ConfigMap and flightline-secrets carry in production: where the
    # services are, and the object store's keys. No data root: pods keep none.
    secret_names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    cluster_env = {k: v for k, v in env.items() if k != "FLIGHTLINE_DATA_ROOT"}
    platform.apply_base(
        k8s_cluster,
        {k: v for k, v in cluster_env.items() if k not in secret_names},
        {k: cluster_env[k] for k in secret_names},
    )
    kubeconfig = platform.service_account_kubeconfig(k8s_cluster, root / "launcher-kubeconfig")
    # The deployment asset's target. The kubeconfig carries the service account's token: the
    # stand-in for the token Kubernetes mounts into every pod (the one file pods read here).
    cluster_env |= {
        "FLIGHTLINE_K8S_NAMESPACE": platform.NAMESPACE,
        "FLIGHTLINE_KUBECONFIG": str(kubeconfig),
    }
    platform.apply_base(
        k8s_cluster,
        {k: v for k, v in cluster_env.items() if k not in secret_names},
        {k: cluster_env[k] for k in secret_names},
    )
    platform.apply_service(k8s_cluster)
    home = platform.write_home(
        root / "dagster_home",
        platform.instance_config(
            kubeconfig, root / "dagster_home", postgres_url=k8s_profile.postgres_url
        ),
    )
    # Create the storage's tables once, before the daemon and the CLI race to create them.
    dg.DagsterInstance.from_config(str(home)).dispose()
    # The daemon and the CLI (the user-code deployment) see the same services.
    env = platform.dagster_env(home, {**cluster_env, "FLIGHTLINE_DATA_ROOT": str(root / "cli")})
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
            "profile": k8s_profile,
            "s3": s3_server,
        }
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def retrain(k8s_platform):
    """One successful retrain through the whole production path; the retrain and serving tests inspect it."""
    started = time.monotonic()
    run_id = runs.launch(k8s_platform, MODEL_RUN_CONFIG)
    instance = runs.instance(k8s_platform)
    run = runs.wait_finished(instance, run_id)
    seconds = time.monotonic() - started
    print(f"k8s retrain run: {run.status} in {seconds:.0f}s")
    return {"run": run, "instance": instance, "seconds": seconds}
