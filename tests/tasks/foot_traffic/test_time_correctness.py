"""Foot traffic's facts are stamped when they became known: a count is known when the hour it
counts has ended. Changing every count known only after an instant T changes nothing that a
prediction made at or before T sees, in the feature table or through Feast's point-in-time join;
and a training row made at t carries the count of hour t - 1 h, never the one stamped after t."""

import numpy as np
import pandas as pd
import pytest

from pipelines.platform.components.task import load_task
from pipelines.platform.components.training import prediction_entities
from pipelines.platform.lib.feature_store import (
    FeastLocation,
    apply_definitions,
    historical_features,
    open_store,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.settings import PROJECT_ROOT
from pipelines.tasks.foot_traffic import features as F
from pipelines.tasks.foot_traffic.replay import replay_days
from pipelines.tasks.foot_traffic.schemas import SensorHour
from pipelines.tasks.foot_traffic.source import SENSORS, day_key, read_counts

TASK = load_task("foot_traffic")
T = pd.Timestamp("2015-03-09T05:00", tz="UTC")  # a Monday, 16:00 in Melbourne


def _raw(first: str = "2015-03-01", last: str = "2015-03-10") -> pd.DataFrame:
    frame = read_counts()
    day = day_key(frame["date_time"])
    frame = frame[(day >= first) & (day <= last)].reset_index(drop=True)
    return frame.assign(**{PARTITION_COLUMN: day_key(frame["date_time"])})


def _later_counts_changed(raw: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """Every count whose hour ends after T redrawn (it is known only after T)."""
    known_at = pd.to_datetime(raw["date_time"], utc=True) + pd.Timedelta(hours=1)
    late = (known_at > T).to_numpy()
    changed = raw.copy()
    rng = np.random.default_rng(seed)
    changed.loc[late, "count"] = rng.integers(0, 5000, late.sum())
    assert late.sum() > 100  # the last day and a third
    return changed


@pytest.fixture(scope="module")
def worlds():
    raw = _raw()
    keys = sorted(raw[PARTITION_COLUMN].unique())
    return {
        name: (F.count_features(frame, keys), F.examples(frame, keys))
        for name, frame in (("real", raw), ("changed", _later_counts_changed(raw)))
    }


def test_feature_rows_known_by_t_do_not_depend_on_later_counts(worlds):
    (real, _), (changed, _) = worlds["real"], worlds["changed"]
    before = [t[t["event_timestamp"] <= T].reset_index(drop=True) for t in (real, changed)]
    assert len(before[0]) > 24 * 4 * 7
    pd.testing.assert_frame_equal(*before)
    # rows stamped after T did change: the perturbation reached the table
    assert not real[real["event_timestamp"] > T].equals(changed[changed["event_timestamp"] > T])


def test_the_label_compares_the_target_hour_with_a_week_earlier_and_is_never_a_feature(worlds):
    _, examples = worlds["real"]
    raw = _raw().assign(at=lambda f: pd.to_datetime(f["date_time"], utc=True))
    counts = raw.set_index(["sensor", "at"])["count"].astype("float64")
    target = examples["predicted_at"] + F.HORIZON
    now = counts.reindex(pd.MultiIndex.from_arrays([examples["sensor"], target])).to_numpy()
    before = counts.reindex(
        pd.MultiIndex.from_arrays([examples["sensor"], target - F.WEEK])
    ).to_numpy()
    labelled = examples["label"].notna().to_numpy()
    assert (labelled == ~np.isnan(before)).all()  # the first week has no label
    assert 0.1 < examples["label"].mean() < 0.4
    expected = now[labelled] >= F.SURGE * before[labelled]
    assert (examples["label"].to_numpy()[labelled].astype(bool) == expected).all()
    assert "label" not in TASK.spec.features and "count" not in TASK.spec.features


def _store(tmp_path, name: str, table: pd.DataFrame):
    lake = Lake(str(tmp_path / name / "lake"))
    lake.write_partitions(
        TASK.table("count_features"), table, sorted(table[PARTITION_COLUMN].unique())
    )
    store = open_store(
        FeastLocation(
            "foot_traffic_pit",
            str(tmp_path / name / "registry.db"),
            str(tmp_path / name / "online.db"),
            lake.root,
            str(PROJECT_ROOT / "feature_repo"),
        )
    )
    apply_definitions(store, TASK.feast_objects(lake.root), TASK.name)
    return store


def test_training_rows_see_the_last_complete_hour_and_nothing_later(worlds, tmp_path):
    """Through Feast: a row predicted at t gets the count of [t - 1 h, t) (stamped t), not the
    count of [t, t + 1 h) (stamped t + 1 h), and rows predicted by T are the same in both worlds."""
    joined = {}
    for name, (table, examples) in worlds.items():
        early = examples[examples["predicted_at"] <= T].reset_index(drop=True)
        _, entities = prediction_entities(TASK, early, 0)
        joined[name] = historical_features(
            _store(tmp_path, name, table), entities, TASK.spec.feature_service
        )
    pd.testing.assert_frame_equal(joined["real"], joined["changed"])

    rows = joined["real"]
    raw = _raw().assign(at=lambda f: pd.to_datetime(f["date_time"], utc=True))
    counts = raw.set_index(["sensor", "at"])["count"].astype("float64")
    t = pd.to_datetime(rows["event_timestamp"], utc=True)
    previous = counts.reindex(
        pd.MultiIndex.from_arrays([rows["sensor"], t - pd.Timedelta(hours=1)])
    )
    current = counts.reindex(pd.MultiIndex.from_arrays([rows["sensor"], t]))
    has = previous.notna().to_numpy()
    assert has.mean() > 0.95
    np.testing.assert_array_equal(rows["count_last_hour"].to_numpy()[has], previous.to_numpy()[has])
    assert (rows["count_last_hour"].to_numpy() != current.to_numpy()).any()


def test_replay_lands_one_file_per_melbourne_day_and_refuses_days_outside_the_data(tmp_path):
    day = pd.Timestamp("2015-03-02").date()
    [landed] = replay_days(tmp_path, day, day)
    assert landed.rows == 24 * 4 and landed.path.name == "2015-03-02.csv"
    dst = pd.Timestamp("2015-04-05").date()  # clocks went back: 25 local hours, 24 in the data
    [long_day] = replay_days(tmp_path, dst, dst)
    assert long_day.partition == "2015-04-05" and long_day.rows == 24 * 4
    with pytest.raises(ValueError, match=r"2015-01-01\.\.2016-12-31"):
        replay_days(tmp_path, pd.Timestamp("2013-01-01").date(), pd.Timestamp("2013-01-02").date())


def test_request_names_the_bad_field():
    ok = SensorHour(sensor=SENSORS[0], predicted_at="2015-04-05T02:30:00+10:00")
    assert ok.to_row()["predicted_at"] == pd.Timestamp("2015-04-04T16:30", tz="UTC")
    with pytest.raises(ValueError, match="sensor"):
        SensorHour(sensor="Flinders Street", predicted_at="2015-04-05T02:30:00+10:00")
    with pytest.raises(ValueError, match="DST"):  # 02:30 on 2015-04-05 happened twice
        SensorHour(sensor=SENSORS[0], predicted_at="2015-04-05T02:30:00")
