"""The pipeline materialized once for the e2e and serving tests: nine real days, in-process."""

import socket
from datetime import date

import dagster as dg
import pandas as pd
import pytest

from pipelines.platform.cli import materialize_window
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.sqlite_event_log import embedded_overrides
from pipelines.tasks.flight_delay.replay import replay_days

START, END = "2013-01-01", "2013-01-09"
DAYS = [d.strftime("%Y-%m-%d") for d in pd.date_range(START, END)]
# Nine days: 5 to train, 2 to stop early on, 2 to evaluate; a short torch run for CI's CPU.
SPLIT = {"validation_days": 2, "holdout_days": 2}
MODEL_RUN_CONFIG = {
    "ops": {
        "flight_delay__lgbm_model": {"config": SPLIT},
        "flight_delay__torch_model": {"config": {**SPLIT, "max_epochs": 8}},
        "flight_delay__model_evaluation": {"config": {**SPLIT, "bootstrap_samples": 300}},
    }
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    (root / "dagster_home").mkdir()
    with (
        pytest.MonkeyPatch.context() as mp,
        dg.instance_for_test(
            temp_dir=str(root / "dagster_home"), overrides=embedded_overrides(root / "dagster_home")
        ) as instance,
    ):
        mp.setenv("FLIGHTLINE_DATA_ROOT", str(root / "data"))
        # Links and pictures in asset metadata point at an MLflow UI the UI tests can start.
        mp.setenv("FLIGHTLINE_MLFLOW_UI_URL", f"http://127.0.0.1:{free_port()}")
        paths = DataPaths.from_env()
        replay_days(
            paths.landing_for("flight_delay"), date.fromisoformat(START), date.fromisoformat(END)
        )
        results = materialize_window(
            date.fromisoformat(START),
            date.fromisoformat(END),
            instance,
            run_config=MODEL_RUN_CONFIG,
        )
        yield paths, instance, results
