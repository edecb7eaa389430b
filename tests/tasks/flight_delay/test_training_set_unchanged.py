"""The training set is the same, row for row and type for type, as the one the code before the
batch speed-ups (issue 27) built: the feature tables, the point-in-time join and the lake are
all on its path (the ingestion and feature functions, Feast registration, materialization, the
join, the lake write and read)."""

import json
from datetime import date

import pandas as pd
import pytest

from benchmarks.pipeline_overhead import bare_pipeline
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.settings import DataPaths
from tests.tasks.flight_delay.training_set_fingerprint import STORED, WINDOW, fingerprint

pytestmark = pytest.mark.timeout(1200)


def test_the_training_set_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIGHTLINE_DATA_ROOT", str(tmp_path / "data"))
    paths = DataPaths.from_env()
    task = load_task("flight_delay")
    start, end = (date.fromisoformat(d) for d in WINDOW)
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(start, end)]
    task.domain.replay(paths.landing_for(task.name), start, end)
    rows = bare_pipeline(paths, days, task)
    frame = Lake(paths.lake).read_partitions(task.table("training_set"), days)
    # Issue 24 added when each label became known: a new column, every earlier one unchanged.
    frame = frame.drop(columns=["label_known_at"])
    # Issue 25 added the destination's recent arrivals (FeatureService v2): new columns too.
    frame = frame.drop(
        columns=["dest_arr_delay_mean_3h", "dest_arr_delayed_share_3h", "dest_arrivals_3h"]
    )
    expected = json.loads(STORED.read_text())
    got = fingerprint(frame)
    assert rows == got["rows"] == expected["rows"]
    # `dest` became a join key in v2: it moved to the entity columns; none is missing or extra.
    assert sorted(got["columns"]) == sorted(expected["columns"])
    changed = {
        c: (got["columns"][c], v) for c, v in expected["columns"].items() if got["columns"][c] != v
    }
    assert not changed, f"columns that differ from the stored training set: {sorted(changed)}"
