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


def _weighted_log_loss(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean log loss under each row of `weights` (resample counts)."""
    import numpy as np

    p = np.clip(p, 1e-7, 1 - 1e-7)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return (weights @ loss) / weights.sum(axis=1)


def _weighted_ece(y: np.ndarray, p: np.ndarray, weights: np.ndarray, bins: int = 10) -> np.ndarray:
    """`expected_calibration_error` under each row of `weights`: per bin |sum w*y - sum w*p|,
    over the total weight (the same bins, so the unweighted case gives the same number)."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    onehot = np.zeros((len(p), bins))
    onehot[np.arange(len(p)), which] = 1.0
    gap = weights @ (onehot * (y - p)[:, None])  # resamples x bins
    return np.abs(gap).sum(axis=1) / weights.sum(axis=1)


# Paired differences the gate weighs: higher AUC is better, lower log loss and ECE are better.
DIFFERENCES = {"roc_auc": _weighted_auc, "log_loss": _weighted_log_loss, "ece": _weighted_ece}


def paired_bootstrap_differences(
    y: np.ndarray,
    p_candidate: np.ndarray,
    p_reference: np.ndarray,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapInterval]:
    """metric(candidate) - metric(reference) for AUC, log loss and ECE, each over the *same*
    resamples of the *same* rows for both models."""
    import numpy as np

    y = np.asarray(y, dtype="float64")
    p_candidate = np.asarray(p_candidate, dtype="float64")
    p_reference = np.asarray(p_reference, dtype="float64")
    rng = np.random.default_rng(seed)
    diffs: dict[str, list] = {name: [] for name in DIFFERENCES}
    chunk = max(1, min(samples, 20_000_000 // max(len(y), 1)))
    done = 0
    while done < samples:
        size = min(chunk, samples - done)
        picks = rng.integers(0, len(y), size=(size, len(y)))
        counts = np.zeros((size, len(y)))
        np.add.at(counts, (np.arange(size)[:, None], picks), 1.0)
        for name, weighted in DIFFERENCES.items():
            diffs[name].append(weighted(y, p_candidate, counts) - weighted(y, p_reference, counts))
        done += size
    alpha = (1 - confidence) / 2
    intervals = {}
    for name, parts in diffs.items():
        d = np.concatenate(parts)
        d = d[np.isfinite(d)]
        intervals[name] = BootstrapInterval(
            mean=float(d.mean()),
            low=float(np.quantile(d, alpha)),
            high=float(np.quantile(d, 1 - alpha)),
            samples=len(d),
            confidence=confidence,
        )
    return intervals


def paired_bootstrap_auc_difference(
    y: np.ndarray,
    p_candidate: np.ndarray,
    p_reference: np.ndarray,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval:
    """AUC(candidate) - AUC(reference) over resamples of the *same* rows for both models."""
    return paired_bootstrap_differences(y, p_candidate, p_reference, samples, confidence, seed)[
        "roc_auc"
    ]


def describe_interval(interval: BootstrapInterval) -> str:
    """Where the interval lies relative to zero, in words that are right for every case."""
    bounds = f"[{interval.low:+.4f}, {interval.high:+.4f}]"
    if interval.low > 0:
        return f"the {interval.confidence:.0%} interval {bounds} lies above zero"
    if interval.high < 0:
        return f"the {interval.confidence:.0%} interval {bounds} lies entirely below zero"
    return f"the {interval.confidence:.0%} interval {bounds} includes zero"


@dataclass
class Criterion:
    """One test the gate applies, as the evaluation page lists it."""

    name: str
    passed: bool
    observed: float  # candidate - reference
    low: float
    high: float
    limit: str  # the rule, in words
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class GateDecision:
    passed: bool
    reference: str  # "champion" or the label of the strongest baseline
    auc_gain: float
    interval: BootstrapInterval
    regressed_slices: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    criteria: list[Criterion] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _no_regression(
    name: str, observed: float, interval: BootstrapInterval | None, tolerance: float, reference: str
) -> Criterion:
    """Non-inferiority: the interval's upper bound of the increase stays within the tolerance
    (a candidate whose log loss or ECE may plausibly be worse by more than that is refused)."""
    if interval is None:  # a report written before this criterion existed
        return Criterion(name, True, observed, float("nan"), float("nan"), "not measured", "")
    passed = interval.high <= tolerance
    limit = f"increase <= {tolerance:.4f} (upper bound of the {interval.confidence:.0%} interval)"
    detail = (
        f"{name} {observed:+.4f} vs the {reference}, {interval.confidence:.0%} interval "
        f"[{interval.low:+.4f}, {interval.high:+.4f}]"
    )
    if not passed:
        detail += f": may be worse by more than the tolerance {tolerance:.4f}"
    return Criterion(name, passed, observed, interval.low, interval.high, limit, detail)


def decide_promotion(
    candidate_auc: float,
    reference_auc: float,
    reference: str,
    interval: BootstrapInterval,
    slices: pd.DataFrame,
    candidate: str,
    thresholds: GateThresholds,
    log_loss: tuple[float, BootstrapInterval | None] = (float("nan"), None),
    ece: tuple[float, BootstrapInterval | None] = (float("nan"), None),
    unfair: str | None = None,
) -> GateDecision:
    """Promote only if the comparison is fair (no model trained on a holdout day), the candidate
    beats the reference by the margin with the interval's lower bound above zero, its log loss and
    calibration do not regress beyond their tolerances against the champion (a first model's
    reference, a naive baseline, is not a bar for probabilities), and no large slice loses more
    than the tolerance. `log_loss` / `ece`: (observed difference, paired bootstrap interval)."""
    gain = candidate_auc - reference_auc
    reasons = []
    criteria = []
    if unfair:
        reasons.append(f"the comparison cannot be fair: {unfair}")
        criteria.append(
            Criterion(
                "fair holdout",
                False,
                float("nan"),
                float("nan"),
                float("nan"),
                "no compared model trained on a holdout day",
                unfair,
            )
        )
    # A margin >= 0 asks for a clear improvement (the interval above zero); a negative margin is
    # a non-inferiority test: the interval's lower bound above the margin.
    bound = min(thresholds.min_auc_gain, 0.0)
    auc_ok = gain >= thresholds.min_auc_gain and interval.low > bound
    where = describe_interval(interval)
    auc_detail = f"AUC gain {gain:+.4f} over the {reference}; {where}"
    if gain < thresholds.min_auc_gain:
        reasons.append(
            f"AUC gain {gain:+.4f} over the {reference} is below the margin {thresholds.min_auc_gain:.4f}"
        )
    if interval.low <= bound:
        reasons.append(
            f"{where} of the AUC gain: not a clear improvement"
            if bound == 0
            else f"{where} of the AUC gain: lower bound under the margin {bound:.4f}"
        )
    criteria.append(
        Criterion(
            "roc_auc gain",
            auc_ok,
            gain,
            interval.low,
            interval.high,
            f"gain >= {thresholds.min_auc_gain:.4f} and lower bound > {bound:g}",
            auc_detail,
        )
    )
    for name, (observed, ci), tolerance in (
        ("log_loss", log_loss, thresholds.max_log_loss_increase),
        ("ece", ece, thresholds.max_ece_increase),
    ):
        if reference != "champion":
            # A naive baseline is a historical rate: calibrated by construction, it is the bar
            # for ranking, not for probabilities. Regressions are judged against a champion.
            criteria.append(
                Criterion(
                    name,
                    True,
                    observed,
                    ci.low if ci else float("nan"),
                    ci.high if ci else float("nan"),
                    "not applied: the reference is a naive baseline",
                    f"{name} {observed:+.4f} vs the {reference} (shown, not judged)",
                )
            )
            continue
        criterion = _no_regression(name, observed, ci, tolerance, reference)
        criteria.append(criterion)
        if not criterion.passed:
            reasons.append(criterion.detail)
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
    criteria.append(
        Criterion(
            "slices",
            not regressed,
            min((s["delta"] for s in regressed), default=0.0),
            float("nan"),
            float("nan"),
            f"no slice of >= {thresholds.min_slice_rows} rows loses > "
            f"{thresholds.max_slice_regression:.3f} AUC",
            f"{len(regressed)} slice(s) regressed" if regressed else "no large slice regressed",
        )
    )
    return GateDecision(
        passed=not reasons,
        reference=reference,
        auc_gain=float(gain),
        interval=interval,
        regressed_slices=regressed,
        reasons=reasons,
        criteria=criteria,
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
    max_labelled_rows: int | None = None,
) -> LiveGateVerdict:
    """The offline gate (decide_promotion: AUC margin and paired bootstrap interval, log loss and
    ECE non-inferiority, slice vetoes) applied to live requests whose label is known, both models'
    scores logged on the same rows. Nothing is decided before `min_labelled_rows` labelled rows
    with both classes present. A sequential test: while every failed criterion could still pass
    with more rows (the AUC gain's interval reaches above zero, a log-loss or ECE increase's
    interval reaches below its tolerance: not shown better, not shown worse), it waits, up to
    `max_labelled_rows`; a clear loss, or a slice that regressed, rolls back at once."""
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
    intervals = paired_bootstrap_differences(
        y, scores[challenger], scores[champion], samples=thresholds.bootstrap_samples
    )

    def difference(name: str) -> tuple[float, BootstrapInterval]:
        return metrics[challenger][name] - metrics[champion][name], intervals[name]

    # Live rows are days neither model trained on (served after both were trained): fair.
    decision = decide_promotion(
        metrics[challenger]["roc_auc"],
        metrics[champion]["roc_auc"],
        champion,
        intervals["roc_auc"],
        slice_metrics(known, y, scores, [c for c in slices if c in known.columns]),
        challenger,
        thresholds,
        log_loss=difference("log_loss"),
        ece=difference("ece"),
    )
    failed = [c for c in decision.criteria if not c.passed]
    tolerances = {"log_loss": thresholds.max_log_loss_increase, "ece": thresholds.max_ece_increase}

    def undecided(c: Criterion) -> bool:
        """More rows could still pass it: the AUC gain's interval reaches above the margin's
        bound, a regression's interval reaches below its tolerance."""
        if c.name == "roc_auc gain":
            return c.high > min(thresholds.min_auc_gain, 0.0)
        return c.name in tolerances and c.low <= tolerances[c.name]

    if (
        failed
        and all(undecided(c) for c in failed)
        and (max_labelled_rows is None or len(known) < max_labelled_rows)
    ):
        more = f" (of at most {max_labelled_rows})" if max_labelled_rows else ""
        reasons = [
            f"inconclusive after {len(known)} labelled rows{more}: {c.detail}" for c in failed
        ]
        return LiveGateVerdict("wait", len(known), positives, reasons, decision, metrics)
    verdict = "advance" if decision.passed else "rollback"
    return LiveGateVerdict(verdict, len(known), positives, decision.reasons, decision, metrics)
