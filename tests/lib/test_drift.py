"""Drift math against a cached reference: agrees with scipy/Evidently, calibrated per column."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from pipelines.platform.lib.drift import (
    SKETCH_POINTS,
    DriftInputError,
    DriftReference,
    detect_drift,
    evidently_report,
    evidently_verdict,
    summarize_reference,
)

NUMERIC = ["x", "y"]
CATEGORICAL = ["c"]


def _frame(rng, n, shift=0.0, probs=(0.5, 0.3, 0.2)):
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "y": rng.exponential(2.0, n),
            "c": rng.choice(["a", "b", "c"], n, p=list(probs)),
        }
    )


@pytest.fixture
def reference_frame():
    return _frame(np.random.default_rng(0), 30_000)


def test_distances_match_scipy(reference_frame):
    rng = np.random.default_rng(1)
    current = _frame(rng, 2_000, shift=0.4, probs=(0.2, 0.3, 0.5))
    reference = summarize_reference(reference_frame, NUMERIC, CATEGORICAL)
    result = detect_drift(reference, current)
    by_name = {c.column: c for c in result.columns}
    expected_w = wasserstein_distance(reference_frame.x, current.x) / reference_frame.x.std()
    assert by_name["x"].distance == pytest.approx(expected_w, rel=0.05)
    p = reference_frame.c.value_counts(normalize=True).sort_index()
    q = current.c.value_counts(normalize=True).sort_index()
    # The sketch holds category shares to 1/SKETCH_POINTS.
    assert by_name["c"].distance == pytest.approx(jensenshannon(p, q), abs=2e-3)
    assert by_name["x"].drifted and by_name["c"].drifted
    assert not by_name["y"].drifted
    assert result.drift_share == pytest.approx(2 / 3)
    assert result.status == "drift"


def test_same_distribution_does_not_drift(reference_frame):
    current = _frame(np.random.default_rng(2), 1_000)
    result = detect_drift(summarize_reference(reference_frame, NUMERIC, CATEGORICAL), current)
    assert result.status == "no_drift"
    assert result.drift_share == 0


def test_too_few_rows_is_insufficient_not_no_drift(reference_frame):
    reference = summarize_reference(reference_frame, NUMERIC, CATEGORICAL)
    result = detect_drift(reference, _frame(np.random.default_rng(3), 50), min_rows=200)
    assert result.status == "insufficient"
    assert "50 rows" in result.reason
    assert np.isnan(result.drift_share)


def test_missing_column_is_named(reference_frame):
    reference = summarize_reference(reference_frame, NUMERIC, CATEGORICAL)
    with pytest.raises(DriftInputError, match=r"\['y'\]"):
        detect_drift(reference, _frame(np.random.default_rng(4), 500).drop(columns="y"))


def test_unseen_categories_drift_and_an_empty_column_is_reported_missing(reference_frame):
    reference = summarize_reference(reference_frame, NUMERIC, CATEGORICAL)
    current = _frame(np.random.default_rng(5), 1_000)
    current["c"] = "zz"  # never seen in the reference
    current["x"] = np.nan  # a feature gone missing entirely: no distribution to compare
    result = detect_drift(reference, current)
    by_name = {c.column: c for c in result.columns}
    assert by_name["c"].drifted and by_name["c"].distance == pytest.approx(np.sqrt(np.log(2)))
    assert result.missing == {"x": "current"} and "x" not in by_name
    assert result.drift_share == pytest.approx(1 / 2)  # of the two measured columns
    assert sum(reference.columns["c"].counts.values()) == SKETCH_POINTS


def test_thresholds_are_calibrated_on_the_reference_days():
    """A column constant within each day (the weekday) differs from the whole on every normal
    day; calibrated on the reference's own days, a normal day does not drift."""
    rng = np.random.default_rng(6)
    days = np.repeat([f"2013-01-{d:02d}" for d in range(1, 29)], 500)
    frame = _frame(rng, len(days)).assign(weekday=pd.to_datetime(days).dayofweek.astype(float))
    reference = summarize_reference(frame, [*NUMERIC, "weekday"], CATEGORICAL, days=pd.Series(days))
    assert reference.columns["weekday"].threshold > 1.0
    assert reference.columns["x"].threshold == pytest.approx(0.1, abs=0.05)
    normal_day = _frame(rng, 500).assign(weekday=2.0)
    by_name = {c.column: c for c in detect_drift(reference, normal_day).columns}
    assert not by_name["weekday"].drifted
    assert detect_drift(reference, normal_day).status == "no_drift"


def test_reference_round_trips_through_json(reference_frame):
    reference = summarize_reference(reference_frame, NUMERIC, CATEGORICAL, {"champion": "3"})
    import json

    again = DriftReference.from_dict(json.loads(json.dumps(reference.as_dict())))
    current = _frame(np.random.default_rng(7), 800, shift=0.5)
    assert detect_drift(again, current).summary() == detect_drift(reference, current).summary()


def _assert_one_verdict(result, snapshot):
    verdict = evidently_verdict(snapshot.dict()["metrics"])
    assert verdict["columns"] == [c.column for c in result.columns]
    for column in result.columns:
        assert verdict["distances"][column.column] == pytest.approx(column.distance, abs=1e-9)
    assert verdict["drifted"] - {"prediction"} == {c.column for c in result.drifted_columns}
    assert verdict["count"] == len(result.drifted_columns)
    assert verdict["share"] == pytest.approx(result.drift_share, abs=1e-12)


@pytest.mark.slow
def test_evidently_report_is_the_cached_check(reference_frame, tmp_path):
    """Evidently on the reference sketch: the same distances, drifted columns and share."""
    current = _frame(np.random.default_rng(8), 1_000, shift=0.4, probs=(0.2, 0.3, 0.5))
    reference = summarize_reference(reference_frame, NUMERIC, CATEGORICAL)
    thresholds = {"x": 0.3, "y": 0.05, "c": 0.5}  # per column: one drifts, two do not
    reference = DriftReference(
        reference.rows,
        {n: replace(c, threshold=thresholds[n]) for n, c in reference.columns.items()},
    )
    result = detect_drift(reference, current)
    snapshot = evidently_report(reference.frame(), current, NUMERIC, CATEGORICAL, thresholds)
    _assert_one_verdict(result, snapshot)
    assert [c.column for c in result.drifted_columns] == ["x"]
    snapshot.save_html(str(tmp_path / "report.html"))
    assert (tmp_path / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_evidently_and_the_cached_check_agree_on_a_real_day():
    """Real flights: the first three weeks of 2013 as the reference (calibrated on its days),
    January 28 as the current day; the prediction stood in by the scheduled hour."""
    from pipelines.tasks.flight_delay.source import day_key, read_table

    flights = read_table("flights")
    flights = flights[flights.month == 1].assign(day_key=day_key, prediction=lambda f: f.hour / 24)
    numeric, categorical = ["distance", "sched_dep_time", "hour", "minute"], ["carrier", "origin"]
    past = flights[flights.day <= 21]
    today = flights[flights.day == 28]
    reference = summarize_reference(
        past, [*numeric, "prediction"], categorical, days=past.day_key.reset_index(drop=True)
    )
    result = detect_drift(reference, today, today.prediction.to_numpy())
    thresholds = {n: c.threshold for n, c in reference.columns.items()}
    snapshot = evidently_report(
        reference.frame(), today, numeric, categorical, thresholds, extra=["prediction"]
    )
    _assert_one_verdict(result, snapshot)
    verdict = evidently_verdict(snapshot.dict()["metrics"])
    assert verdict["distances"]["prediction"] == pytest.approx(result.prediction.distance)
    assert len(verdict["distances"]) == len(numeric) + len(categorical) + 1


@pytest.mark.slow
def test_evidently_page_leaves_out_a_column_empty_on_one_side(reference_frame):
    current = _frame(np.random.default_rng(9), 500).assign(x=np.nan)
    snapshot = evidently_report(reference_frame.head(2_000), current, NUMERIC, CATEGORICAL)
    shown = [
        m["metric_name"] for m in snapshot.dict()["metrics"] if "ValueDrift" in m["metric_name"]
    ]
    assert not any("column=x," in name for name in shown) and len(shown) == 2


@pytest.mark.slow  # Evidently's import alone is ~5 s
def test_a_constant_reference_column_is_reported_not_measured_and_evidently_agrees(
    reference_frame,
):
    """A month over a January reference: any other value is 'infinite' drift in units of a zero
    spread. It is named as constant and left out of the share, here and in Evidently's page."""
    frame = reference_frame.assign(month=1.0)
    reference = summarize_reference(frame, [*NUMERIC, "month"], CATEGORICAL)
    current = _frame(np.random.default_rng(3), 2_000).assign(month=2.0)
    result = detect_drift(reference, current)
    assert result.constant == ["month"]
    assert "month" not in {c.column for c in result.columns}
    assert result.status == "no_drift" and result.drift_share == 0.0
    assert result.summary()["constant_in_reference"] == ["month"]
    snapshot = evidently_report(
        reference.frame(),
        current,
        [*NUMERIC, "month"],
        CATEGORICAL,
        {n: c.threshold for n, c in reference.columns.items()},
    )
    verdict = evidently_verdict(snapshot.dict()["metrics"])
    assert "month" not in verdict["columns"] and verdict["count"] == 0


def test_drift_chart_draws_distances_relative_to_each_threshold():
    from pipelines.platform.lib.plots import drift_chart

    png = drift_chart(
        {"a": 0.05, "b": 0.3, "month": 1000.0},
        {"a": 0.1, "b": 0.1, "month": 0.1},
        "t",
        constant={"weekday": True},
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
