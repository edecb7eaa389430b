"""The model families a task may train: a registry of small objects, one per family. A new
family is one module with a train function, a classifier with `load`, and an entry here."""

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelFamily:
    name: str  # what a task definition lists under models.families
    asset_name: str  # the Dagster asset that trains it
    params: str  # module:class of its hyper-parameters (a frozen dataclass)
    train: str  # module:function(x_train, y_train, x_valid, y_valid, categorical, params, **kw)
    classifier: str  # module:class with a `load(directory)` classmethod
    package: str  # the pip package its saved model needs at serving time
    step_unit: str  # what one point of its learning curve is
    gpu: bool = False  # its training step asks for a GPU on the cluster
    progress: bool = False  # its steps are logged as they go (long steps: epochs)
    # Its train function's validation curves (history keys) per tuning metric; the train function
    # takes `on_epoch(step, history)`, which a tuning trial uses to prune.
    curves: dict[str, str] = field(default_factory=dict)
    report_every: int = 1  # steps between two reports to the pruner

    def params_type(self) -> type:
        return _load(self.params)

    def make_params(self, values: dict[str, Any]):
        """The family's hyper-parameters from a config dict (unknown keys ignored)."""
        cls = self.params_type()
        known = {f.name: f for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        for key, value in kwargs.items():
            if isinstance(value, list):  # configs carry lists; params are frozen tuples
                kwargs[key] = tuple(value)
        return cls(**kwargs)

    def train_fn(self) -> Callable:
        return _load(self.train)

    def load(self, directory: Path):
        return _load(self.classifier).load(directory)


def _load(ref: str):
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


_BASE = "pipelines.platform.lib.modeling"
FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ModelFamily(
            name="lightgbm",
            asset_name="lgbm_model",
            params=f"{_BASE}.params:LgbmParams",
            train=f"{_BASE}.lgbm:train_lgbm",
            classifier=f"{_BASE}.lgbm:LgbmClassifier",
            package="lightgbm",
            step_unit="iteration",
            curves={"roc_auc": "valid_auc", "log_loss": "valid_binary_logloss"},
            report_every=10,  # each report is a database write; trees come by the hundred
        ),
        ModelFamily(
            name="torch",
            asset_name="torch_model",
            params=f"{_BASE}.params:MlpParams",
            train=f"{_BASE}.mlp:train_mlp",
            classifier=f"{_BASE}.mlp:MlpClassifier",
            package="torch",
            step_unit="epoch",
            gpu=True,
            progress=True,
            curves={"roc_auc": "valid_auc", "log_loss": "valid_loss"},
        ),
    )
}


def family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None


def asset_name(name: str) -> str:
    return family(name).asset_name
