"""The drift sensor's decision: which day triggers a retrain, and why the others do not."""

import pandas as pd
import pytest

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


def test_falling_live_auc_triggers_even_when_the_day_is_too_small_for_a_drift_verdict():
    """Sparse live traffic: no drift verdict, but labels say the champion got worse."""
    days = ["2013-06-01", "2013-06-02"]
    reports = _reports(
        *(
            {
                "partition_date": d,
                "status": "insufficient",
                "drift_share": float("nan"),
                "reason": "12 live rows; a drift decision needs at least 200",
            }
            for d in days
        )
    )
    live = pd.DataFrame(
        {
            "partition_date": days,
            "status": ["ok", "degraded"],
            "rows": 800,
            "roc_auc": [0.66, 0.60],
            "champion_holdout_roc_auc": 0.72,
        }
    )
    decision = decide(days, reports, live, Thresholds(), None)
    assert decision.trigger_day == "2013-06-01"
    assert decision.reasons[0].startswith("live AUC (7-day) 0.660 < 0.670")


def test_cursor_round_trip():
    cursor = DriftCursor(storage_id=42, last_trigger_day="2013-06-02", checked_at=1.5)
    assert DriftCursor.parse(cursor.dump()) == cursor
    assert DriftCursor.parse(None) == DriftCursor()


def test_a_day_the_champion_trained_on_never_triggers():
    from pipelines.platform.lib.monitoring import TRAINED_ON

    reports = _reports(
        {"partition_date": "2013-06-01", "status": TRAINED_ON, "drift_share": 0.9},
    )
    decision = decide(["2013-06-01"], reports, NO_LIVE, Thresholds(), None)
    assert decision.trigger_day is None
    assert decision.skipped[0].startswith("2013-06-01: drift report trained_on")


def test_one_degraded_rule_and_the_fair_holdout_date():
    from pipelines.platform.lib.retrain_policy import fair_until, live_degraded, live_floor

    t = Thresholds(max_live_auc_drop=0.05)
    assert live_floor(0.74, t) == pytest.approx(0.69)
    assert live_degraded(0.70, 0.74, t) is None
    assert live_degraded(0.68, 0.74, t) == "live AUC (7-day) 0.680 < 0.690 (holdout 0.740 - 0.05)"
    assert live_degraded(float("nan"), 0.74, t) is None
    # Trained through Feb 3 with a 7-day holdout: the first fair `until` is Feb 10.
    assert fair_until("2013-02-03", 7) == "2013-02-10"


def test_latest_verdicts_keep_history_and_pick_the_newest_of_a_champion():
    from pipelines.platform.lib.monitoring import latest_verdicts

    history = pd.DataFrame(
        [
            {
                "partition_date": "d1",
                "status": "drift",
                "reference_version": "1",
                "judged_at": "t1",
            },
            {
                "partition_date": "d1",
                "status": "no_drift",
                "reference_version": "3",
                "judged_at": "t3",
            },
            {
                "partition_date": "d2",
                "status": "drift",
                "reference_version": "1",
                "judged_at": "t2",
            },
        ]
    )
    newest = latest_verdicts(history)
    assert newest.set_index("partition_date")["status"].to_dict() == {
        "d1": "no_drift",
        "d2": "drift",
    }
    of_v1 = latest_verdicts(history, "1")
    assert of_v1.set_index("partition_date")["status"].to_dict() == {"d1": "drift", "d2": "drift"}
    assert latest_verdicts(history, "3")["partition_date"].tolist() == ["d1"]


def test_a_judged_day_is_kept_unless_asked_and_a_trained_on_day_gets_no_verdict():
    from pipelines.platform.lib.monitoring import TRAINED_ON, plan_judgements

    history = pd.DataFrame(
        [
            {
                "partition_date": "2013-02-02",
                "status": "drift",
                "reference_version": "1",
                "judged_at": "t1",
            },
        ]
    )
    days = ["2013-01-31", "2013-02-02", "2013-02-03"]
    plans = {p.day: p for p in plan_judgements(days, history, "2013-01-31", rejudge=False)}
    assert plans["2013-01-31"].action == TRAINED_ON
    assert plans["2013-02-02"].action == "keep" and plans["2013-02-02"].earlier == 1
    assert plans["2013-02-02"].note == "kept: drift judged by v1 at t1"
    assert plans["2013-02-03"].action == "judge" and plans["2013-02-03"].earlier == 0
    before_champion = pd.DataFrame(
        [{"partition_date": "2013-02-03", "status": "no_reference", "reason": "no champion yet"}]
    )
    [first] = plan_judgements(["2013-02-03"], before_champion, "2013-01-31", rejudge=False)
    assert first.action == "judge" and first.earlier == 1  # "no champion yet" is no verdict
    again = {p.day: p for p in plan_judgements(days, history, "2013-01-31", rejudge=True)}
    assert again["2013-02-02"].action == "judge" and again["2013-02-02"].earlier == 1
