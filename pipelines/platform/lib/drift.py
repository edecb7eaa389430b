"""Data and prediction drift against a reference summarized once per champion.

Evidently computes both sides of every comparison each time it runs. Here the reference side
(the champion's training data) is reduced once to what the distance needs: 101 quantiles and the
standard deviation of each numeric column, the category shares of each categorical one. A daily
check then only summarizes the current side, which makes it cheap enough for every partition.

The distances are those of Evidently's DataDriftPreset on large samples: Wasserstein distance
normalized by the reference's standard deviation for numeric columns, Jensen-Shannon distance for
categorical ones. A fixed threshold (Evidently's 0.1) is wrong for a daily check: one day of
weather, or a day of the week, is far from a month of them on every normal day. So each column's
threshold is calibrated on the reference itself: the `DAY_QUANTILE` of the distances of its own
days to the whole, never below 0.1. A column drifts when today is further than normal days were.
The Evidently HTML report, built on a cached reference sample with the same methods and
thresholds, is the page people read.
"""

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

QUANTILE_GRID = np.linspace(0.0, 1.0, 101)
DRIFT_THRESHOLD = 0.1  # Evidently's default for both distances
DATASET_DRIFT_SHARE = 0.5  # Evidently's default: the dataset drifts when half its columns do
DAY_QUANTILE = 0.95
MIN_ROWS = 200  # fewer current rows than this are not evidence either way
MAX_CATEGORIES = 200  # rarer categories of the reference are pooled into OTHER
OTHER = "__other__"
PREDICTION = "prediction"


class DriftInputError(ValueError):
    """The current frame cannot be compared with the reference (the message says why)."""


@dataclass(frozen=True)
class ColumnReference:
    kind: str  # "numeric" | "categorical"
    null_share: float
    quantiles: list[float] = field(default_factory=list)  # numeric, at QUANTILE_GRID
    std: float = 0.0
    shares: dict[str, float] = field(default_factory=dict)  # categorical
    threshold: float = DRIFT_THRESHOLD  # calibrated on the reference's own days


@dataclass(frozen=True)
class DriftReference:
    """What a daily drift check needs of the reference, JSON-serializable."""

    rows: int
    columns: dict[str, ColumnReference]
    description: dict = field(default_factory=dict)  # champion version, training window, ...

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DriftReference":
        columns = {name: ColumnReference(**col) for name, col in data["columns"].items()}
        return cls(rows=data["rows"], columns=columns, description=data.get("description", {}))


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    method: str
    distance: float
    threshold: float
    drifted: bool
    null_share: float
    reference_null_share: float


@dataclass(frozen=True)
class DriftResult:
    status: str  # "drift" | "no_drift" | "insufficient"
    rows: int
    drift_share: float  # share of feature columns (the prediction excluded) that drifted
    columns: list[ColumnDrift]
    prediction: ColumnDrift | None
    reason: str = ""

    @property
    def drifted_columns(self) -> list[ColumnDrift]:
        return sorted(
            (c for c in self.columns if c.drifted), key=lambda c: c.distance, reverse=True
        )

    def top(self, n: int = 10) -> list[ColumnDrift]:
        return sorted(self.columns, key=lambda c: c.distance, reverse=True)[:n]

    def summary(self) -> dict:
        return {
            "status": self.status,
            "rows": self.rows,
            "drift_share": self.drift_share,
            "drifted_columns": [c.column for c in self.drifted_columns],
            "prediction_distance": self.prediction.distance if self.prediction else None,
            "prediction_drifted": self.prediction.drifted if self.prediction else None,
            "reason": self.reason,
        }


def summarize_reference(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    description: dict | None = None,
    days: pd.Series | None = None,
) -> DriftReference:
    """Reduce the reference frame to quantiles / category shares, once; with `days` (the day of
    each row), calibrate each column's threshold on the distances of those days to the whole."""
    reference = _summarize(frame, numeric, categorical, description)
    if days is None or days.nunique() < 2:
        return reference
    by_day: dict[str, list[float]] = {name: [] for name in reference.columns}
    for _, index in pd.Series(np.arange(len(frame))).groupby(days.to_numpy()).groups.items():
        day = frame.iloc[np.asarray(index)]
        if len(day) < MIN_ROWS:
            continue
        for name, column in reference.columns.items():
            by_day[name].append(column_drift(name, column, day[name]).distance)
    calibrated = {
        name: replace(
            column,
            threshold=max(DRIFT_THRESHOLD, float(np.quantile(by_day[name], DAY_QUANTILE)))
            if by_day[name]
            else DRIFT_THRESHOLD,
        )
        for name, column in reference.columns.items()
    }
    return replace(reference, columns=calibrated)


def _summarize(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str], description: dict | None
) -> DriftReference:
    missing = [c for c in (*numeric, *categorical) if c not in frame.columns]
    if missing:
        raise DriftInputError(f"the reference lacks columns {missing}")
    if frame.empty:
        raise DriftInputError("the reference frame is empty")
    columns: dict[str, ColumnReference] = {}
    for name in numeric:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64")
        present = values[~np.isnan(values)]
        null_share = 1.0 - len(present) / len(values)
        if len(present) == 0:
            columns[name] = ColumnReference("numeric", null_share)
            continue
        columns[name] = ColumnReference(
            "numeric",
            null_share,
            quantiles=np.quantile(present, QUANTILE_GRID).tolist(),
            std=float(present.std()),
        )
    for name in categorical:
        values = frame[name].astype("string")
        null_share = float(values.isna().mean())
        shares = values.dropna().value_counts(normalize=True)
        kept = shares.iloc[:MAX_CATEGORIES]
        pooled = {str(k): float(v) for k, v in kept.items()}
        if len(shares) > MAX_CATEGORIES:
            pooled[OTHER] = float(shares.iloc[MAX_CATEGORIES:].sum())
        columns[name] = ColumnReference("categorical", null_share, shares=pooled)
    return DriftReference(rows=len(frame), columns=columns, description=description or {})


def _numeric_drift(name: str, ref: ColumnReference, values: np.ndarray) -> ColumnDrift:
    present = values[~np.isnan(values)]
    null_share = 1.0 - len(present) / len(values) if len(values) else 0.0
    if not ref.quantiles or len(present) == 0:
        # All missing on one side: drift exactly when the other side has values.
        distance = 0.0 if (not ref.quantiles and len(present) == 0) else 1.0
    else:
        current = np.quantile(present, QUANTILE_GRID)
        # W1 between two distributions is the area between their quantile functions.
        w1 = float(np.trapezoid(np.abs(current - np.asarray(ref.quantiles)), QUANTILE_GRID))
        # Against a constant reference, any move at all is drift.
        distance = w1 / ref.std if ref.std > 0 else float(w1 > 0)
    return ColumnDrift(
        name,
        "numeric",
        "wasserstein_normed",
        distance,
        ref.threshold,
        distance > ref.threshold,
        null_share,
        ref.null_share,
    )


def _categorical_drift(name: str, ref: ColumnReference, values: pd.Series) -> ColumnDrift:
    values = values.astype("string")
    null_share = float(values.isna().mean()) if len(values) else 0.0
    counts = values.dropna().value_counts(normalize=True)
    known = set(ref.shares) - {OTHER}
    current = {str(k): float(v) for k, v in counts.items() if k in known}
    unseen = float(counts[[k not in known for k in counts.index]].sum())
    if unseen:
        current[OTHER] = unseen
    categories = sorted(set(ref.shares) | set(current))
    p = np.array([ref.shares.get(c, 0.0) for c in categories])
    q = np.array([current.get(c, 0.0) for c in categories])
    distance = _jensen_shannon(p, q) if p.sum() and q.sum() else float(p.sum() != q.sum())
    return ColumnDrift(
        name,
        "categorical",
        "jensenshannon",
        distance,
        ref.threshold,
        distance > ref.threshold,
        null_share,
        ref.null_share,
    )


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log), as scipy.spatial.distance.jensenshannon."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def column_drift(name: str, ref: ColumnReference, values: pd.Series) -> ColumnDrift:
    if ref.kind == "numeric":
        return _numeric_drift(
            name, ref, pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
        )
    return _categorical_drift(name, ref, values)


def detect_drift(
    reference: DriftReference,
    current: pd.DataFrame,
    predictions: np.ndarray | None = None,
    min_rows: int = MIN_ROWS,
) -> DriftResult:
    """Compare the current frame with the cached reference, column by column."""
    features = [c for c in reference.columns if c != PREDICTION]
    missing = [c for c in features if c not in current.columns]
    if missing:
        raise DriftInputError(
            f"the current frame lacks {len(missing)} reference column(s): {missing[:10]}"
        )
    rows = len(current)
    if rows < min_rows:
        return DriftResult(
            "insufficient",
            rows,
            float("nan"),
            [],
            None,
            reason=f"{rows} rows; a drift decision needs at least {min_rows}",
        )
    columns = [column_drift(name, reference.columns[name], current[name]) for name in features]
    prediction = None
    if predictions is not None and PREDICTION in reference.columns:
        prediction = column_drift(
            PREDICTION, reference.columns[PREDICTION], pd.Series(predictions, dtype="float64")
        )
    share = sum(c.drifted for c in columns) / len(columns) if columns else 0.0
    return DriftResult(
        "drift" if share >= DATASET_DRIFT_SHARE else "no_drift", rows, share, columns, prediction
    )


def evidently_report(
    reference_sample: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    thresholds: dict[str, float] | None = None,
):
    """Evidently's data drift report (a Snapshot: .save_html, .dict) with this module's methods
    and, given, the calibrated per-column thresholds."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    # Evidently refuses a column empty on either side; such a column is in the cached check's
    # result (all missing vs present is drift there), so the page just leaves it out.
    def usable(column: str) -> bool:
        return bool(reference_sample[column].notna().any() and current[column].notna().any())

    numeric = [c for c in numeric if usable(c)]
    categorical = [c for c in categorical if usable(c)]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    columns = [*numeric, *categorical]
    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                num_method="wasserstein",
                cat_method="jensenshannon",
                threshold=DRIFT_THRESHOLD,
                per_column_threshold=thresholds or None,
                drift_share=DATASET_DRIFT_SHARE,
            )
        ]
    )
    return report.run(
        Dataset.from_pandas(_for_evidently(current, numeric, categorical), definition),
        Dataset.from_pandas(_for_evidently(reference_sample, numeric, categorical), definition),
    )


def _for_evidently(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    out = frame[[*numeric, *categorical]].copy()
    for name in numeric:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    for name in categorical:
        out[name] = out[name].astype("string").astype(object)
    return out
