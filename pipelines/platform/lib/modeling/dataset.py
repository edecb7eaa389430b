"""From a task's training table to model matrices: feature selection, the time split, checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.platform.lib.task import TaskSpec, TimeSplit

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class TrainingDataError(ValueError):
    """The training table cannot train or evaluate a model; the message says why."""


@dataclass(frozen=True)
class SplitFrames:
    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    holdout_start: pd.Timestamp  # first instant of the holdout; nothing at or after it trains

    def describe(self, spec: TaskSpec) -> dict:
        ts = spec.timestamp_column
        return {
            name: {
                "rows": len(frame),
                "positives": int(frame[spec.label_column].sum()),
                "first": str(frame[ts].min()),
                "last": str(frame[ts].max()),
            }
            for name, frame in (
                ("train", self.train),
                ("valid", self.valid),
                ("holdout", self.holdout),
            )
        }


def check_training_table(table: pd.DataFrame, spec: TaskSpec) -> None:
    """Refuse a table no model can learn from, naming what is wrong."""
    import pandas as pd

    needed = [*spec.features, spec.label_column, spec.timestamp_column]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        source = f" (feature service {spec.feature_service})" if spec.feature_service else ""
        raise TrainingDataError(
            f"task {spec.name}: the training table lacks columns {missing}{source}"
        )
    if table.empty:
        raise TrainingDataError(
            f"task {spec.name}: the training table is empty; materialize its partitions first"
        )
    labels = table[spec.label_column]
    if labels.isna().any():
        raise TrainingDataError(f"task {spec.name}: {int(labels.isna().sum())} rows have no label")
    classes = sorted(pd.unique(labels))
    if not set(classes) <= {0, 1}:
        raise TrainingDataError(f"task {spec.name}: labels must be 0/1, found {classes[:5]}")
    if len(classes) < 2:
        raise TrainingDataError(
            f"task {spec.name}: the training table has a single class ({classes[0]}) in "
            f"{len(table)} rows; a classifier needs both"
        )


def time_split(table: pd.DataFrame, spec: TaskSpec, split: TimeSplit | None = None) -> SplitFrames:
    """Cut by calendar day of the timestamp in the task's own time zone (a task in UTC+8 has its
    holdout start at its local midnight, not at 08:00): train < valid < holdout, most recent last."""
    import numpy as np
    import pandas as pd

    split = split or spec.split
    check_training_table(table, spec)
    ordered = table.assign(_ts=pd.to_datetime(table[spec.timestamp_column], utc=True))
    ordered = ordered.sort_values("_ts", kind="stable")
    ordered_days = local_days(ordered.pop("_ts"), spec.timezone)
    distinct = np.sort(ordered_days.unique())
    needed = split.holdout_days + split.validation_days + 1
    if len(distinct) < needed:
        raise TrainingDataError(
            f"task {spec.name}: {len(distinct)} days of data; the split needs at least {needed} "
            f"({split.validation_days} validation + {split.holdout_days} holdout + 1 training)"
        )
    holdout_day = pd.Timestamp(distinct[-split.holdout_days])
    valid_start = pd.Timestamp(distinct[-(split.holdout_days + split.validation_days)])
    holdout_start = holdout_day.tz_localize(
        spec.timezone, ambiguous=False, nonexistent="shift_forward"
    ).tz_convert("UTC")
    frames = SplitFrames(
        train=ordered[ordered_days < valid_start].reset_index(drop=True),
        valid=ordered[(ordered_days >= valid_start) & (ordered_days < holdout_day)].reset_index(
            drop=True
        ),
        holdout=ordered[ordered_days >= holdout_day].reset_index(drop=True),
        holdout_start=holdout_start,
    )
    for name in ("train", "valid"):
        labels = getattr(frames, name)[spec.label_column]
        if labels.nunique() < 2:
            raise TrainingDataError(
                f"task {spec.name}: the {name} split ({len(labels)} rows) has a single class"
            )
    return frames


def local_days(timestamps: pd.Series, timezone: str) -> pd.Series:
    """Each UTC instant's calendar day in `timezone`, as a naive midnight."""
    return timestamps.dt.tz_convert(timezone).dt.tz_localize(None).dt.floor("D")


def check_holdout(holdout: pd.DataFrame, spec: TaskSpec, min_rows: int, min_positives: int) -> None:
    labels = holdout[spec.label_column]
    positives, negatives = int(labels.sum()), int((1 - labels).sum())
    if len(holdout) < min_rows or min(positives, negatives) < min_positives:
        raise TrainingDataError(
            f"task {spec.name}: the holdout has {len(holdout)} labelled rows ({positives} positive, "
            f"{negatives} negative); evaluation needs at least {min_rows} rows and "
            f"{min_positives} of each class"
        )


def feature_frame(table: pd.DataFrame, spec: TaskSpec) -> pd.DataFrame:
    """The model input: categoricals as text, numerics as float64, in the spec's order."""
    import pandas as pd

    missing = [c for c in spec.features if c not in table.columns]
    if missing:
        raise TrainingDataError(f"task {spec.name}: input lacks features {missing}")
    text = table[list(spec.categorical_features)].astype(object)
    text = text.where(text.notna(), None)
    try:  # one vectorized cast; the serving path calls this per request
        numbers = table[list(spec.numeric_features)].astype("float64")
    except (TypeError, ValueError) as exc:
        bad = [
            c
            for c in spec.numeric_features
            if pd.to_numeric(table[c], errors="coerce").isna().sum() > table[c].isna().sum()
        ]
        raise TrainingDataError(f"task {spec.name}: non-numeric values in {bad}") from exc
    return pd.concat([text, numbers], axis=1)


def labels(table: pd.DataFrame, spec: TaskSpec) -> np.ndarray:
    return table[spec.label_column].to_numpy(dtype="float64")


def permuted_labels(table: pd.DataFrame, spec: TaskSpec, seed: int) -> pd.DataFrame:
    """A null-model control: same rows, labels shuffled. Such a model must never pass the gate."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return table.assign(**{spec.label_column: rng.permutation(table[spec.label_column].to_numpy())})
