"""LightGBM on a time-ordered split: native categorical handling, early stopping on validation."""

import json
import time
from dataclasses import asdict
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipelines.platform.lib.modeling.base import TrainResult
from pipelines.platform.lib.modeling.params import LgbmParams

FAMILY = "lightgbm"


class LgbmClassifier:
    """A trained booster plus the category lists it was trained with."""

    family = FAMILY

    def __init__(self, booster: lgb.Booster, categories: dict[str, list[str]], features: list[str]):
        self.booster = booster
        self.categories = categories
        self.features = features

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        # Unknown categories become NaN (LightGBM's "missing" branch), never a wrong code.
        out = frame[self.features].copy()
        for column, values in self.categories.items():
            out[column] = pd.Categorical(out[column], categories=values)
        return out

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self.matrix(frame), num_threads=1 if len(frame) < 512 else 0)

    def predict_records(self, records: list[dict]) -> np.ndarray:
        """The same scores from plain records, as a float matrix: a category's code is its
        index in the training list, unknown or missing -> NaN, exactly what LightGBM makes of
        `matrix`'s pandas categoricals (a test compares them); no frame, no pandas."""
        codes = self._codes()
        matrix = np.empty((len(records), len(self.features)), dtype="float64")
        for i, record in enumerate(records):
            for j, name in enumerate(self.features):
                value = record[name]
                lookup = codes.get(name)
                if lookup is not None:
                    matrix[i, j] = lookup.get(value, np.nan)
                else:
                    matrix[i, j] = np.nan if value is None else value
        return self.booster.predict(matrix, num_threads=1 if len(records) < 512 else 0)

    def _codes(self) -> dict[str, dict]:
        if getattr(self, "_category_codes", None) is None:
            self._category_codes = {
                column: {value: float(code) for code, value in enumerate(values)}
                for column, values in self.categories.items()
            }
        return self._category_codes

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "booster.txt"))
        (directory / "encoding.json").write_text(
            json.dumps({"categories": self.categories, "features": self.features})
        )

    @classmethod
    def load(cls, directory: Path) -> "LgbmClassifier":
        encoding = json.loads((directory / "encoding.json").read_text())
        booster = lgb.Booster(model_file=str(directory / "booster.txt"))
        return cls(booster, encoding["categories"], encoding["features"])


def _curve_callback(evals: dict, on_epoch):
    """Hands the curves so far to `on_epoch(iteration, history)` after each iteration (a tuning
    trial prunes there: its exception ends the training)."""

    def callback(env) -> None:
        on_epoch(
            env.iteration,
            {
                f"{split}_{metric}": values
                for split, m in evals.items()
                for metric, values in m.items()
            },
        )

    callback.order = 25  # after record_evaluation (20) appends, before early stopping (30)
    return callback


def train_lgbm(
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    valid_x: pd.DataFrame,
    valid_y: np.ndarray,
    categorical: list[str],
    params: LgbmParams,
    on_epoch=None,
) -> TrainResult:
    categories = {c: sorted(train_x[c].dropna().astype(str).unique().tolist()) for c in categorical}
    model = LgbmClassifier(None, categories, list(train_x.columns))  # type: ignore[arg-type]
    train_set = lgb.Dataset(model.matrix(train_x), label=train_y, free_raw_data=False)
    valid_set = lgb.Dataset(model.matrix(valid_x), label=valid_y, reference=train_set)
    evals: dict = {}
    started = time.perf_counter()
    booster = lgb.train(
        params.booster_params(),
        train_set,
        num_boost_round=params.max_rounds,
        valid_sets=[train_set, valid_set],
        valid_names=["train", "valid"],
        callbacks=[
            lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.record_evaluation(evals),
            *([_curve_callback(evals, on_epoch)] if on_epoch is not None else []),
        ],
    )
    seconds = time.perf_counter() - started
    model.booster = booster
    history = {
        f"{split}_{metric}": values
        for split, metrics in evals.items()
        for metric, values in metrics.items()
    }
    return TrainResult(
        model=model,
        history=history,
        summary={
            "best_iteration": int(booster.best_iteration),
            "train_seconds": round(seconds, 3),
            "train_rows": len(train_x),
            "params": asdict(params),
        },
    )
