"""The pipeline materialized once for the e2e tests: nine real days, in-process."""

from datetime import date

import dagster as dg
import pandas as pd
import pytest

from pipelines.cli import materialize_window
from pipelines.lib.replay import replay_days
from pipelines.lib.settings import DataPaths

START, END = "2013-01-01", "2013-01-09"
DAYS = [d.strftime("%Y-%m-%d") for d in pd.date_range(START, END)]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    (root / "dagster_home").mkdir()
    with (
        pytest.MonkeyPatch.context() as mp,
        dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance,
    ):
        mp.setenv("FLIGHTLINE_DATA_ROOT", str(root / "data"))
        paths = DataPaths.from_env()
        replay_days(paths.landing, date.fromisoformat(START), date.fromisoformat(END))
        results = materialize_window(date.fromisoformat(START), date.fromisoformat(END), instance)
        yield paths, instance, results
