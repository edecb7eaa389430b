"""The naive baseline a first champion must beat: the historical label rate by a few keys."""

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

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> "HistoricalRateBaseline":
        data = frame[self.keys].astype(str).assign(_y=np.asarray(y, dtype="float64"))
        self.global_rate = float(data["_y"].mean())
        self.levels: list[pd.Series] = []
        for depth in range(1, len(self.keys) + 1):
            grouped = data.groupby(self.keys[:depth])["_y"].agg(["sum", "count"])
            self.levels.append(grouped)
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
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
