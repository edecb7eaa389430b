"""Data and prediction drift against a reference sketched once per champion.

Evidently computes both sides of every comparison each time it runs. Here the reference side
(the champion's training data) is reduced once to a *sketch*: `SKETCH_POINTS` evenly spaced
quantiles of each numeric column, the same number of values of each categorical column in the
proportions of its categories. A daily check then only reads the current side.

The distances are exactly those of Evidently's DataDriftPreset (`wasserstein`: Wasserstein
distance normed by the reference's standard deviation; `jensenshannon` on category shares) and a
column drifts at distance >= its threshold, as there. The Evidently page is computed from the same
sketch (`DriftReference.frame()`), over the same columns with the same thresholds, so the page and
the cached check give one verdict: the same distances, drifted columns and dataset share.

A fixed threshold (Evidently's 0.1) is wrong for a daily check: one day of weather, or a day of
the week, is far from a month of them on every normal day. So each column's threshold is
calibrated on the reference itself: the `DAY_QUANTILE` of the distances of its own days to the
whole, never below 0.1. A column drifts when today is as far as normal days rarely were.

A column empty on either side has no distribution to compare (Evidently refuses it): it is
reported as missing, apart from the share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


SKETCH_POINTS = 1000
DRIFT_THRESHOLD = 0.1  # Evidently's default for both distances, and the floor of calibration
DATASET_DRIFT_SHARE = 0.5  # Evidently's default: the dataset drifts when half its columns do
DAY_QUANTILE = 0.95
MIN_ROWS = 200  # fewer current rows than this are not evidence either way
PREDICTION = "prediction"
METHODS = {"numeric": "wasserstein", "categorical": "jensenshannon"}  # Evidently's names


class DriftInputError(ValueError):
    """The current frame cannot be compared with the reference (the message says why)."""


@dataclass(frozen=True)
class ColumnReference:
    kind: str  # "numeric" | "categorical"
    null_share: float
    sketch: list[float] = field(default_factory=list)  # numeric: sorted quantiles
    counts: dict[str, int] = field(default_factory=dict)  # categorical: values per category
    threshold: float = DRIFT_THRESHOLD  # calibrated on the reference's own days

    def values(self) -> pd.Series:
        """The sketch as a column of SKETCH_POINTS values (empty: the column was all missing)."""
        import numpy as np
        import pandas as pd

        if self.kind == "numeric":
            return pd.Series(self.sketch, dtype="float64")
        return pd.Series(np.repeat(list(self.counts), list(self.counts.values())), dtype=object)


@dataclass(frozen=True)
class DriftReference:
    """What a daily drift check needs of the reference, JSON-serializable."""

    rows: int
    columns: dict[str, ColumnReference]
    description: dict = field(default_factory=dict)  # champion version, training window, ...

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DriftReference:
        try:
            columns = {name: ColumnReference(**col) for name, col in data["columns"].items()}
        except TypeError as exc:
            raise DriftInputError(
                f"a drift reference in an older format ({exc}): re-materialize drift_reference"
            ) from exc
        return cls(rows=data["rows"], columns=columns, description=data.get("description", {}))

    def frame(self) -> pd.DataFrame:
        """The sketch as rows for Evidently. Each column holds its own values: a row is not a
        record, which a drift comparison (column by column) never needs."""
        import pandas as pd

        return pd.DataFrame(
            {name: col.values().reindex(range(SKETCH_POINTS)) for name, col in self.columns.items()}
        )


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
    drift_share: float  # share of the measured feature columns (the prediction excluded)
    columns: list[ColumnDrift]  # measured: values on both sides
    prediction: ColumnDrift | None
    reason: str = ""
    missing: dict[str, str] = field(default_factory=dict)  # column -> the side it is empty on
    # Constant (or near-constant) in the reference: any change is "infinite" drift in units of a
    # zero spread, which says nothing; reported, never measured.
    constant: list[str] = field(default_factory=list)

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
            "measured_columns": len(self.columns),
            "missing_columns": self.missing,
            "prediction_distance": self.prediction.distance if self.prediction else None,
            "prediction_drifted": self.prediction.drifted if self.prediction else None,
            "constant_in_reference": self.constant,
            "reason": self.reason,
        }


# A reference column whose most common value holds this share of it is near-constant.
NEAR_CONSTANT_SHARE = 0.98


def near_constant(values: pd.Series) -> bool:
    """One value (nulls aside) makes up nearly all of the column: a month over a January
    reference, a flag that is almost never set."""
    present = values.dropna()
    if present.empty:
        return False
    return float(present.value_counts(normalize=True).iloc[0]) >= NEAR_CONSTANT_SHARE


def summarize_reference(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    description: dict | None = None,
    days: pd.Series | None = None,
    min_rows: int = MIN_ROWS,
) -> DriftReference:
    """Sketch the reference frame, once; with `days` (the day of each row), calibrate each
    column's threshold on the distances of those days to the whole."""
    import numpy as np
    import pandas as pd

    reference = _summarize(frame, numeric, categorical, description)
    if days is None or days.nunique() < 2:
        return reference
    by_day: dict[str, list[float]] = {name: [] for name in reference.columns}
    for _, index in pd.Series(np.arange(len(frame))).groupby(days.to_numpy()).groups.items():
        day = frame.iloc[np.asarray(index)]
        if len(day) < min_rows:
            continue
        for name, column in reference.columns.items():
            drift = column_drift(name, column, day[name])
            if drift is not None:
                by_day[name].append(drift.distance)
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


def _present(values: pd.Series, kind: str) -> pd.Series:
    """The values a distance is computed on (as Evidently: missing and infinite ones dropped)."""
    import numpy as np
    import pandas as pd

    if kind == "numeric":
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        return numbers[np.isfinite(numbers.to_numpy())]
    return values.astype("string").dropna().astype(object)


def _apportion(shares: pd.Series, total: int) -> dict[str, int]:
    """Integer counts summing to `total` in the given proportions (largest remainders)."""
    import numpy as np

    exact = shares.to_numpy() * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return {str(k): int(n) for k, n in zip(shares.index, counts, strict=True) if n > 0}


def _summarize(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str], description: dict | None
) -> DriftReference:
    import numpy as np

    missing = [c for c in (*numeric, *categorical) if c not in frame.columns]
    if missing:
        raise DriftInputError(f"the reference lacks columns {missing}")
    if frame.empty:
        raise DriftInputError("the reference frame is empty")
    columns: dict[str, ColumnReference] = {}
    grid = (np.arange(SKETCH_POINTS) + 0.5) / SKETCH_POINTS
    for name in numeric:
        present = _present(frame[name], "numeric").to_numpy()
        sketch = np.quantile(present, grid).tolist() if len(present) else []
        columns[name] = ColumnReference("numeric", 1.0 - len(present) / len(frame), sketch=sketch)
    for name in categorical:
        present = _present(frame[name], "categorical")
        counts = (
            _apportion(present.value_counts(normalize=True), SKETCH_POINTS) if len(present) else {}
        )
        columns[name] = ColumnReference(
            "categorical", 1.0 - len(present) / len(frame), counts=counts
        )
    return DriftReference(rows=len(frame), columns=columns, description=description or {})


def column_drift(name: str, ref: ColumnReference, values: pd.Series) -> ColumnDrift | None:
    """Evidently's distance of the column to its reference sketch; None when either side has
    no values."""
    import numpy as np
    import pandas as pd

    current = _present(values, ref.kind)
    reference = ref.values()
    if current.empty or reference.empty:
        return None
    if ref.kind == "numeric":
        norm = max(float(np.std(reference.to_numpy())), 0.001)
        from scipy.stats import wasserstein_distance  # scipy: 1 s of import, here only

        distance = float(wasserstein_distance(reference.to_numpy(), current.to_numpy()) / norm)
    else:
        keys = sorted(set(ref.counts) | set(current.unique()))
        p = pd.Series(ref.counts, dtype="float64").reindex(keys, fill_value=0.0) / len(reference)
        q = current.value_counts().reindex(keys, fill_value=0).astype("float64") / len(current)
        from scipy.spatial.distance import jensenshannon

        distance = float(jensenshannon(p.to_numpy(), q.to_numpy()))
    return ColumnDrift(
        name,
        ref.kind,
        METHODS[ref.kind],
        distance,
        ref.threshold,
        distance >= ref.threshold,
        1.0 - len(current) / len(values) if len(values) else 0.0,
        ref.null_share,
    )


def detect_drift(
    reference: DriftReference,
    current: pd.DataFrame,
    predictions: np.ndarray | None = None,
    min_rows: int = MIN_ROWS,
) -> DriftResult:
    """Compare the current frame with the cached reference, column by column."""
    import pandas as pd

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
    columns, missing, constant = [], {}, []
    for name in features:
        if near_constant(reference.columns[name].values()):
            constant.append(name)
            continue
        drift = column_drift(name, reference.columns[name], current[name])
        if drift is not None:
            columns.append(drift)
        else:
            missing[name] = "reference" if reference.columns[name].values().empty else "current"
    prediction = None
    if predictions is not None and PREDICTION in reference.columns:
        prediction = column_drift(
            PREDICTION, reference.columns[PREDICTION], pd.Series(predictions, dtype="float64")
        )
    share = sum(c.drifted for c in columns) / len(columns) if columns else 0.0
    status = "drift" if share >= DATASET_DRIFT_SHARE else "no_drift"
    return DriftResult(status, rows, share, columns, prediction, missing=missing, constant=constant)


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    thresholds: dict[str, float] | None = None,
    extra: list[str] | None = None,
):
    """Evidently's data drift report (a Snapshot: .save_html, .dict) with this module's methods
    and, given, the calibrated per-column thresholds. `extra` columns (the prediction) are
    compared too, each on its own, outside the dataset-level share."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    # Evidently refuses a column empty on either side: detect_drift reports it as missing; a
    # near-constant reference column it reports as such, unmeasured (the same rule here).
    def usable(column: str) -> bool:
        return bool(
            reference[column].notna().any()
            and current[column].notna().any()
            and (column in (extra or []) or not near_constant(reference[column]))
        )

    extra = [c for c in extra or [] if usable(c)]
    numeric = [c for c in numeric if usable(c)]
    categorical = [c for c in categorical if usable(c)]
    definition = DataDefinition(
        numerical_columns=[*numeric, *extra], categorical_columns=categorical
    )
    thresholds = thresholds or {}
    report = Report(
        [
            DataDriftPreset(
                columns=[*numeric, *categorical],
                num_method=METHODS["numeric"],
                cat_method=METHODS["categorical"],
                threshold=DRIFT_THRESHOLD,
                per_column_threshold={c: thresholds[c] for c in thresholds if c not in extra}
                or None,
                drift_share=DATASET_DRIFT_SHARE,
            ),
            *(
                ValueDrift(
                    column=c,
                    method=METHODS["numeric"],
                    threshold=thresholds.get(c, DRIFT_THRESHOLD),
                )
                for c in extra
            ),
        ]
    )
    columns = [*numeric, *categorical, *extra]
    return report.run(
        Dataset.from_pandas(_for_evidently(current, columns, categorical), definition),
        Dataset.from_pandas(_for_evidently(reference, columns, categorical), definition),
    )


def evidently_verdict(metrics: list[dict]) -> dict:
    """Evidently's own result, read back from its snapshot's metrics (`snapshot.dict()["metrics"]`):
    distance per column, drifted columns (as its thresholds decided), dataset count and share."""
    verdict: dict = {"distances": {}, "drifted": set()}
    for metric in metrics:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            verdict["distances"][config["column"]] = float(metric["value"])
            if float(metric["value"]) >= config["threshold"]:
                verdict["drifted"].add(config["column"])
        elif config["type"].endswith("DriftedColumnsCount"):
            verdict["count"] = int(metric["value"]["count"])
            verdict["share"] = float(metric["value"]["share"])
            verdict["columns"] = list(config["columns"])
    return verdict


def _for_evidently(frame: pd.DataFrame, columns: list[str], categorical: list[str]) -> pd.DataFrame:
    import pandas as pd

    out = frame[columns].copy()
    for name in columns:
        if name in categorical:
            out[name] = out[name].astype("string").astype(object)
        else:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    return out
