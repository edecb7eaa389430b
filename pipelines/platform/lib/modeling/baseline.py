"""The naive baselines a first champion must beat: the historical label rate by a few keys, or
one feature used as the score (on a persistent signal, "the current reading" is hard to beat)."""

from __future__ import annotations

from typing import TYPE_CHECKING

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class HistoricalRateBaseline:
    """Label rate per key combination, shrunk toward the rate of the first key, then the global
    rate, so that rare combinations do not get extreme probabilities."""

    family = "baseline"

    def __init__(self, keys: list[str], prior_weight: float = 20.0):
        self.keys = list(keys)
        self.prior_weight = prior_weight
        self.features = list(keys)

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> HistoricalRateBaseline:
        import numpy as np

        data = frame[self.keys].astype(str).assign(_y=np.asarray(y, dtype="float64"))
        self.global_rate = float(data["_y"].mean())
        self.levels: list[pd.Series] = []
        for depth in range(1, len(self.keys) + 1):
            grouped = data.groupby(self.keys[:depth])["_y"].agg(["sum", "count"])
            self.levels.append(grouped)
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        import numpy as np
        import pandas as pd

        data = frame[self.keys].astype(str)
        rate = np.full(len(frame), self.global_rate)
        for depth, grouped in enumerate(self.levels, start=1):
            index = (
                pd.MultiIndex.from_frame(data[self.keys[:depth]])
                if depth > 1
                else data[self.keys[0]]
            )
            stats = grouped.reindex(index)
            total = stats["sum"].fillna(0).to_numpy()
            count = stats["count"].fillna(0).to_numpy()
            rate = (total + self.prior_weight * rate) / (count + self.prior_weight)
        return rate


class FeatureScoreBaseline:
    """One feature as the score, mapped to a probability by a one-variable logistic fit on the
    training rows: monotone, so its ranking (and AUC) is the feature's own, in whichever direction
    the training rows say; missing values get the training median."""

    family = "baseline"

    def __init__(self, feature: str):
        self.feature = feature
        self.features = [feature]

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        import pandas as pd

        x = pd.to_numeric(frame[self.feature], errors="coerce").astype("float64")
        return ((x.fillna(self.median) - self.center) / self.scale).to_numpy()[:, None]

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> FeatureScoreBaseline:
        import numpy as np
        import pandas as pd
        from sklearn.linear_model import LogisticRegression

        x = pd.to_numeric(frame[self.feature], errors="coerce").astype("float64")
        if x.notna().sum() == 0:
            raise ValueError(f"baseline feature {self.feature!r} is missing on every training row")
        self.median = float(x.median())
        self.center = float(x.mean())
        self.scale = float(x.std()) or 1.0
        self.model = LogisticRegression().fit(self._x(frame), np.asarray(y, dtype="int64"))
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self._x(frame))[:, 1]


def fit_baseline(spec, frame: pd.DataFrame, y: np.ndarray):
    """The fitted baseline a BaselineSpec declares."""
    if spec.feature is not None:
        return FeatureScoreBaseline(spec.feature).fit(frame, y)
    return HistoricalRateBaseline(list(spec.rate_by)).fit(frame, y)
