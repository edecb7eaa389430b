"""A second, toy task through the same factory, and the model half's faults through Dagster:
unreachable MLflow, single-class data, a missing feature, a holdout with too few labels."""

import json
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pipelines.platform.components.model import model_defs
from pipelines.platform.lib.task import BaselineSpec, TaskSpec, TimeSplit
from pipelines.platform.lib.tracking import CHAMPION, PromotionRefused
from pipelines.platform.resources import LakeIOManager, MlflowResource

TOY = TaskSpec(
    name="toy_churn",
    training_asset=("toy", "examples"),
    feature_service=None,
    entity_keys=("customer",),
    timestamp_column="seen_at",
    label_column="churned",
    categorical_features=("plan",),
    numeric_features=("tenure", "tickets"),
    slice_columns=("plan",),
    baseline_keys=("plan",),
    split=TimeSplit(validation_days=3, holdout_days=3),
    asset_prefix=("toy",),
)


def toy_examples(days: int = 20, per_day: int = 150, seed: int = 0) -> pd.DataFrame:
    """Churn depends on tickets and tenure, a little on the plan: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    plan = rng.choice(["basic", "plus", "pro"], size=n)
    tenure = rng.gamma(2.0, 12.0, size=n)
    tickets = rng.poisson(1.5, size=n).astype(float)
    logit = -1.5 + 0.8 * tickets - 0.05 * tenure + np.where(plan == "basic", 0.4, 0.0)
    return pd.DataFrame(
        {
            "customer": [f"c{i}" for i in range(n)],
            "seen_at": pd.Timestamp("2024-03-01", tz="UTC")
            + pd.to_timedelta(np.repeat(np.arange(days), per_day), unit="D")
            + pd.to_timedelta(rng.integers(0, 86400, n), unit="s"),
            "plan": plan,
            "tenure": tenure,
            "tickets": tickets,
            "churned": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64"),
        }
    )


def _toy_run(
    tmp_path,
    table: pd.DataFrame,
    spec: TaskSpec = TOY,
    tracking_uri: str | None = None,
    run_config=None,
):
    @dg.asset(key=["toy", "examples"])
    def examples() -> pd.DataFrame:
        return table

    defs = model_defs(spec)
    mlflow = MlflowResource(
        tracking_uri=tracking_uri or f"sqlite:///{tmp_path}/mlflow/mlflow.db",
        artifact_root=str(tmp_path / "mlflow" / "artifacts"),
    )
    config = run_config or {"ops": {"toy__torch_model": {"config": {"max_epochs": 5}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [examples, *defs.assets, *defs.asset_checks],
            resources={
                "io_manager": LakeIOManager(lake_root=str(tmp_path / "lake")),
                "mlflow": mlflow,
            },
            run_config=config,
            instance=instance,
            raise_on_error=False,
        )
    return result, mlflow.registry()


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "the run was expected to fail"
    return "\n".join(e.step_failure_data.error.to_string() for e in failures)


@pytest.mark.slow
def test_a_second_task_runs_through_the_same_factory(tmp_path):
    result, registry = _toy_run(tmp_path, toy_examples())
    assert result.success
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert keys == {
        "toy/examples",
        "toy/lgbm_model",
        "toy/torch_model",
        "toy/model_evaluation",
        "toy/champion",
    }
    champion = registry.alias("toy_churn", CHAMPION)
    assert champion is not None and champion.tags["task"] == "toy_churn"
    report = result.output_for_node("toy__model_evaluation")
    assert report["reference"] == "baseline"
    assert (
        report["metrics"][champion.tags["model_family"]]["roc_auc"]
        > report["metrics"]["baseline"]["roc_auc"]
    )


@pytest.mark.slow
def test_training_runs_wrap_the_work_and_carry_data_plots_and_no_unset_params(tmp_path):
    """Read back through MLflow's client: what a person finds in the MLflow UI."""
    result, registry = _toy_run(tmp_path, toy_examples())
    assert result.success
    client = registry.client
    [experiment] = [e for e in client.search_experiments() if e.name == "toy_churn"]
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    window = "2024-03-01..2024-03-20"
    assert set(runs) == {f"toy_churn-lightgbm-{window}", f"toy_churn-torch-{window}"}
    for run in runs.values():
        # The run wraps the training: its duration covers the fit the model reported.
        duration_s = (run.info.end_time - run.info.start_time) / 1000
        assert duration_s >= run.data.metrics["train_seconds"]
        assert run.info.status == "FINISHED"
        assert "None" not in run.data.params.values()
        assert "label_permutation_seed" not in run.data.params  # unset: left out
        assert run.data.tags["dagster.job"] == result.dagster_run.job_name
        contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs if i.tags}
        assert set(contexts) == {"training", "validation"}
        assert contexts["training"].name == "toy/examples:training"
        profile = json.loads(contexts["training"].profile)
        assert profile["num_rows"] == int(run.data.params["split.train.rows"])
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert artifacts >= {
            "plots/learning_curves.png",
            "evaluation/curves.png",
            "evaluation/report.json",
        }


@pytest.mark.slow
def test_gate_refuses_a_first_challenger_that_does_not_beat_the_strongest_baseline(tmp_path):
    """Churn driven by tickets alone: "tickets now" as the score is as good as any model, so the
    challenger beats the rate-by-plan baseline but not the strongest declared one, and the gate
    compares it with that one and refuses."""
    rng = np.random.default_rng(1)
    table = toy_examples(seed=1)
    logit = -4.0 + 1.6 * table["tickets"]
    table["churned"] = (rng.random(len(table)) < 1 / (1 + np.exp(-logit))).astype("int64")
    spec = replace(TOY, baselines=(BaselineSpec("tickets_now", feature="tickets"),))
    result, registry = _toy_run(tmp_path, table, spec=spec)
    report = result.output_for_node("toy__model_evaluation")
    metrics = report["metrics"]
    assert set(report["baselines"]) == {"baseline", "baseline_tickets_now"}
    assert report["reference"] == report["strongest_baseline"] == "baseline_tickets_now"
    best = report["candidate"]["family"]
    assert metrics[best]["roc_auc"] > metrics["baseline"]["roc_auc"] + 0.1  # beats the weak one
    [gate] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert not gate.passed and "reference: the baseline_tickets_now" in gate.description
    assert registry.champion_version("toy_churn") is None


def test_baselines_read_only_features_and_are_one_kind():
    with pytest.raises(ValueError, match="reads non-features"):
        replace(TOY, baselines=(BaselineSpec("later", feature="churned"),))
    with pytest.raises(ValueError, match="exactly one of rate_by or feature"):
        BaselineSpec("both", rate_by=("plan",), feature="tickets")
    with pytest.raises(ValueError, match="names repeat"):
        replace(TOY, baselines=(BaselineSpec("baseline", feature="tickets"),))
    labels = [b.label for b in replace(TOY, baseline_keys=()).declared_baselines()]
    assert labels == ["baseline"]  # the rate by the first categorical feature, as before


def test_unreachable_tracking_store_fails_clearly(tmp_path):
    result, _ = _toy_run(tmp_path, toy_examples(), tracking_uri="http://127.0.0.1:9")
    message = _failure(result)
    assert "MLflow tracking store http://127.0.0.1:9 is unreachable" in message


@pytest.mark.slow
def test_single_class_training_set_fails_clearly_and_keeps_the_champion(tmp_path):
    result, registry = _toy_run(tmp_path, toy_examples())
    champion = registry.champion_version("toy_churn")
    assert champion is not None
    result, registry = _toy_run(tmp_path, toy_examples().assign(churned=0))
    assert "single class (0)" in _failure(result)
    assert registry.champion_version("toy_churn") == champion


@pytest.mark.slow
def test_missing_feature_fails_clearly(tmp_path):
    result, registry = _toy_run(tmp_path, toy_examples().drop(columns=["tickets"]))
    assert "lacks columns ['tickets']" in _failure(result)
    assert registry.champion_version("toy_churn") is None


@pytest.mark.slow
def test_holdout_with_too_few_labels_fails_evaluation_before_any_promotion(tmp_path):
    config = {
        "ops": {
            "toy__torch_model": {"config": {"max_epochs": 3}},
            "toy__model_evaluation": {"config": {"min_holdout_positives": 10_000}},
        }
    }
    result, registry = _toy_run(tmp_path, toy_examples(), run_config=config)
    assert "the holdout has 450 labelled rows" in _failure(result)
    assert registry.champion_version("toy_churn") is None


@pytest.mark.slow
def test_empty_training_set_fails_clearly(tmp_path):
    result, _ = _toy_run(tmp_path, toy_examples().iloc[0:0])
    assert "training table is empty" in _failure(result)


@pytest.mark.slow
def test_registry_refuses_a_promotion_decided_on_a_stale_champion(tmp_path):
    _, registry = _toy_run(tmp_path, toy_examples())
    champion = registry.champion_version("toy_churn")
    # Another run promoted after this evaluation saw "no champion": the promotion must not land.
    with pytest.raises(PromotionRefused, match="gate compared against"):
        registry.promote("toy_churn", champion, expected_champion=None, tags={})
    assert registry.champion_version("toy_churn") == champion
