"""The typed task spec: everything the generic half of the graph (training set onward) needs to
know about a prediction task. A new task is a new spec, not a copy of the model code."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODEL_FAMILIES = ("lightgbm", "torch")  # the default; the registry: lib/modeling/families.py


@dataclass(frozen=True)
class TimeSplit:
    """The most recent `holdout_days` are the evaluation holdout; the `validation_days` before them
    drive early stopping; everything earlier is training data."""

    validation_days: int = 7  # days before the holdout that drive early stopping
    holdout_days: int = 7  # the most recent days: the evaluation holdout

    def __post_init__(self) -> None:
        if self.validation_days < 1 or self.holdout_days < 1:
            raise ValueError("validation_days and holdout_days must be at least 1")


@dataclass(frozen=True)
class GateThresholds:
    """What a challenger must show to be promoted (defaults; tunable per run in the Launchpad)."""

    # Over the champion (or the naive baseline when there is none); a negative margin is a
    # non-inferiority test: the interval's lower bound above it instead of above zero.
    min_auc_gain: float = 0.002
    max_slice_regression: float = 0.03  # AUC a large slice may lose against the reference
    min_slice_rows: int = 300  # a slice smaller than this is too noisy to veto a promotion
    # Non-inferiority: refused when the paired bootstrap's upper bound of the increase exceeds these.
    max_log_loss_increase: float = 0.01
    max_ece_increase: float = 0.02  # the same for the expected calibration error
    bootstrap_samples: int = 1000  # resamples of the paired bootstrap interval of the AUC gain
    min_holdout_rows: int = 200  # fewer labelled holdout rows: no evaluation (the step fails)
    min_holdout_positives: int = 20  # and at least this many of each class


@dataclass(frozen=True)
class BaselineSpec:
    """A naive score a task's first model must beat: the historical label rate by `rate_by`
    keys, or one feature (known at prediction time) used as the score, e.g. "current reading"."""

    name: str
    rate_by: tuple[str, ...] = ()
    feature: str | None = None

    def __post_init__(self) -> None:
        if bool(self.rate_by) == (self.feature is not None):
            raise ValueError(f"baseline {self.name}: give exactly one of rate_by or feature")

    @property
    def columns(self) -> tuple[str, ...]:
        return self.rate_by or (self.feature,)

    @property
    def label(self) -> str:
        """Its name among the models of an evaluation report."""
        return self.name if self.name.startswith("baseline") else f"baseline_{self.name}"


@dataclass(frozen=True)
class TaskSpec:
    """A binary prediction task over a table with one row per example."""

    name: str  # also the MLflow experiment and registered model name
    training_asset: tuple[str, ...]  # asset key of the training table
    feature_service: str | None  # the Feast FeatureService the table was built with, if any
    entity_keys: tuple[str, ...]  # columns that identify an example
    timestamp_column: str  # when the prediction is made; orders the time split
    label_column: str  # 0/1
    categorical_features: tuple[str, ...]
    numeric_features: tuple[str, ...]
    slice_columns: tuple[str, ...] = ()  # evaluation reports metrics per value of these
    baseline_keys: tuple[str, ...] = ()  # the naive baseline: historical label rate by these keys
    # More naive baselines; the first champion must beat the strongest of all on the holdout.
    baselines: tuple[BaselineSpec, ...] = ()
    families: tuple[str, ...] = MODEL_FAMILIES
    split: TimeSplit = field(default_factory=TimeSplit)
    gate: GateThresholds = field(default_factory=GateThresholds)
    asset_prefix: tuple[str, ...] = ()  # the task's asset-key prefix: tasks never share keys
    # The prediction is made this long before the timestamp (0: at the timestamp itself).
    lead_minutes: int = 0
    description: str = ""  # for model cards
    known_limits: tuple[str, ...] = ()  # for model cards: what a model of this task cannot do
    request_features: tuple[str, ...] = ()  # numeric features computed from the request itself
    # When each label became known (a column of the examples and the training set), if declared.
    label_known_at_column: str | None = None
    # The task's own time zone: the split is cut at its local midnights, not UTC's.
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        from pipelines.platform.lib.modeling.families import FAMILIES

        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"task {self.name}: unknown model families {sorted(unknown)}")
        overlap = set(self.categorical_features) & set(self.numeric_features)
        if overlap:
            raise ValueError(f"task {self.name}: features both categorical and numeric: {overlap}")
        if not set(self.baseline_keys) <= set(self.features):
            raise ValueError(f"task {self.name}: baseline keys must be features")
        for baseline in self.baselines:
            stray = set(baseline.columns) - set(self.features)
            if stray:
                raise ValueError(
                    f"task {self.name}: baseline {baseline.name} reads non-features {sorted(stray)}"
                    " (a baseline may only use what the models see at prediction time)"
                )
        names = [b.name for b in self.declared_baselines()]
        if len(set(names)) != len(names):
            raise ValueError(f"task {self.name}: baseline names repeat: {names}")

    def declared_baselines(self) -> tuple[BaselineSpec, ...]:
        """Every baseline the gate weighs: the rate by `baseline_keys` (by default the first
        categorical feature), named "baseline", unless only other baselines are declared."""
        keys = self.baseline_keys or (() if self.baselines else self.categorical_features[:1])
        rate = (BaselineSpec("baseline", rate_by=tuple(keys)),) if keys else ()
        return rate + self.baselines

    @property
    def features(self) -> tuple[str, ...]:
        return self.categorical_features + self.numeric_features

    @property
    def registered_model(self) -> str:
        return self.name

    def prediction_time(self, timestamps, lead_minutes: int | None = None):
        """When each example is predicted: nothing known later may reach it."""
        import pandas as pd

        lead = self.lead_minutes if lead_minutes is None else lead_minutes
        return pd.to_datetime(timestamps, utc=True) - pd.Timedelta(minutes=lead)


@dataclass(frozen=True)
class TaskDomain:
    """The task's own code, which the platform calls but cannot know: how a request (or a
    training example) becomes the keys Feast joins on and the features computed from the request
    itself. Training and serving call the same functions, so they cannot drift apart.

    Every function takes and returns pandas frames; `request_frame` normalizes rows first (text
    keys, the prediction timestamp as UTC) and the others read what it returns.
    """

    request_frame: Callable[[Any], Any]  # raw rows -> normalized rows (one per prediction)
    entity_keys: Callable[[Any], Any]  # normalized rows -> Feast join-key columns
    request_features: Callable[[Any], Any]  # normalized rows -> features from the request itself
    # lake table name -> path glob of that table: the task's Feast objects by name
    feature_definitions: Callable[[Callable[[str], str]], dict]
    read_reference: Callable[[str], Any] | None = None  # reference tables shipped with the source
    # service name -> its feature names, from declarations alone: loading the code location then
    # never imports Feast (6-9 s). Without it, the platform builds the Feast objects to read them.
    served_features: Callable[[str], tuple] | None = None
    # (landing_dir, start day, end day) -> landed files: drops the source's files for those days
    # into the task's landing folder, as if they had just arrived (`make replay TASK=...`).
    replay: Callable[..., list] | None = None
    warm_up_request: dict = field(default_factory=dict)  # one valid request (service warm-up)
    # Optional, for speed: one raw row (a dict) -> (its entity keys, its request features), the
    # values request_frame + entity_keys + request_features give for that row, without pandas
    # (a single-row frame costs milliseconds). The online path and the skew check then use it;
    # a task test compares it with the frame functions on real rows.
    request_row: Callable[[dict], tuple[dict, dict]] | None = None
