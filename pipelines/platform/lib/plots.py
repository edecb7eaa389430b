"""Small charts for asset metadata, rendered to PNG (markdown with a data URI shows in the UI)."""

from __future__ import annotations

import base64
import functools
import io
from typing import TYPE_CHECKING

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@functools.cache
def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display on servers). Imported on first use:
    matplotlib costs about a second, which every process loading the code location would pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def training_set_summary(
    frame: pd.DataFrame, feature_columns: list[str], day_column: str, label: str = "label"
) -> bytes:
    """Rows and positive rate per day, and the share of rows each feature is known for."""
    import pandas as pd

    days = frame[day_column].astype(str).str[:10]  # hourly partition keys start with their day
    daily = frame.groupby(days).agg(rows=(label, "size"), delay_rate=(label, "mean"))
    coverage = frame[feature_columns].notna().mean().sort_values()
    plt = _pyplot()
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, max(3.5, 0.16 * len(coverage))), gridspec_kw={"width_ratios": [3, 2]}
    )
    x = pd.to_datetime(daily.index)
    left.bar(x, daily["rows"], color="#c9d7e8", label="labelled rows")
    left.set_ylabel("labelled rows per day")
    rate = left.twinx()
    rate.plot(
        x,
        daily["delay_rate"],
        color="#c0392b",
        marker="." if len(daily) < 60 else None,
        label="positive label",
    )
    rate.set_ylabel("positive rate")
    rate.set_ylim(0, max(0.6, float(daily["delay_rate"].max()) * 1.1))
    left.set_title("training rows and label rate by day")
    left.tick_params(axis="x", rotation=30)
    right.barh(coverage.index, coverage.values, color="#5d8aa8")
    right.set_xlim(0, 1)
    right.set_title("share of rows with the feature known")
    right.tick_params(axis="y", labelsize=7)
    return _png(fig)


def _png(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    _pyplot().close(fig)
    return buffer.getvalue()


def evaluation_curves(y: np.ndarray, predictions: dict[str, np.ndarray], bins: int = 10) -> bytes:
    """ROC, precision-recall and calibration (reliability) curves of every model on one holdout."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _pyplot()
    fig, (roc, pr, cal) = plt.subplots(1, 3, figsize=(15, 4.6))
    for name, p in predictions.items():
        fpr, tpr, _ = roc_curve(y, p)
        roc.plot(fpr, tpr, label=name)
        precision, recall, _ = precision_recall_curve(y, p)
        pr.plot(recall, precision, label=name)
        edges = np.linspace(0, 1, bins + 1)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).sum() >= 10]
        cal.plot(
            [p[which == b].mean() for b in filled],
            [y[which == b].mean() for b in filled],
            marker="o",
            label=name,
        )
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    pr.axhline(float(np.mean(y)), color="grey", linestyle=":", label="base rate")
    pr.set(title="precision-recall", xlabel="recall", ylabel="precision")
    cal.plot([0, 1], [0, 1], color="grey", linestyle=":")
    cal.set(title="calibration", xlabel="mean predicted probability", ylabel="observed rate")
    for axis in (roc, pr, cal):
        axis.legend(fontsize=8)
    return _png(fig)


def learning_curves(history: dict[str, list[float]], step_name: str) -> bytes:
    """Every recorded metric by iteration or epoch (losses on one panel, the rest on another)."""
    losses = {k: v for k, v in history.items() if "loss" in k}
    others = {k: v for k, v in history.items() if k not in losses and "seconds" not in k}
    panels = [d for d in (losses, others) if d]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.8), squeeze=False)
    for axis, curves in zip(axes[0], panels, strict=True):
        for name, values in curves.items():
            axis.plot(range(1, len(values) + 1), values, label=name)
        axis.set_xlabel(step_name)
        axis.legend(fontsize=8)
    return _png(fig)


def drift_chart(
    distances: dict[str, float],
    thresholds: dict[str, float],
    title: str,
    constant: dict[str, bool] | None = None,
) -> bytes:
    """Each column's distance as a multiple of its own threshold (1 = the threshold, one line
    for all), largest on top; a column drifts beyond 1 (red). Ratios above RATIO_CAP are drawn at
    the cap with their value written. `constant`: reference-constant columns (name -> whether it is
    a model feature), listed under the bars, not measured."""
    ratios = {
        k: v / thresholds[k] if thresholds[k] > 0 else float("inf") for k, v in distances.items()
    }
    ordered = sorted(ratios.items(), key=lambda kv: kv[1])
    names = [k for k, _ in ordered]
    values = [min(v, RATIO_CAP) for _, v in ordered]
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7, max(3.0, 0.22 * len(ordered) + 0.8)))
    colors = ["#c0392b" if r > 1 else "#5d8aa8" for _, r in ordered]
    axis.barh(names, values, color=colors)
    for y, (_, ratio) in enumerate(ordered):
        if ratio > RATIO_CAP:
            axis.text(RATIO_CAP, y, f" {ratio:.0f}x", va="center", fontsize=7)
    axis.axvline(1.0, color="black", linestyle="--", linewidth=1, label="threshold (1x)")
    axis.set(title=title, xlabel="distance / the column's threshold", xlim=(0, RATIO_CAP * 1.15))
    axis.tick_params(axis="y", labelsize=7)
    axis.legend(fontsize=8, loc="lower right")
    if constant:
        note = ", ".join(
            f"{c}{' (model feature)' if f else ''}" for c, f in sorted(constant.items())
        )
        fig.text(0.01, 0.005, f"constant in the reference, not measured: {note}", fontsize=7)
    return _png(fig)


RATIO_CAP = 5.0


def daily_metric_chart(
    daily: pd.DataFrame,
    columns: list[str],
    title: str,
    rolling: str | None = None,
    floor: tuple[float, str] | None = None,
) -> bytes:
    """Metrics by day (one line each) with a rolling mean of the first (or the given `rolling`
    column), and `floor` (value, label) drawn as a line: the rule a status is decided by."""
    import pandas as pd

    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(8, 3.6))
    x = pd.to_datetime(daily.index)
    for column in columns:
        axis.plot(x, daily[column], marker="." if len(daily) < 60 else None, label=column)
    if rolling is not None:
        axis.plot(x, daily[rolling], color="black", linestyle="--", label=rolling)
    elif len(daily) >= 3:
        rolling_mean = daily[columns[0]].rolling(7, min_periods=1).mean()
        axis.plot(
            x, rolling_mean, color="black", linestyle="--", label=f"{columns[0]} (7-day mean)"
        )
    if floor is not None:
        axis.axhline(floor[0], color="#c0392b", linestyle=":", linewidth=1.5, label=floor[1])
    axis.set_title(title)
    axis.tick_params(axis="x", rotation=30)
    axis.legend(fontsize=8)
    return _png(fig)


def live_ab_chart(y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> bytes:
    """A live A/B comparison: ROC, precision-recall and calibration (evaluation_curves) beside
    the score distributions of every model on the same labelled live rows."""
    import numpy as np

    curves = evaluation_curves(y, scores)
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 4.6))
    bins = np.linspace(0, 1, 41)
    for name, p in scores.items():
        axis.hist(p, bins=bins, histtype="step", density=True, label=name)
    axis.set(title=f"score distributions: {title}", xlabel="score", ylabel="density")
    axis.legend(fontsize=8)
    return _stack([curves, _png(fig)])


def _stack(pngs: list[bytes]) -> bytes:
    """PNG pictures side by side (heights padded), as one PNG."""
    import matplotlib.image as mpimg
    import numpy as np

    images = [mpimg.imread(io.BytesIO(p), format="png") for p in pngs]
    height = max(i.shape[0] for i in images)
    padded = [
        np.pad(i, ((0, height - i.shape[0]), (0, 0), (0, 0)), constant_values=1.0) for i in images
    ]
    buffer = io.BytesIO()
    mpimg.imsave(buffer, np.concatenate(padded, axis=1), format="png")
    return buffer.getvalue()
