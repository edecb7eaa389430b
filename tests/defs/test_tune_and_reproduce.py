"""Through Dagster on the toy task: a tuned family (trials as MLflow child runs, the best refitted
and reviewed as today, the study resumed by the next run), the reproduction record and
`reproduce` of the champion, and the model cards linked from the evaluation and the champion."""

import json
from dataclasses import replace

import dagster as dg
import pandas as pd
import pytest

from pipelines.platform.components.model import model_defs
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.model_card import CARD_HTML, CARD_MD
from pipelines.platform.lib.modeling.families import family
from pipelines.platform.lib.reproduce import (
    RECORD_ARTIFACT,
    ReproductionRefused,
    partition_hashes,
    recorded_data,
    reproduce,
)
from pipelines.platform.lib.tracking import CHAMPION
from pipelines.platform.lib.tuning import parse_search
from pipelines.platform.resources import LakeIOManager, MlflowResource
from tests.defs.test_model_factory import TOY, toy_examples

# Trains, tunes or starts a storage server: `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

SEARCH = {
    "lightgbm": parse_search(
        family("lightgbm"),
        {
            "space": {
                "num_leaves": {"low": 3, "high": 15},
                "learning_rate": {"low": 0.03, "high": 0.3, "log": True},
            },
            "n_trials": 4,
            "startup_trials": 2,
        },
        "models.tuning.lightgbm",
    )
}
LIMITS = ("Churn of customers on a plan launched after training is a guess.",)
SPEC = replace(TOY, known_limits=LIMITS, description="Toy churn.")


def _materialize(tmp_path, instance, run_config=None):
    table = toy_examples()

    @dg.asset(key=["toy", "examples"])
    def examples() -> pd.DataFrame:
        return table

    defs = model_defs(SPEC, {"lightgbm": {"num_threads": 1}}, SEARCH)
    mlflow = MlflowResource(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow/mlflow.db",
        artifact_root=str(tmp_path / "mlflow" / "artifacts"),
    )
    result = dg.materialize(
        [examples, *defs.assets, *defs.asset_checks],
        resources={
            "io_manager": LakeIOManager(lake_root=str(tmp_path / "lake")),
            "mlflow": mlflow,
        },
        run_config=run_config
        or {
            "ops": {
                "toy__torch_model": {"config": {"max_epochs": 2, "hidden": [16]}},
                # This file is about tuning and reproduction, not the gate's calibration rules.
                "toy__model_evaluation_model_evaluation_gate": {
                    "config": {"max_ece_increase": 1.0, "max_log_loss_increase": 1.0}
                },
            }
        },
        instance=instance,
        raise_on_error=False,  # the second run's gate refuses a challenger equal to the champion
    )
    return result, mlflow.registry()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tuned")
    with dg.instance_for_test() as instance:
        first, registry = _materialize(tmp_path, instance)
        assert first.success
        second, _ = _materialize(tmp_path, instance)
        yield tmp_path, first, second, registry


def _runs(registry, **tags):
    [experiment] = [e for e in registry.client.search_experiments() if e.name == "toy_churn"]
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return registry.client.search_runs([experiment.experiment_id], filter_string=query)


def test_trials_are_child_runs_and_the_best_is_refitted(tuned):
    _, first, _, registry = tuned
    ref = first.output_for_node("toy__lgbm_model")
    version = registry.client.get_model_version("toy_churn", ref["version"])
    parent = registry.client.get_run(version.run_id)
    trials = _runs(registry, **{"mlflow.parentRunId": parent.info.run_id})
    assert len(trials) == 4
    assert {t.data.tags["optuna.state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    complete = [t for t in trials if t.data.tags["optuna.state"] == "COMPLETE"]
    assert all("valid_roc_auc" in t.data.metrics for t in complete)
    best = max(complete, key=lambda t: t.data.metrics["valid_roc_auc"])
    # The registered version is the best trial refitted: its parameters and validation AUC.
    assert version.tags["tuning.best_trial"] == best.data.tags["optuna.trial"]
    for name in ("num_leaves", "learning_rate"):
        assert float(parent.data.params[name]) == pytest.approx(float(best.data.params[name]))
    assert parent.data.metrics["valid_roc_auc"] == pytest.approx(best.data.metrics["valid_roc_auc"])
    # The torch family has no search space: trained once, as before.
    torch_ref = first.output_for_node("toy__torch_model")
    torch_run = registry.client.get_model_version("toy_churn", torch_ref["version"]).run_id
    assert not _runs(registry, **{"mlflow.parentRunId": torch_run})


def test_the_next_run_resumes_the_study_and_repeats_no_trial(tuned):
    _, first, second, registry = tuned
    study = registry.client.get_model_version(
        "toy_churn", first.output_for_node("toy__lgbm_model")["version"]
    ).tags["tuning.study"]
    again = registry.client.get_model_version(
        "toy_churn", second.output_for_node("toy__lgbm_model")["version"]
    )
    assert again.tags["tuning.study"] == study  # same window and space: the same study
    assert len(_runs(registry, **{"optuna.study": study})) == 4  # the budget was already spent
    metadata = second.asset_materializations_for_node("toy__lgbm_model")[0].metadata
    assert metadata["tuning"].value["trials_run_now"] == 0


def test_every_version_records_what_rebuilds_it(tuned):
    _, first, _, registry = tuned
    ref = first.output_for_node("toy__lgbm_model")
    version = registry.client.get_model_version("toy_churn", ref["version"])
    record = json.loads(registry.read_artifact(version.run_id, RECORD_ARTIFACT))
    assert set(record["data"]["partitions"]) == {"*"}  # an unpartitioned table: one hash
    assert record["params"]["seed"] == 7 and record["seeds"]["seed"] == 7
    assert len(record["lockfile_sha256"]) == 64 and record["code"]["commit"]
    assert version.tags["data.version"] and version.tags["code.commit"] == record["code"]["commit"]
    assert record["tuning"]["best_trial"] == int(version.tags["tuning.best_trial"])


def test_reproduce_rebuilds_the_champion_and_refuses_when_its_data_is_gone(tuned):
    tmp_path, first, _, registry = tuned
    lake = Lake(str(tmp_path / "lake"))
    champion = registry.alias("toy_churn", CHAMPION)
    assert champion is not None
    outcome = reproduce(SPEC, registry, lake, str(champion.version))
    assert outcome.identical, outcome.lines()
    assert outcome.baselines and all(
        b["recorded"] == b["rebuilt"] for b in outcome.baselines.values()
    )
    torch_version = first.output_for_node("toy__torch_model")["version"]
    mlp = reproduce(SPEC, registry, lake, torch_version)
    assert mlp.identical and mlp.tolerance > 0, mlp.lines()
    # One changed value: refused, naming the input.
    table = lake.read("toy/examples")
    table.loc[0, "tickets"] += 1
    lake.write("toy/examples", table)
    with pytest.raises(ReproductionRefused, match=r"toy/examples.*changed"):
        reproduce(SPEC, registry, lake, str(champion.version))
    (tmp_path / "lake" / "toy" / "examples" / "data.parquet").unlink()
    with pytest.raises(ReproductionRefused, match="toy/examples is gone"):
        reproduce(SPEC, registry, lake, str(champion.version))
    with pytest.raises(ReproductionRefused, match="not a registered version"):
        reproduce(SPEC, registry, lake, "999")


def test_a_missing_partition_is_named(tmp_path):
    lake = Lake(str(tmp_path))
    frame = toy_examples(days=3, per_day=10)
    frame[PARTITION_COLUMN] = frame["seen_at"].dt.strftime("%Y-%m-%d")
    days = sorted(frame[PARTITION_COLUMN].unique())
    lake.write_partitions("t/training_set", frame, days)
    record = {
        "data": {
            "table": "t/training_set",
            "until": None,
            "partitions": partition_hashes(lake.read_partitions("t/training_set", days)),
        }
    }
    assert len(recorded_data(record, lake)) == 30
    (tmp_path / "t" / "training_set" / f"{days[1]}.parquet").unlink()
    with pytest.raises(ReproductionRefused, match=f"gone from the lake: {days[1]}"):
        recorded_data(record, lake)


def test_model_cards_are_logged_and_linked(tuned):
    _, first, _, registry = tuned
    report = first.output_for_node("toy__model_evaluation")
    candidate = report["candidate"]
    card = registry.read_artifact(candidate["run_id"], CARD_MD)
    assert f"# Model card: toy_churn v{candidate['version']}" in card
    assert "Toy churn." in card and LIMITS[0] in card
    assert "vs baseline:" in card and "[" in card  # an interval against the baseline
    assert f"flightline reproduce --task toy_churn --version {candidate['version']}" in card
    assert "expected calibration error" in card and "## Slices" in card
    assert "<table>" in registry.read_artifact(candidate["run_id"], CARD_HTML)
    for node in ("toy__model_evaluation", "toy__champion"):
        metadata = first.asset_materializations_for_node(node)[0].metadata
        assert CARD_HTML in metadata["model_card"].value
        assert candidate["run_id"] in metadata["model_card"].value


def test_the_command_refuses_a_version_that_does_not_exist(tmp_path, monkeypatch, capsys):
    from pipelines.platform.cli import main

    monkeypatch.setenv("FLIGHTLINE_DATA_ROOT", str(tmp_path))
    assert main(["reproduce", "--task", "flight_delay", "--version", "3"]) == 2
    assert (
        "reproduce refused: flight_delay v3 is not a registered version" in capsys.readouterr().err
    )
