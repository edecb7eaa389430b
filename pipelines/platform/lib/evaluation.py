"""Holdout metrics, per-slice metrics, a paired bootstrap of the AUC difference, and the gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from pipelines.platform.lib.task import GateThresholds

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean prediction| over equal-width probability bins, weighted by size."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(error)


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    import numpy as np

    # sklearn costs ~1.6 s to import: imported where used, not when the code location loads.
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype="float64")
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "rows": len(y),
        "positive_rate": float(y.mean()),
    }


def slice_metrics(
    frame: pd.DataFrame, y: np.ndarray, predictions: dict[str, np.ndarray], columns
) -> pd.DataFrame:
    """AUC of every model on every value of every slice column (NaN where a slice has one class)."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    rows = []
    for column in columns:
        for value, index in frame.groupby(column, observed=True).indices.items():
            ys = y[index]
            row = {
                "column": column,
                "value": str(value),
                "rows": len(index),
                "positives": int(ys.sum()),
            }
            for name, p in predictions.items():
                row[name] = float(roc_auc_score(ys, p[index])) if 0 < ys.sum() < len(ys) else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _weighted_auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC under each row of `weights` (resample counts), ties counted half; vectorized."""
    import numpy as np

    order = np.argsort(p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])  # groups of tied scores
    w = weights[:, order]
    pos = np.add.reduceat(w * y_sorted, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y_sorted), starts, axis=1)
    pos_below = np.cumsum(pos, axis=1) - pos
    # For each negative group: positives scored above it, plus half the tied positives.
    pos_total = pos.sum(axis=1, keepdims=True)
    above = pos_total - pos_below - pos
    wins = (neg * (above + 0.5 * pos)).sum(axis=1)
    return wins / (pos_total[:, 0] * neg.sum(axis=1))


@dataclass(frozen=True)
class BootstrapInterval:
    mean: float
    low: float
    high: float
    samples: int
    confidence: float


def paired_bootstrap_auc_difference(
    y: np.ndarray,
    p_candidate: np.ndarray,
    p_reference: np.ndarray,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval:
    """AUC(candidate) - AUC(reference) over resamples of the *same* rows for both models."""
    import numpy as np

    y = np.asarray(y, dtype="float64")
    rng = np.random.default_rng(seed)
    diffs = []
    chunk = max(1, min(samples, 20_000_000 // max(len(y), 1)))
    done = 0
    while done < samples:
        size = min(chunk, samples - done)
        picks = rng.integers(0, len(y), size=(size, len(y)))
        counts = np.zeros((size, len(y)))
        np.add.at(counts, (np.arange(size)[:, None], picks), 1.0)
        diffs.append(_weighted_auc(y, p_candidate, counts) - _weighted_auc(y, p_reference, counts))
        done += size
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]
    alpha = (1 - confidence) / 2
    return BootstrapInterval(
        mean=float(d.mean()),
        low=float(np.quantile(d, alpha)),
        high=float(np.quantile(d, 1 - alpha)),
        samples=len(d),
        confidence=confidence,
    )


@dataclass
class GateDecision:
    passed: bool
    reference: str  # "champion" or the label of the strongest baseline
    auc_gain: float
    interval: BootstrapInterval
    regressed_slices: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def decide_promotion(
    candidate_auc: float,
    reference_auc: float,
    reference: str,
    interval: BootstrapInterval,
    slices: pd.DataFrame,
    candidate: str,
    thresholds: GateThresholds,
) -> GateDecision:
    """Promote only if the candidate beats the reference by the margin, the interval's lower bound
    is above zero, and no large slice loses more than the tolerance."""
    gain = candidate_auc - reference_auc
    reasons = []
    if gain < thresholds.min_auc_gain:
        reasons.append(
            f"AUC gain {gain:+.4f} over the {reference} is below the margin {thresholds.min_auc_gain:.4f}"
        )
    if interval.low <= 0:
        reasons.append(
            f"the {interval.confidence:.0%} interval of the AUC gain [{interval.low:+.4f}, "
            f"{interval.high:+.4f}] does not exclude zero"
        )
    regressed = []
    if len(slices):
        large = slices[slices["rows"] >= thresholds.min_slice_rows].dropna(
            subset=[candidate, reference]
        )
        delta = large[candidate] - large[reference]
        worse = large.assign(delta=delta)[delta < -thresholds.max_slice_regression]
        regressed = [
            {
                "slice": f"{r.column}={r.value}",
                "rows": int(r.rows),
                "delta": round(float(r.delta), 4),
            }
            for r in worse.itertuples()
        ]
        if regressed:
            names = ", ".join(f"{s['slice']} ({s['delta']:+.3f})" for s in regressed[:5])
            reasons.append(
                f"{len(regressed)} slice(s) of >= {thresholds.min_slice_rows} rows lose more than "
                f"{thresholds.max_slice_regression:.3f} AUC: {names}"
            )
    return GateDecision(
        passed=not reasons,
        reference=reference,
        auc_gain=float(gain),
        interval=interval,
        regressed_slices=regressed,
        reasons=reasons,
    )


@dataclass
class LiveGateVerdict:
    """The live gate on a rollout's labelled live rows: `wait` (not enough evidence yet),
    `advance` (the offline gate's criteria hold on live rows) or `rollback` (they do not)."""

    verdict: str
    labelled_rows: int
    positives: int
    reasons: list[str] = field(default_factory=list)
    gate: GateDecision | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> metrics


def live_gate(
    frame: pd.DataFrame,
    label: str,
    challenger: str,
    champion: str,
    slices: list[str],
    thresholds: GateThresholds,
    min_labelled_rows: int,
) -> LiveGateVerdict:
    """The offline gate (decide_promotion: margin, paired bootstrap interval, slice vetoes) applied
    to live requests whose label is known, both models' scores logged on the same rows. Nothing is
    decided before `min_labelled_rows` labelled rows with both classes present."""
    known = frame.dropna(subset=[label, challenger, champion]).reset_index(drop=True)
    y = known[label].to_numpy(dtype="float64")
    positives = int(y.sum())
    wait = []
    if len(known) < min_labelled_rows:
        wait.append(f"{len(known)} labelled live rows of the {min_labelled_rows} required")
    if not 0 < positives < len(known):
        wait.append(f"labelled rows hold one class only ({positives} positives)")
    if wait:
        return LiveGateVerdict("wait", len(known), positives, wait)
    scores = {m: known[m].to_numpy(dtype="float64") for m in (challenger, champion)}
    metrics = {m: binary_metrics(y, p) for m, p in scores.items()}
    interval = paired_bootstrap_auc_difference(
        y, scores[challenger], scores[champion], samples=thresholds.bootstrap_samples
    )
    decision = decide_promotion(
        metrics[challenger]["roc_auc"],
        metrics[champion]["roc_auc"],
        champion,
        interval,
        slice_metrics(known, y, scores, [c for c in slices if c in known.columns]),
        challenger,
        thresholds,
    )
    verdict = "advance" if decision.passed else "rollback"
    return LiveGateVerdict(verdict, len(known), positives, decision.reasons, decision, metrics)
