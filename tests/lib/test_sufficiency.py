"""Data sufficiency from an evaluation report: the detectable gain is the gate's own interval's
half-width, and the holdout needed for a margin grows as (half-width / margin)^2."""

from pipelines.platform.lib import sufficiency


def _report(low, high, candidate_auc, reference_auc):
    return {
        "auc_difference": {"low": low, "high": high, "mean": (low + high) / 2, "confidence": 0.95},
        "candidate": {"family": "lightgbm"},
        "reference": "baseline_current_value",
        "metrics": {
            "lightgbm": {"roc_auc": candidate_auc},
            "baseline_current_value": {"roc_auc": reference_auc},
        },
        "split": {
            "train": {"rows": 5000, "positives": 900},
            "valid": {"rows": 500, "positives": 90},
            "holdout": {"rows": 1000, "positives": 180},
        },
    }


def test_a_clear_gain_needs_no_more_days():
    out = sufficiency.assess(_report(0.01, 0.05, 0.80, 0.77), holdout_days=7)
    assert out["detectable_auc_gain"] == 0.02
    assert "holdout_days_to_detect" not in out
    [line] = sufficiency.summary_lines(out)
    assert "holdout 1,000 (180 positive)" in line and "0.020 or more at 95%" in line


def test_a_baseline_that_won_by_less_than_the_holdout_sees_says_how_many_days_would_settle_it():
    out = sufficiency.assess(_report(-0.05, 0.01, 0.75, 0.77), holdout_days=7)
    assert out["detectable_auc_gain"] == 0.03 and out["auc_gain"] == -0.02
    # 7 days * (0.03 / 0.02)^2 = 15.75 -> 16 days, 9 more
    assert out["holdout_days_to_detect"] == 16 and out["more_days"] == 9
    lines = sufficiency.summary_lines(out)
    assert lines[1].startswith("baseline_current_value led lightgbm by 0.020 AUC")
    assert "about 16 holdout days (9 more" in lines[1]


def test_a_tie_cannot_be_settled_by_more_days():
    out = sufficiency.assess(_report(-0.02, 0.02, 0.77, 0.77), holdout_days=7)
    assert out["holdout_days_to_detect"] is None
    assert "would make it detectable" not in sufficiency.summary_lines(out)[1]
