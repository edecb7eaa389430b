"""The drift sensor's decision: which day triggers a retrain, and why the others do not."""

import pandas as pd

from pipelines.platform.lib.retrain_policy import DriftCursor, Thresholds, decide


def _reports(*rows):
    base = {
        "status": "no_drift",
        "drift_share": 0.1,
        "prediction_distance": 0.05,
        "prediction_drifted": False,
        "reason": "",
        "reference_version": "1",
    }
    return pd.DataFrame([{**base, **row} for row in rows])


NO_LIVE = pd.DataFrame()


def test_drift_share_over_the_threshold_triggers_with_its_scores():
    reports = _reports(
        {"partition_date": "2013-06-01"},
        {"partition_date": "2013-06-02", "status": "drift", "drift_share": 0.62},
    )
    decision = decide(["2013-06-01", "2013-06-02"], reports, NO_LIVE, Thresholds(), None)
    assert decision.trigger_day == "2013-06-02"
    assert decision.reasons == ["drift share 0.62 >= 0.5"]
    assert decision.scores["drift_share"] == "0.6200"
    assert decision.skipped == ["2013-06-01: within thresholds (drift share 0.10)"]


def test_prediction_drift_alone_triggers():
    reports = _reports(
        {"partition_date": "2013-06-03", "prediction_drifted": True, "prediction_distance": 0.4}
    )
    decision = decide(["2013-06-03"], reports, NO_LIVE, Thresholds(), None)
    assert decision.trigger_day == "2013-06-03"
    assert "prediction drift" in decision.reasons[0]


def test_insufficient_and_no_reference_days_never_trigger():
    reports = _reports(
        {
            "partition_date": "2013-06-01",
            "status": "insufficient",
            "drift_share": float("nan"),
            "reason": "40 rows; a drift decision needs at least 200",
        },
        {
            "partition_date": "2013-06-02",
            "status": "no_reference",
            "drift_share": float("nan"),
            "reason": "no champion",
        },
    )
    decision = decide(
        ["2013-06-01", "2013-06-02", "2013-06-03"], reports, NO_LIVE, Thresholds(), None
    )
    assert decision.trigger_day is None
    assert decision.skipped[0].startswith("2013-06-01: drift report insufficient: 40 rows")
    assert decision.skipped[1].startswith("2013-06-02: drift report no_reference")
    assert decision.skipped[2] == "2013-06-03: no drift report"


def test_cooldown_after_the_last_trigger():
    reports = _reports(
        {"partition_date": "2013-06-05", "status": "drift", "drift_share": 0.8},
        {"partition_date": "2013-06-09", "status": "drift", "drift_share": 0.8},
    )
    decision = decide(
        ["2013-06-05", "2013-06-09"], reports, NO_LIVE, Thresholds(cooldown_days=7), "2013-06-02"
    )
    assert decision.trigger_day == "2013-06-09"
    assert "cooldown after the retrain triggered by 2013-06-02" in decision.skipped[0]


def test_falling_live_auc_triggers():
    reports = _reports(*({"partition_date": f"2013-06-0{d}"} for d in range(1, 4)))
    live = pd.DataFrame(
        {
            "partition_date": ["2013-06-01", "2013-06-02", "2013-06-03"],
            "status": "ok",
            "rows": 800,
            "roc_auc": [0.70, 0.62, 0.60],
            "champion_holdout_roc_auc": 0.72,
        }
    )
    decision = decide(["2013-06-01", "2013-06-02", "2013-06-03"], reports, live, Thresholds(), None)
    assert decision.trigger_day == "2013-06-02"  # rolling (0.70 + 0.62) / 2 = 0.66 < 0.67
    assert decision.reasons[0].startswith("live AUC (7-day) 0.660 < 0.670")
    assert decision.scores["live_roc_auc_7d"] == "0.6600"


def test_cursor_round_trip():
    cursor = DriftCursor(storage_id=42, last_trigger_day="2013-06-02", checked_at=1.5)
    assert DriftCursor.parse(cursor.dump()) == cursor
    assert DriftCursor.parse(None) == DriftCursor()
