"""Challengers, the champion and the naive baselines scored on the same holdout: the evidence the
promotion gate decides on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.platform.lib import sufficiency
from pipelines.platform.lib.evaluation import (
    BootstrapInterval,
    GateDecision,
    binary_metrics,
    decide_promotion,
    paired_bootstrap_differences,
    slice_metrics,
)
from pipelines.platform.lib.modeling.baseline import fit_baseline
from pipelines.platform.lib.modeling.dataset import (
    TrainingDataError,
    check_holdout,
    feature_frame,
    labels,
    time_split,
)
from pipelines.platform.lib.task import GateThresholds, TaskSpec, TimeSplit
from pipelines.platform.lib.tracking import CHAMPION, ModelRegistry, ModelVersionRef

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass
class Review:
    report: dict  # JSON-able: what the gate and the UI read
    y: np.ndarray
    predictions: dict[str, np.ndarray]  # model label -> holdout probabilities


def review_challengers(
    spec: TaskSpec,
    table: pd.DataFrame,
    split: TimeSplit,
    challengers: list[ModelVersionRef],
    registry: ModelRegistry,
    thresholds: GateThresholds,
    seed: int = 0,
) -> Review:
    import numpy as np
    import pandas as pd

    frames = time_split(table, spec, split)
    check_holdout(
        frames.holdout, spec, thresholds.min_holdout_rows, thresholds.min_holdout_positives
    )
    for ref in challengers:  # a challenger that saw the holdout would win unfairly
        if pd.Timestamp(ref.train_end) >= frames.holdout_start:
            raise TrainingDataError(
                f"{ref.family} v{ref.version} was trained on data up to {ref.train_end}, inside "
                f"the holdout starting {frames.holdout_start}; train and evaluate with the same split"
            )
    holdout_x = feature_frame(frames.holdout, spec)
    y = labels(frames.holdout, spec)
    predictions: dict[str, np.ndarray] = {}
    for ref in challengers:
        predictions[ref.family] = np.asarray(
            registry.load(ref.model_uri).predict(holdout_x), dtype="float64"
        )

    champion = registry.alias(spec.registered_model, CHAMPION)
    champion_info = None
    if champion is not None:
        predictions[CHAMPION] = np.asarray(
            registry.load(f"models:/{spec.registered_model}@{CHAMPION}").predict(holdout_x),
            dtype="float64",
        )
        train_end = champion.tags.get("train_end")
        champion_info = {
            "version": str(champion.version),
            "family": champion.tags.get("model_family", "?"),
            "run_id": champion.run_id,
            "train_end": train_end,
            # An older champion normally never saw these days; if it did, its score is flattered.
            "saw_holdout": bool(train_end and pd.Timestamp(train_end) >= frames.holdout_start),
        }

    before_holdout = pd.concat([frames.train, frames.valid], ignore_index=True)
    before_x, before_y = feature_frame(before_holdout, spec), labels(before_holdout, spec)
    baselines = {b.label: b for b in spec.declared_baselines()}
    for label, declared in baselines.items():
        predictions[label] = fit_baseline(declared, before_x, before_y).predict_proba(holdout_x)

    metrics = {name: binary_metrics(y, p) for name, p in predictions.items()}
    candidate = max((ref for ref in challengers), key=lambda r: metrics[r.family]["roc_auc"])
    # A first challenger must beat the strongest naive baseline, not the weakest.
    strongest = max(baselines, key=lambda label: metrics[label]["roc_auc"])
    reference = CHAMPION if champion is not None else strongest
    intervals = paired_bootstrap_differences(
        y,
        predictions[candidate.family],
        predictions[reference],
        thresholds.bootstrap_samples,
        seed=seed,
    )
    slices = slice_metrics(frames.holdout, y, predictions, spec.slice_columns)
    ts = pd.to_datetime(frames.holdout[spec.timestamp_column], utc=True)
    report = {
        "task": spec.name,
        "holdout": {
            "start": str(frames.holdout_start),
            "last": str(ts.max()),
            "rows": len(y),
            "positives": int(y.sum()),
        },
        "split": frames.describe(spec),
        "metrics": metrics,
        "challengers": {ref.family: ref.as_dict() for ref in challengers},
        "candidate": candidate.as_dict(),
        "reference": reference,
        "baselines": {
            label: {"rate_by": list(b.rate_by), "feature": b.feature}
            for label, b in baselines.items()
        },
        "strongest_baseline": strongest,
        "champion": champion_info,
        "auc_difference": intervals["roc_auc"].__dict__,
        "log_loss_difference": intervals["log_loss"].__dict__,
        "ece_difference": intervals["ece"].__dict__,
        # Both models must be judged on days neither trained on (the challengers are checked
        # above; a champion that trained on them makes the comparison unfair, not just noisy).
        "unfair": (
            f"champion v{champion_info['version']} was trained on data up to "
            f"{champion.tags.get('train_end')}, inside the holdout starting {frames.holdout_start}"
            if champion_info and champion_info["saw_holdout"]
            else None
        ),
        "slices": slices.to_dict(orient="records"),
    }
    # Enough data for the gate to see a gain? (lib/sufficiency.py; the run's summary prints it)
    report["sufficiency"] = sufficiency.assess(report, split.holdout_days)
    return Review(report=report, y=y, predictions=predictions)


def gate_decision(report: dict, thresholds: GateThresholds) -> GateDecision:
    """The gate's verdict on a review report (pure: the check and tests call it alike)."""
    import pandas as pd

    candidate = report["candidate"]["family"]
    reference = report["reference"]
    slices = pd.DataFrame(report["slices"])
    metrics = report["metrics"]

    def difference(name: str) -> tuple[float, BootstrapInterval | None]:
        observed = metrics[candidate][name] - metrics[reference][name]
        interval = report.get(f"{name}_difference")
        return observed, BootstrapInterval(**interval) if interval else None

    return decide_promotion(
        candidate_auc=metrics[candidate]["roc_auc"],
        reference_auc=metrics[reference]["roc_auc"],
        reference=reference,
        interval=BootstrapInterval(**report["auc_difference"]),
        slices=slices,
        candidate=candidate,
        thresholds=thresholds,
        log_loss=difference("log_loss"),
        ece=difference("ece"),
        unfair=report.get("unfair"),
    )
