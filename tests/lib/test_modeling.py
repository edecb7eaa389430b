"""Data preparation, both model families and the pyfunc round trip, on a small learnable table."""

import re

import numpy as np
import pandas as pd
import pytest

from pipelines.platform.lib.evaluation import binary_metrics
from pipelines.platform.lib.modeling import dataset as data
from pipelines.platform.lib.modeling.baseline import HistoricalRateBaseline
from pipelines.platform.lib.modeling.lgbm import LgbmParams, train_lgbm
from pipelines.platform.lib.modeling.mlp import MlpParams, train_mlp
from pipelines.platform.lib.tracking import ModelRegistry
from tests.defs.test_model_factory import TOY, toy_examples


def _matrices(table):
    frames = data.time_split(table, TOY)
    args = (
        data.feature_frame(frames.train, TOY),
        data.labels(frames.train, TOY),
        data.feature_frame(frames.valid, TOY),
        data.labels(frames.valid, TOY),
        list(TOY.categorical_features),
    )
    return frames, args


def test_time_split_orders_train_valid_holdout_by_day():
    frames = data.time_split(toy_examples(days=12), TOY)
    assert frames.train["seen_at"].max() < frames.valid["seen_at"].min()
    assert frames.valid["seen_at"].max() < frames.holdout["seen_at"].min()
    assert frames.holdout["seen_at"].min() >= frames.holdout_start
    assert frames.describe(TOY)["holdout"]["rows"] == 3 * 150


def test_time_split_cuts_at_the_tasks_local_midnight():
    """A task in UTC+8: every holdout row is on or after a Shanghai midnight, none before it."""
    from dataclasses import replace

    spec = replace(TOY, timezone="Asia/Shanghai")
    frames = data.time_split(toy_examples(days=12), spec)
    local = frames.holdout_start.tz_convert("Asia/Shanghai")
    assert (local.hour, local.minute) == (0, 0)
    assert frames.holdout["seen_at"].min() >= frames.holdout_start
    assert frames.valid["seen_at"].max() < frames.holdout_start
    days = data.local_days(frames.holdout["seen_at"], "Asia/Shanghai").nunique()
    assert days == spec.split.holdout_days
    utc = data.time_split(toy_examples(days=12), TOY).holdout_start
    assert (utc.hour, utc.minute) == (0, 0) and utc != frames.holdout_start


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (toy_examples(days=6), "6 days of data; the split needs at least 7"),
        (toy_examples().assign(churned=1), "single class (1)"),
        (toy_examples().assign(churned=2), "labels must be 0/1"),
        (toy_examples().drop(columns=["plan"]), "lacks columns ['plan']"),
        (toy_examples().assign(churned=np.nan), "have no label"),
    ],
)
def test_bad_training_tables_are_refused_with_the_reason(table, message):
    with pytest.raises(data.TrainingDataError, match=re.escape(message)):
        data.time_split(table, TOY)


@pytest.mark.slow
def test_both_families_learn_and_are_deterministic_for_a_seed():
    frames, args = _matrices(toy_examples())
    holdout_x, holdout_y = data.feature_frame(frames.holdout, TOY), data.labels(frames.holdout, TOY)
    lgbm = [train_lgbm(*args, LgbmParams(seed=3)) for _ in range(2)]
    mlp = [train_mlp(*args, MlpParams(seed=3, max_epochs=6)) for _ in range(2)]
    baseline = HistoricalRateBaseline(["plan"]).fit(args[0], args[1]).predict_proba(holdout_x)
    for first, second in (lgbm, mlp):
        p1, p2 = first.model.predict_proba(holdout_x), second.model.predict_proba(holdout_x)
        np.testing.assert_array_equal(p1, p2)
        assert (
            binary_metrics(holdout_y, p1)["roc_auc"]
            > binary_metrics(holdout_y, baseline)["roc_auc"] + 0.05
        )
    assert mlp[0].summary["device"] == "cpu" and mlp[0].summary["rows_per_second"] > 0
    assert len(lgbm[0].history["valid_binary_logloss"]) > lgbm[0].summary["best_iteration"]


def test_unknown_categories_and_missing_values_still_predict():
    frames, args = _matrices(toy_examples())
    odd = data.feature_frame(frames.holdout.head(4), TOY).assign(
        plan=["platinum", None, "basic", "pro"]
    )
    odd.loc[0, "tenure"] = np.nan
    for result in (train_lgbm(*args, LgbmParams()), train_mlp(*args, MlpParams(max_epochs=2))):
        p = result.model.predict_proba(odd)
        assert p.shape == (4,) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def _log_version(registry: ModelRegistry, result, frames):
    """The trained toy model as a new registered version (inside a training run)."""
    return registry.log_model_version(
        TOY,
        result.model,
        params={},
        history=result.history,
        metrics={},
        tags={},
        example=frames.holdout.head(3),
        train_end="2024-03-17",
        summary={},
    )


@pytest.mark.slow
def test_logged_model_predicts_what_the_trained_one_does(tmp_path):
    frames, args = _matrices(toy_examples())
    registry = ModelRegistry(f"sqlite:///{tmp_path}/m.db", str(tmp_path / "artifacts"))
    for result in (train_lgbm(*args, LgbmParams()), train_mlp(*args, MlpParams(max_epochs=2))):
        with registry.training_run(TOY, result.model.family, "round-trip", {}):
            ref = _log_version(registry, result, frames)
        loaded = registry.load(ref.model_uri)
        x = data.feature_frame(frames.holdout, TOY)
        np.testing.assert_allclose(loaded.predict(x), result.model.predict_proba(x), rtol=1e-6)
    assert not (tmp_path / "mlruns").exists()
    assert pd.Series([ref.version]).iloc[0] == "2"
    # The MLflow UI opens the experiment in its model-training view, not the GenAI one.
    experiment = registry.client.get_experiment_by_name(TOY.name)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_two_registries_sharing_one_bentoml_store_never_swap_their_version_numbers(tmp_path):
    """Version 1 of one registry is not version 1 of another: packaging imports each into the
    (shared) BentoML store as its own model, found again by its run id."""
    from pipelines.platform.lib.packaging import import_champion

    frames, args = _matrices(toy_examples())
    imported = []
    for name in ("a", "b"):
        registry = ModelRegistry(f"sqlite:///{tmp_path}/{name}.db", str(tmp_path / name))
        result = train_lgbm(*args, LgbmParams())
        with registry.training_run(TOY, result.model.family, "shared-store", {}):
            ref = _log_version(registry, result, frames)
        registry.client.set_registered_model_alias(TOY.name, "champion", ref.version)
        first, _ = import_champion(registry, TOY.registered_model)
        again, fresh = import_champion(registry, TOY.registered_model)
        assert (str(again.tag), fresh) == (str(first.tag), False)  # found, not imported twice
        assert first.info.metadata["mlflow_run_id"] == ref.run_id
        imported.append((ref.version, str(first.tag)))
    # Both are "v1" in their registry; the store holds two models.
    assert imported[0][0] == imported[1][0] and imported[0][1] != imported[1][1]
