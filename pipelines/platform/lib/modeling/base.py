"""What every model family shares: its training result, and loading a saved classifier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class BinaryClassifier(Protocol):
    family: str
    features: list[str]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...


@dataclass
class TrainResult:
    model: BinaryClassifier
    history: dict[str, list[float]]  # metric name -> value per iteration / epoch
    summary: dict  # best iteration or epoch, seconds, rows/s, device, params


def load_classifier(family: str, directory: Path) -> BinaryClassifier:
    # Each family imports its library on load: serving a LightGBM model never imports torch.
    from pipelines.platform.lib.modeling.families import family as lookup

    return lookup(family).load(directory)
