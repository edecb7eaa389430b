"""When monitoring evidence warrants a retrain: the drift sensor's plain logic."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from pipelines.platform.lib.monitoring import rolling_view

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Thresholds:
    drift_share: float = 0.5  # share of features drifting beyond their calibrated threshold
    prediction_drift: bool = True  # the champion's own output drifting is reason enough
    max_live_auc_drop: float = 0.05  # rolling 7-day AUC this far under the champion's holdout AUC
    cooldown_days: int = 7  # replayed days between two drift-launched retrains


def live_floor(holdout_auc: float, thresholds: Thresholds) -> float:
    """The rolling 7-day AUC under which the champion counts as degraded: the one rule that
    both `live_performance`'s status (and the line on its chart) and the drift sensor use."""
    return holdout_auc - thresholds.max_live_auc_drop


def live_degraded(rolling_auc: float, holdout_auc: float, thresholds: Thresholds) -> str | None:
    """Why the champion counts as degraded, or None."""
    if math.isnan(holdout_auc) or math.isnan(rolling_auc):
        return None
    floor = live_floor(holdout_auc, thresholds)
    if rolling_auc < floor:
        return (
            f"live AUC (7-day) {rolling_auc:.3f} < {floor:.3f} "
            f"(holdout {holdout_auc:.3f} - {thresholds.max_live_auc_drop})"
        )
    return None


def fair_until(champion_last_day: str, holdout_days: int) -> str:
    """The earliest `until` whose holdout of `holdout_days` days holds no day the champion
    trained on (its training ran through `champion_last_day`)."""
    last = date.fromisoformat(str(champion_last_day)[:10])
    return (last + timedelta(days=holdout_days)).isoformat()


@dataclass
class DriftCursor:
    storage_id: int = 0  # last drift_report / live_performance materialization read
    last_trigger_day: str | None = None
    checked_at: float = 0.0  # failed daily runs after this are reported once

    @classmethod
    def parse(cls, text: str | None) -> DriftCursor:
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class Decision:
    trigger_day: str | None = None
    reasons: list[str] = field(default_factory=list)  # why the trigger day triggers
    scores: dict[str, str] = field(default_factory=dict)  # what the run's tags record
    skipped: list[str] = field(default_factory=list)  # per day, why it did not trigger


def _reasons(report: pd.Series, live: pd.Series | None, t: Thresholds) -> list[str]:
    reasons = []
    if report.get("status") in ("drift", "no_drift"):
        if report["drift_share"] >= t.drift_share:
            reasons.append(f"drift share {report['drift_share']:.2f} >= {t.drift_share}")
        if t.prediction_drift and bool(report.get("prediction_drifted", False)):
            reasons.append(f"prediction drift (distance {report['prediction_distance']:.3f})")
    holdout = float(live.get("champion_holdout_roc_auc", "nan")) if live is not None else math.nan
    if live is not None and live.get("status") in ("ok", "degraded"):
        degraded = live_degraded(float(live["roc_auc_rolling_7d"]), holdout, t)
        if degraded:
            reasons.append(degraded)
    return reasons


def decide(
    days: list[str],
    reports: pd.DataFrame,
    live: pd.DataFrame,
    thresholds: Thresholds,
    last_trigger_day: str | None,
) -> Decision:
    """The first of `days` whose evidence crosses a threshold outside the cooldown triggers;
    every other day says why not. `reports` / `live` are the drift_report / live_performance rows
    (live with its history, for the rolling AUC)."""
    decision = Decision()
    reports = reports.set_index("partition_date") if len(reports) else reports
    rolled = None
    if len(live) and "roc_auc" in live.columns:
        rolled = rolling_view(live.assign(day=live["partition_date"]), "roc_auc")
    for day in sorted(days):
        if day not in reports.index:
            decision.skipped.append(f"{day}: no drift report")
            continue
        report = reports.loc[day]
        status = report.get("status")
        if status in ("no_reference", "trained_on"):
            decision.skipped.append(f"{day}: drift report {status}: {report.get('reason', '')}")
            continue
        live_row = rolled.loc[day] if rolled is not None and day in rolled.index else None
        # Too few rows for a drift verdict still leaves the live performance to judge.
        reasons = _reasons(report, live_row, thresholds)
        if not reasons:
            decision.skipped.append(
                f"{day}: drift report insufficient: {report.get('reason', '')}; live "
                "performance within its threshold"
                if status == "insufficient"
                else f"{day}: within thresholds (drift share {report['drift_share']:.2f})"
            )
            continue
        if decision.trigger_day is not None:
            decision.skipped.append(
                f"{day}: {'; '.join(reasons)}, but {decision.trigger_day} already triggers"
            )
            continue
        if last_trigger_day and date.fromisoformat(day) < date.fromisoformat(
            last_trigger_day
        ) + timedelta(days=thresholds.cooldown_days):
            decision.skipped.append(
                f"{day}: {'; '.join(reasons)}, but within the {thresholds.cooldown_days}-day "
                f"cooldown after the retrain triggered by {last_trigger_day}"
            )
            continue
        decision.trigger_day = day
        decision.reasons = reasons
        decision.scores = {
            "drift_share": f"{report['drift_share']:.4f}",
            "prediction_distance": f"{report.get('prediction_distance', float('nan')):.4f}",
        }
        if live_row is not None and live_row.get("status") in ("ok", "degraded"):
            decision.scores["live_roc_auc_7d"] = f"{live_row['roc_auc_rolling_7d']:.4f}"
    return decision


def drift_reasons(report: pd.Series, thresholds: Thresholds) -> list[str]:
    """Why a day's drift report is drift, by the drift sensor's own rule (the alerts use it)."""
    return _reasons(report, None, thresholds)


def live_reasons(live: pd.Series, thresholds: Thresholds) -> list[str]:
    """Why a day's rolling live performance is a degradation, by the drift sensor's own rule."""
    import pandas as pd

    return _reasons(pd.Series(dtype=object), live, thresholds)
