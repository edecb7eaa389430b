"""One family's fit on a task's training table: the split, the arrays, the training, the
validation metrics. The model assets, tuning trials and `flightline reproduce` share it, so a
reproduction runs exactly the code a model version was trained by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.platform.lib.modeling import dataset as data
from pipelines.platform.lib.modeling.base import TrainResult
from pipelines.platform.lib.modeling.families import family
from pipelines.platform.lib.task import TaskSpec, TimeSplit

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Prepared:
    frames: data.SplitFrames
    args: tuple  # train_x, train_y, valid_x, valid_y, categorical: what a train function takes
    train_end: str  # the last timestamp the model sees (training + validation)


def prepare(
    spec: TaskSpec, table: pd.DataFrame, split: TimeSplit, permutation_seed: int | None = None
) -> Prepared:
    import pandas as pd

    frames = data.time_split(table, spec, split)
    train = frames.train
    if permutation_seed is not None:
        train = data.permuted_labels(train, spec, permutation_seed)
    args = (
        data.feature_frame(train, spec),
        data.labels(train, spec),
        data.feature_frame(frames.valid, spec),
        data.labels(frames.valid, spec),
        list(spec.categorical_features),
    )
    train_end = str(pd.to_datetime(frames.valid[spec.timestamp_column], utc=True).max())
    return Prepared(frames, args, train_end)


def fit(
    family_name: str,
    prepared: Prepared,
    params: dict[str, Any],
    on_epoch: Callable[[int, dict], None] | None = None,
) -> tuple[TrainResult, dict]:
    """Train with `params` (a config dict: unknown keys ignored); the result and its validation
    metrics."""
    from pipelines.platform.lib.evaluation import binary_metrics

    fam = family(family_name)
    extra = {"on_epoch": on_epoch} if on_epoch is not None else {}
    result = fam.train_fn()(*prepared.args, fam.make_params(params), **extra)
    valid = binary_metrics(prepared.args[3], result.model.predict_proba(prepared.args[2]))
    return result, valid
