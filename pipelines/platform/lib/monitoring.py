"""What monitoring computes per day besides drift: the champion's scores and live performance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.platform.lib.evaluation import binary_metrics
from pipelines.platform.lib.modeling.dataset import feature_frame, labels
from pipelines.platform.lib.task import TaskSpec

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MIN_LABELLED_ROWS = 100  # fewer labelled flights than this give an AUC too noisy to act on
ROLLING_DAYS = 7


_MODELS: dict[tuple[str, str], object] = {}


def _load(registry, model_uri: str):
    # A registered version never changes: load it once per process, however many days a run
    # covers (keyed by store too, so tests with separate stores never share a model).
    key = (registry.tracking_uri, model_uri)
    if key not in _MODELS:
        if len(_MODELS) >= 4:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = registry.load(model_uri)
    return _MODELS[key]


def champion_scores(registry, spec: TaskSpec, version: str, frame: pd.DataFrame) -> np.ndarray:
    """P(label = 1) of a registered version for every row of a training-set-shaped frame."""
    import numpy as np

    if frame.empty:
        return np.empty(0)
    model = _load(registry, f"models:/{spec.registered_model}/{version}")
    return np.asarray(model.predict(feature_frame(frame, spec)), dtype="float64")


@dataclass(frozen=True)
class LivePerformance:
    status: str  # "ok" | "insufficient"
    rows: int
    metrics: dict[str, float]
    reason: str = ""
    pending: int = 0  # rows whose label was not known yet at the scoring instant


def score_live_performance(
    spec: TaskSpec,
    frame: pd.DataFrame,
    scores: np.ndarray,
    min_rows: int = MIN_LABELLED_ROWS,
    as_of=None,
) -> LivePerformance:
    """Metrics of the scores against the labels the day brought (rows without a label are not
    counted: their outcome is not known yet). `as_of`: the instant it scores at; a label known
    only later (`label_known_at`) is pending, counted but not scored (issue 24)."""
    import numpy as np

    from pipelines.platform.lib.labels import known_by

    known = frame[spec.label_column].notna().to_numpy() if len(frame) else np.zeros(0, bool)
    pending = 0
    if as_of is not None and len(frame):
        in_time = known_by(frame, as_of)
        pending = int((known & ~in_time).sum())
        known &= in_time
    y = labels(frame[known], spec) if known.any() else np.zeros(0)
    p = scores[known] if len(scores) else np.zeros(0)
    if len(y) < min_rows:
        return LivePerformance(
            "insufficient",
            len(y),
            {},
            f"{len(y)} labelled rows ({pending} pending); need at least {min_rows}",
            pending,
        )
    if y.min() == y.max():
        return LivePerformance(
            "insufficient", len(y), {}, "a single class among the labels", pending
        )
    return LivePerformance("ok", len(y), binary_metrics(y, p), pending=pending)


def rolling_view(history: pd.DataFrame, metric: str, days: int = ROLLING_DAYS) -> pd.DataFrame:
    """Per day: the metric and its row-weighted mean over the trailing `days` days (none when no
    day has the metric: every day insufficient or trained on)."""
    if metric not in history.columns:
        history = history.assign(**{metric: float("nan")})
    daily = history.dropna(subset=[metric]).sort_values("day").set_index("day")
    weights = daily["rows"].astype("float64")
    weighted = (daily[metric] * weights).rolling(days, min_periods=1).sum()
    daily[f"{metric}_rolling_{days}d"] = weighted / weights.rolling(days, min_periods=1).sum()
    return daily


# Statuses of a monitored day under a champion that could not judge it fairly.
TRAINED_ON = "trained_on"


def latest_verdicts(history: pd.DataFrame, version: str | None = None) -> pd.DataFrame:
    """The newest verdict of each day (one row per day), of champion `version` if given. A
    monitoring table keeps every verdict ever given (re-judging appends, never overwrites)."""
    if history.empty:
        return history
    rows = history
    column = "reference_version" if "reference_version" in rows.columns else "champion_version"
    if version is not None and column in rows.columns:
        rows = rows[rows[column].astype(str) == str(version)]
    if "judged_at" in rows.columns:
        rows = rows.sort_values("judged_at", kind="stable", na_position="first")
    return rows.drop_duplicates("partition_date", keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class Judgement:
    """What a monitoring run does with one day: keep its verdicts, or add one (`trained_on`
    when the champion trained on the day)."""

    day: str
    action: str  # "keep" | "trained_on" | "judge"
    earlier: int  # verdicts already given for the day (all of them stay)
    note: str = ""


def plan_judgements(
    days: list[str], history: pd.DataFrame, trained_through: str, rejudge: bool
) -> list[Judgement]:
    """A day already judged is kept unless `rejudge` (a backfill of ingestion re-judges
    nothing); a day up to `trained_through` gets no fair verdict from this champion."""
    plans = []
    for day in days:
        prior = history[history["partition_date"] == day] if len(history) else history
        # "no champion yet" is no verdict: the first champion's judgement is not a re-judgement.
        judged = prior[prior["status"] != "no_reference"] if len(prior) else prior
        if len(judged) and not rejudge:
            last = judged.iloc[-1]
            version = last.get("reference_version", last.get("champion_version"))
            note = f"kept: {last['status']} judged by v{version} at {last.get('judged_at', '?')}"
            plans.append(Judgement(day, "keep", len(prior), note))
        elif day <= trained_through:
            note = (
                f"champion trained on this day (its training data ran through {trained_through}): "
                "no fair verdict"
            )
            plans.append(Judgement(day, TRAINED_ON, len(prior), note))
        else:
            plans.append(Judgement(day, "judge", len(prior)))
    return plans
