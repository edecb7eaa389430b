"""Metrics, the paired bootstrap and the gate's decision, on frames small enough to reason about."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.platform.lib.evaluation import (
    BootstrapInterval,
    _weighted_auc,
    _weighted_ece,
    _weighted_log_loss,
    binary_metrics,
    decide_promotion,
    expected_calibration_error,
    paired_bootstrap_auc_difference,
    paired_bootstrap_differences,
)
from pipelines.platform.lib.task import GateThresholds


def _scores(n=4000, signal=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(float)
    return y, 1 / (1 + np.exp(-(rng.normal(0, 1, n) + signal * y - 1)))


def test_calibration_error_is_zero_when_rates_match_and_large_when_they_do_not():
    y = np.array([0, 0, 0, 1] * 50, dtype=float)
    assert expected_calibration_error(y, np.full(len(y), 0.25)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(len(y), 0.95)) == pytest.approx(0.70)


def test_metrics_match_sklearn_and_weighted_auc_matches_sample_weights():
    y, p = _scores()
    assert binary_metrics(y, p)["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    weights = np.random.default_rng(1).integers(0, 3, len(y)).astype(float)
    rounded = np.round(p, 2)  # ties are counted half, as sklearn does
    assert _weighted_auc(y, rounded, weights[None])[0] == pytest.approx(
        roc_auc_score(y, rounded, sample_weight=weights)
    )


def test_bootstrap_of_a_model_against_itself_is_zero_and_a_better_model_is_above_zero():
    y, strong = _scores(signal=1.5)
    same = paired_bootstrap_auc_difference(y, strong, strong, samples=200)
    assert same.low == same.high == 0.0
    _, weak = _scores(signal=0.3, seed=5)
    better = paired_bootstrap_auc_difference(y, strong, weak[: len(y)], samples=200)
    assert better.low > 0 and better.mean == pytest.approx(
        roc_auc_score(y, strong) - roc_auc_score(y, weak), abs=0.01
    )


def _slices(candidate, reference, rows=1000):
    return pd.DataFrame(
        [
            {
                "column": "origin",
                "value": "JFK",
                "rows": rows,
                "lightgbm": candidate,
                "champion": reference,
            }
        ]
    )


def _decide(gain_low, auc_gain=0.01, slices=None, **thresholds):
    return decide_promotion(
        candidate_auc=0.70 + auc_gain,
        reference_auc=0.70,
        reference="champion",
        interval=BootstrapInterval(auc_gain, gain_low, auc_gain + 0.01, 1000, 0.95),
        slices=slices if slices is not None else _slices(0.70, 0.70),
        candidate="lightgbm",
        thresholds=GateThresholds(**thresholds),
    )


def test_gate_promotes_a_clear_improvement():
    decision = _decide(gain_low=0.004)
    assert decision.passed and decision.reasons == []


def test_gate_refuses_a_gain_below_the_margin_or_an_interval_touching_zero():
    assert "below the margin" in _decide(gain_low=0.0005, auc_gain=0.001).reasons[0]
    refused = _decide(gain_low=-0.001)
    assert not refused.passed and "[-0.0010, +0.0200] includes zero" in refused.reasons[0]


def test_gate_message_is_right_for_an_interval_entirely_below_zero():
    refused = decide_promotion(
        candidate_auc=0.741,
        reference_auc=0.754,
        reference="champion",
        interval=BootstrapInterval(-0.013, -0.0223, -0.0032, 1000, 0.95),
        slices=_slices(0.70, 0.70),
        candidate="lightgbm",
        thresholds=GateThresholds(),
    )
    text = " ".join(refused.reasons)
    assert "[-0.0223, -0.0032] lies entirely below zero" in text
    assert "exclude" not in text and "includes zero" not in text


def test_weighted_log_loss_and_ece_equal_the_plain_metrics_at_unit_weights():
    y, p = _scores()
    ones = np.ones((1, len(y)))
    plain = binary_metrics(y, p)
    assert _weighted_log_loss(y, p, ones)[0] == pytest.approx(plain["log_loss"])
    assert _weighted_ece(y, p, ones)[0] == pytest.approx(expected_calibration_error(y, p))
    weights = np.random.default_rng(2).integers(0, 3, len(y)).astype(float)
    repeated = np.repeat(np.arange(len(y)), weights.astype(int))
    assert _weighted_ece(y, p, weights[None])[0] == pytest.approx(
        expected_calibration_error(y[repeated], p[repeated])
    )


def _decide_calibration(p_candidate, p_reference, y, **thresholds):
    intervals = paired_bootstrap_differences(y, p_candidate, p_reference, samples=300)
    a, b = binary_metrics(y, p_candidate), binary_metrics(y, p_reference)
    return decide_promotion(
        candidate_auc=a["roc_auc"],
        reference_auc=b["roc_auc"],
        reference="champion",
        interval=intervals["roc_auc"],
        slices=_slices(0.70, 0.70),
        candidate="lightgbm",
        thresholds=GateThresholds(**thresholds),
        log_loss=(a["log_loss"] - b["log_loss"], intervals["log_loss"]),
        ece=(a["ece"] - b["ece"], intervals["ece"]),
    )


def test_gate_refuses_a_better_ranking_whose_calibration_got_much_worse():
    y, strong = _scores(signal=1.5)
    _, weak = _scores(signal=1.0, seed=5)
    # Same order of rows (AUC unchanged), probabilities pushed up: ranking better, calibration worse.
    logit = np.log(strong / (1 - strong))
    miscalibrated = 1 / (1 + np.exp(-(logit + 1.2)))
    decision = _decide_calibration(miscalibrated, weak, y)
    names = {c.name: c for c in decision.criteria}
    assert names["roc_auc gain"].passed
    assert not names["ece"].passed and not decision.passed
    assert any(r.startswith("ece +") for r in decision.reasons)
    # Against a naive baseline (a first champion) calibration is shown, not judged.
    first = decide_promotion(
        candidate_auc=decision.criteria[0].observed + 0.7,
        reference_auc=0.7,
        reference="rate by carrier",
        interval=BootstrapInterval(0.02, 0.01, 0.03, 300, 0.95),
        slices=_slices(0.70, 0.70).rename(columns={"champion": "rate by carrier"}),
        candidate="lightgbm",
        thresholds=GateThresholds(),
        ece=(0.08, BootstrapInterval(0.08, 0.04, 0.12, 300, 0.95)),
    )
    assert first.passed, first.reasons
    assert {c.name: c.limit for c in first.criteria}["ece"].startswith("not applied")
    # The same ranking, calibrated: every criterion passes.
    calibrated = _decide_calibration(strong, weak, y)
    assert calibrated.passed, calibrated.reasons
    assert [c.name for c in calibrated.criteria] == ["roc_auc gain", "log_loss", "ece", "slices"]


def test_gate_refuses_an_unfair_comparison_whatever_the_numbers():
    decision = decide_promotion(
        candidate_auc=0.80,
        reference_auc=0.70,
        reference="champion",
        interval=BootstrapInterval(0.1, 0.08, 0.12, 1000, 0.95),
        slices=_slices(0.70, 0.70),
        candidate="lightgbm",
        thresholds=GateThresholds(),
        unfair="champion v3 was trained on data up to 2013-02-03, inside the holdout",
    )
    assert not decision.passed
    assert decision.reasons[0].startswith("the comparison cannot be fair: champion v3")


def test_gate_refuses_a_large_slice_regression_and_ignores_a_small_one():
    refused = _decide(gain_low=0.004, slices=_slices(0.60, 0.70))
    assert not refused.passed
    assert refused.regressed_slices == [{"slice": "origin=JFK", "rows": 1000, "delta": -0.1}]
    assert _decide(gain_low=0.004, slices=_slices(0.60, 0.70, rows=50)).passed
