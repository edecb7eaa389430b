"""Wind power's facts are stamped when they became known: a 10-minute reading is known when its
10 minutes have ended. Changing every reading known only after an instant T changes nothing that a
prediction made at or before T sees, in the feature table or through Feast's point-in-time join;
a training row made at t carries the reading of [t - 10 min, t), never the one stamped after t;
and the export's real defects meet the platform's checks."""

import numpy as np
import pandas as pd
import pytest

from pipelines.platform.components.task import load_task
from pipelines.platform.components.training import prediction_entities
from pipelines.platform.lib import validation
from pipelines.platform.lib.feature_store import (
    historical_features,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.landing import read_landed_day
from pipelines.tasks.wind_power import features as F
from pipelines.tasks.wind_power.contracts import SCADA
from pipelines.tasks.wind_power.replay import replay_days
from pipelines.tasks.wind_power.schemas import TurbineNow
from pipelines.tasks.wind_power.source import TURBINES, day_key, read_scada
from tests.feast_scratch import task_store
from tests.tasks.wind_power.readings import (
    assert_rows_carry_the_last_complete_reading,
    scada_readings,
)

TASK = load_task("wind_power")
T = pd.Timestamp("2014-09-10T10:00", tz="UTC")  # noon in Paris
MEASURED = ("P_avg", "Ws_avg", "Wa_avg")


def _raw(first: str = "2014-09-01", last: str = "2014-09-11") -> pd.DataFrame:
    frame = read_scada()
    day = day_key(frame["Date_time"])
    frame = frame[(day >= first) & (day <= last)].reset_index(drop=True)
    return frame.assign(**{PARTITION_COLUMN: day_key(frame["Date_time"])})


def _later_readings_changed(raw: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """Every reading whose 10 minutes end after T redrawn (it is known only after T)."""
    known_at = pd.to_datetime(raw["Date_time"], utc=True) + pd.Timedelta(minutes=10)
    late = (known_at > T).to_numpy()
    changed = raw.copy()
    rng = np.random.default_rng(seed)
    changed.loc[late, "P_avg"] = rng.uniform(0, 2050, late.sum())
    changed.loc[late, "Ws_avg"] = rng.uniform(0, 20, late.sum())
    changed.loc[late, "Wa_avg"] = rng.uniform(0, 360, late.sum())
    assert late.sum() > 500  # the last day and a half
    return changed


@pytest.fixture(scope="module")
def worlds():
    raw = _raw()
    keys = sorted(raw[PARTITION_COLUMN].unique())[1:]  # the first day is the window before
    return {
        name: (F.scada_features(frame, keys), F.examples(frame, keys))
        for name, frame in (("real", raw), ("changed", _later_readings_changed(raw)))
    }


def test_feature_rows_known_by_t_do_not_depend_on_later_readings(worlds):
    (real, _), (changed, _) = worlds["real"], worlds["changed"]
    before = [t[t["event_timestamp"] <= T].reset_index(drop=True) for t in (real, changed)]
    assert len(before[0]) > 144 * 4 * 8
    pd.testing.assert_frame_equal(*before)
    # rows stamped after T did change: the perturbation reached the table
    assert not real[real["event_timestamp"] > T].equals(changed[changed["event_timestamp"] > T])


def test_the_label_compares_the_next_hour_but_one_with_the_last_and_is_never_a_feature(worlds):
    """Recomputed the slow way, reading by reading, for a sample of examples."""
    _, examples = worlds["real"]
    power = scada_readings(_raw()).sort_index()
    assert 0.03 < examples["label"].mean() < 0.3
    rng = np.random.default_rng(0)
    checked = 0
    for i in rng.choice(len(examples), 300, replace=False):
        row = examples.iloc[i]
        t, readings = row["predicted_at"], power.loc[row["turbine"]]
        last = readings[(readings.index >= t - F.LEAD) & (readings.index < t)].dropna()
        target = readings[(readings.index >= t + F.LEAD) & (readings.index < t + 2 * F.LEAD)]
        target = target.dropna()
        if len(last) < 4 or len(target) < 4:
            assert np.isnan(row["label"])
            continue
        assert row["label"] == float(target.mean() - last.mean() >= F.RAMP_KW), row
        checked += 1
    assert checked > 250
    assert "label" not in TASK.spec.features and "P_avg" not in TASK.spec.features


def _store(tmp_path, name: str, table: pd.DataFrame):
    lake = Lake(str(tmp_path / name / "lake"))
    lake.write_partitions(
        TASK.table("scada_features"), table, sorted(table[PARTITION_COLUMN].unique())
    )
    return task_store(tmp_path / name, lake, TASK, "wind_power_pit")


def test_training_rows_see_the_last_complete_interval_and_nothing_later(worlds, tmp_path):
    """Through Feast: a row predicted at t gets the power of [t - 10 min, t) (stamped t), not that
    of [t, t + 10 min) (stamped t + 10 min); rows predicted by T are the same in both worlds."""
    joined = {}
    for name, (table, examples) in worlds.items():
        early = examples[examples["predicted_at"] <= T].reset_index(drop=True)
        _, entities = prediction_entities(TASK, early, 0)
        joined[name] = historical_features(
            _store(tmp_path, name, table), entities, TASK.spec.feature_service
        )
    pd.testing.assert_frame_equal(joined["real"], joined["changed"])

    rows = joined["real"]
    assert_rows_carry_the_last_complete_reading(
        rows, rows["event_timestamp"], scada_readings(_raw())
    )


def test_replay_lands_one_file_per_paris_day_and_refuses_days_outside_the_data(tmp_path):
    day = pd.Timestamp("2014-09-02").date()
    [landed] = replay_days(tmp_path, day, day)
    assert landed.rows == 144 * 4 and landed.path.name == "2014-09-02.csv"
    with pytest.raises(ValueError, match=r"2014-01-01\.\.2015-12-31"):
        replay_days(tmp_path, pd.Timestamp("2016-01-01").date(), pd.Timestamp("2016-01-02").date())


def test_a_real_day_passes_and_the_exports_repeated_spring_hour_is_stopped(tmp_path):
    """The export writes 03:00-03:50 twice on spring-forward day (the 02:00 hour relabelled):
    the uniqueness check fails that day, naming the repeated rows; the day before passes."""
    for day in ("2014-03-29", "2014-03-30"):
        replay_days(tmp_path, *[pd.Timestamp(day).date()] * 2)
    ok = read_landed_day(tmp_path, "scada", "2014-03-29").frame
    outcomes = validation.validate(
        ok.assign(**{PARTITION_COLUMN: "2014-03-29"}), SCADA, ["2014-03-29"]
    )
    assert all(o.passed for o in outcomes.values()), outcomes
    bad = read_landed_day(tmp_path, "scada", "2014-03-30").frame
    outcomes = validation.validate(
        bad.assign(**{PARTITION_COLUMN: "2014-03-30"}), SCADA, ["2014-03-30"]
    )
    assert {n for n, o in outcomes.items() if not o.passed} == {"unique_rows"}
    [failure] = outcomes["unique_rows"].failures
    assert failure["rows"] == 2 * 6 * len(TURBINES)  # both copies of six readings, each turbine


def test_request_names_the_bad_field():
    ok = TurbineNow(turbine=TURBINES[0], predicted_at="2014-10-26T02:30:00+01:00")
    assert ok.to_row()["predicted_at"] == pd.Timestamp("2014-10-26T01:30", tz="UTC")
    with pytest.raises(ValueError, match="turbine"):
        TurbineNow(turbine="R99999", predicted_at="2014-10-16T09:00:00+02:00")
    with pytest.raises(ValueError, match="DST"):  # 02:30 on 2014-10-26 happened twice in Paris
        TurbineNow(turbine=TURBINES[0], predicted_at="2014-10-26T02:30:00")
