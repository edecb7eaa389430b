"""Hyper-parameters of the model families, apart from their libraries: building the code
location's Launchpad configs from them never imports LightGBM or torch."""

from dataclasses import dataclass


@dataclass(frozen=True)
class LgbmParams:
    num_leaves: int = 63
    learning_rate: float = 0.05
    max_rounds: int = 2000
    early_stopping_rounds: int = 50
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    # Categorical splits (LightGBM's defaults): high-cardinality keys such as airports are
    # smoothed toward the prior, and a category needs min_data_per_group rows to split alone.
    cat_smooth: float = 10.0
    cat_l2: float = 10.0
    min_data_per_group: int = 100
    max_cat_threshold: int = 32
    seed: int = 7
    num_threads: int = 0  # 0: LightGBM's default (all cores)

    def booster_params(self) -> dict:
        return {
            "objective": "binary",
            "metric": ["binary_logloss", "auc"],
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "cat_smooth": self.cat_smooth,
            "cat_l2": self.cat_l2,
            "min_data_per_group": self.min_data_per_group,
            "max_cat_threshold": self.max_cat_threshold,
            "seed": self.seed,
            "deterministic": True,  # same seed and data -> the same trees
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }


@dataclass(frozen=True)
class MlpParams:
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    batch_size: int = 1024
    max_epochs: int = 40
    patience: int = 4  # epochs without a better validation log loss before stopping
    seed: int = 7
    device: str = "auto"  # auto | cpu | cuda
