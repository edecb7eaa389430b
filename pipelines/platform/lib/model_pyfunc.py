"""The MLflow pyfunc wrapper every model family is logged behind.

Its own module because it subclasses an MLflow class: importing it imports MLflow, which only
logging or loading a model should pay for (see tracking.py).
"""

import json
from pathlib import Path

import mlflow
import pandas as pd

from pipelines.platform.lib.modeling.base import load_classifier
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.task import TaskSpec


class ClassifierPyfunc(mlflow.pyfunc.PythonModel):
    """Any family behind one MLflow interface: a frame of features in, P(label = 1) out."""

    def load_context(self, context) -> None:
        directory = Path(context.artifacts["classifier"])
        self.meta = json.loads((directory / "task.json").read_text())
        self.classifier = load_classifier(self.meta["family"], directory)

    def predict(self, context, model_input, params=None):
        spec = _spec_from_meta(self.meta)
        return self.classifier.predict_proba(feature_frame(pd.DataFrame(model_input), spec))


def _spec_from_meta(meta: dict) -> TaskSpec:
    return TaskSpec(
        name=meta["task"],
        training_asset=(),
        feature_service=None,
        entity_keys=(),
        timestamp_column="",
        label_column="",
        categorical_features=tuple(meta["categorical"]),
        numeric_features=tuple(meta["numeric"]),
    )
