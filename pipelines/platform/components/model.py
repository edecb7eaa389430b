"""The generic model half of the graph, built from a TaskSpec: one asset per model family,
`model_evaluation` with its blocking gate, and `champion` (promotion in the MLflow registry).

The task component calls `model_defs(spec)` for every task; nothing here knows any task.
"""

import contextlib
import dataclasses
import functools
import json
import typing
from dataclasses import replace
from typing import TYPE_CHECKING

import dagster as dg
import pydantic

from pipelines.platform.executors import training_op_tags
from pipelines.platform.frame_type import DataFrame
from pipelines.platform.lib.evaluation import GateDecision
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.modeling.families import ModelFamily, family
from pipelines.platform.lib.modeling.fit import fit, prepare
from pipelines.platform.lib.plots import evaluation_curves, learning_curves
from pipelines.platform.lib.reproduce import RECORD_ARTIFACT, build_record, record_tags
from pipelines.platform.lib.review import gate_decision, review_challengers
from pipelines.platform.lib.task import GateThresholds, TaskSpec, TimeSplit
from pipelines.platform.lib.tracking import CHAMPION, ModelVersionRef, code_version
from pipelines.platform.metadata import metric_table, picture
from pipelines.platform.resources import MlflowResource, ServiceDeploymentResource

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py). Asset
# signatures name frame_type.DataFrame, the Dagster type of pd.DataFrame without pandas.
if TYPE_CHECKING:
    import pandas as pd


class SplitConfig(dg.Config):
    """Leave empty to use the task's split; models and evaluation must use the same one."""

    validation_days: int | None = None
    holdout_days: int | None = None
    # Last day (YYYY-MM-DD) of data to use; the nightly schedule and the drift sensor set it so
    # that days landing during a retrain cannot shift its split.
    until: str | None = None
    # The instant the retrain is cut at (ISO, UTC if naive): only labels known by then are used
    # (issue 24: a flight landing after the nightly retrain starts is not in its training set).
    cut: str | None = None

    def window(self, table: "pd.DataFrame") -> "pd.DataFrame":
        from pipelines.platform.lib.labels import known_by

        if self.until is not None and PARTITION_COLUMN in table.columns:
            table = table.loc[table[PARTITION_COLUMN].astype(str) <= self.until]
        if self.cut is not None:
            table = table.loc[known_by(table, self.cut)]
        return table.reset_index(drop=True)

    def resolve(self, spec: TaskSpec) -> TimeSplit:
        return TimeSplit(
            validation_days=self.validation_days or spec.split.validation_days,
            holdout_days=self.holdout_days or spec.split.holdout_days,
        )


class ModelConfig(SplitConfig):
    seed: int = 7
    # A null-model control: train on shuffled labels. Such a model must never pass the gate.
    label_permutation_seed: int | None = None


def family_config(
    spec: TaskSpec, fam: ModelFamily, defaults: dict, tuned: bool = False
) -> type[ModelConfig]:
    """The Launchpad config of a family's training step, generated from its hyper-parameter
    dataclass; `defaults` (the task definition's models.params) override the family's own. A
    tuned family also takes `tuning_trials` (the study's size for this run; 0: train once) and
    `tuning_workers` (processes sharing the study on Kubernetes; empty: the definition's)."""
    hints = typing.get_type_hints(fam.params_type())
    fields: dict = (
        {"tuning_trials": (int | None, None), "tuning_workers": (int | None, None)} if tuned else {}
    )
    for f in dataclasses.fields(fam.params_type()):
        if f.name in ModelConfig.model_fields:
            continue
        annotation, default = hints[f.name], defaults.get(f.name, f.default)
        if typing.get_origin(annotation) is tuple:  # Dagster config holds lists, not tuples
            annotation, default = list[typing.get_args(annotation)[0]], list(default)
        fields[f.name] = (annotation, default)
    unknown = set(defaults) - {f.name for f in dataclasses.fields(fam.params_type())}
    if unknown:
        raise ValueError(f"task {spec.name}: models.params.{fam.name}: unknown {sorted(unknown)}")
    name = f"{spec.name}_{fam.asset_name}_config"
    return pydantic.create_model(name, __base__=ModelConfig, **fields)


# Config fields of a tuned family that steer the search, not the model or the study's identity.
TUNING_KNOBS = ("tuning_trials", "tuning_workers")


class EvaluationConfig(SplitConfig):
    bootstrap_samples: int | None = None
    min_holdout_rows: int | None = None
    min_holdout_positives: int | None = None
    seed: int = 0


class GateConfig(dg.Config):
    """Promotion thresholds; empty fields take the task's defaults."""

    min_auc_gain: float | None = None
    max_slice_regression: float | None = None
    min_slice_rows: int | None = None
    max_log_loss_increase: float | None = None
    max_ece_increase: float | None = None


def _thresholds(spec: TaskSpec, *configs: dg.Config) -> GateThresholds:
    overrides = {}
    for config in configs:
        overrides.update(
            {
                k: v
                for k, v in config.model_dump().items()
                if v is not None and hasattr(spec.gate, k)
            }
        )
    return replace(spec.gate, **overrides)


def _lineage_tags(context: dg.AssetExecutionContext, spec: TaskSpec, table: "pd.DataFrame") -> dict:
    """What every model version records: the Dagster run and asset, the data, the code."""
    tags = {
        "dagster.run_id": context.run.run_id,
        "dagster.job": context.run.job_name,
        "dagster.asset": context.asset_key.to_user_string(),
        "dagster.asset_code_version": context.assets_def.code_versions_by_key.get(context.asset_key)
        or "",
        "code_version": code_version(),
        "feature_service": spec.feature_service or "",
        "training_asset": "/".join(spec.training_asset),
        "data.rows": str(len(table)),
    }
    if PARTITION_COLUMN in table.columns and len(table):
        days = sorted(table[PARTITION_COLUMN].unique())
        tags["data.partitions"] = f"{days[0]}..{days[-1]} ({len(days)} days)"
    return tags


def tuning_storage(instance: dg.DagsterInstance) -> str:
    """Where studies live: the instance's database (a schema of the production profile's
    PostgreSQL; embedded, a SQLite file beside the instance's storage), unless
    FLIGHTLINE_TUNING_STORAGE names another."""
    import os
    from pathlib import Path

    from pipelines.platform.lib.services import ProductionServices
    from pipelines.platform.lib.settings import DataPaths

    if os.environ.get("FLIGHTLINE_TUNING_STORAGE"):
        return os.environ["FLIGHTLINE_TUNING_STORAGE"]
    postgres = ProductionServices.from_env().postgres_url
    if postgres:
        return postgres
    root = Path(instance.root_directory) if instance.root_directory else DataPaths.from_env().root
    (root / "storage").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'storage' / 'optuna.db'}"


def _tune(context, spec, fam, search, config, prepared, window, registry, run_id, tags):
    """Run or resume the family's study (in several pods when asked for and on Kubernetes);
    the best trial's hyper-parameters and the summary."""
    from pipelines.platform.lib.tuning import (
        TrialRuns,
        open_storage,
        study_name,
        tune,
        worker_name,
    )

    params = config.model_dump()
    fixed = {k: v for k, v in params.items() if k not in {p.name for p in search.space}}
    for knob in TUNING_KNOBS:  # how the search runs, not what it searches
        fixed.pop(knob, None)
    fixed["split"] = str(config.resolve(spec))
    name = study_name(spec.name, fam.name, _window_name(window, spec), search, fixed)
    context.log.info(f"tuning {fam.name}: study {name}")
    storage = open_storage(tuning_storage(context.instance))
    trials = functools.partial(
        tune,
        fam,
        search,
        prepared.args,
        params,
        storage=storage,
        study_name=name,
        seed=config.seed,
        trial_log=TrialRuns(registry, run_id, name, tags | {"optuna.worker": worker_name()}),
        log=context.log.info,
        n_trials=config.tuning_trials,
    )
    pods = _worker_pods(context, fam, config.tuning_workers or search.workers)
    result = (
        trials()
        if pods is None
        else _tune_in_pods(context, pods, trials, search, config, prepared, registry, run_id, tags)
    )
    best = {k: list(v) if isinstance(v, tuple) else v for k, v in result.best_params.items()}
    summary = result.summary() | {
        "trial_workers": len({h["worker"] for h in result.history} - {None})
    }
    return best, summary


def _worker_pods(context, fam: ModelFamily, workers: int):
    """This step's pod, to clone worker pods from; None when one worker is asked for, or when
    the step does not run in a pod (embedded profile, in-process executor): then the trials run
    here alone, and the log says so."""
    if workers <= 1:
        return None
    from pipelines.platform.lib.tuning_pods import TuningPods

    pods = TuningPods.here()
    if pods is None:
        context.log.info(
            f"tuning {fam.name}: {workers} workers asked for, but this step runs in no "
            "Kubernetes pod: its trials run in this process alone"
        )
    return pods


def _tune_in_pods(context, pods, trials, search, config, prepared, registry, run_id, tags):
    """Worker pods and this step share the study; the step starts its own trials once every
    worker has begun one, then waits for them and reads the study's best trial."""
    import time

    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.settings import DataPaths
    from pipelines.platform.lib.tuning import (
        NoTrialCompleted,
        ensure_study,
        spec_to_json,
        study_result,
        workers_seen,
    )
    from pipelines.platform.lib.tuning_pods import Handoff, write_handoff

    started = time.perf_counter()
    # `trials` (a partial of tune) holds the family, its base parameters and the study: the
    # workers get the same.
    fam, params = trials.args[0], trials.args[3]
    storage, name = trials.keywords["storage"], trials.keywords["study_name"]
    study = ensure_study(storage, name, search)
    workers = (config.tuning_workers or search.workers) - 1
    handoff = Handoff(
        family=fam.name,
        spec=spec_to_json(search),
        base_params=params,
        study_name=name,
        seed=config.seed,
        n_trials=config.tuning_trials,
        mlflow={
            "tracking_uri": registry.tracking_uri,
            "artifact_root": registry.artifact_root,
            "registry_uri": registry.registry_uri,
        },
        parent_run_id=run_id,
        tags=tags,
    )
    where = write_handoff(Lake(DataPaths.from_env().lake), handoff, prepared.args)
    jobs = pods.launch(workers, where)
    context.log.info(f"tuning {fam.name}: {workers} worker pods ({', '.join(jobs)}) share {name}")
    ran = 0
    try:
        pods.wait_started(lambda: workers_seen(study), search.worker_start_s)
        # The workers' trials in flight may still complete: the study is judged after they end.
        with contextlib.suppress(NoTrialCompleted):
            ran = trials().ran_here
        pods.wait_finished(search.worker_grace_s)
    except BaseException:
        pods.delete()
        raise
    result = study_result(study, search.metric, ran, time.perf_counter() - started)
    by_worker: dict[str, int] = {}
    for h in result.history:
        if h["state"] == "COMPLETE":
            by_worker[h["worker"]] = by_worker.get(h["worker"], 0) + 1
    context.log.info(f"tuning {fam.name}: complete trials by pod {by_worker}")
    return result


def _model_asset(
    spec: TaskSpec, family_name: str, defaults: dict, search=None
) -> dg.AssetsDefinition:
    fam = family(family_name)
    config_type = family_config(spec, fam, defaults, tuned=search is not None)
    step_name = fam.step_unit

    @dg.asset(
        name=fam.asset_name,
        key_prefix=list(spec.asset_prefix),
        ins={
            "table": dg.AssetIn(
                key=dg.AssetKey(list(spec.training_asset)),
                metadata={"allow_missing_partitions": True},
            )
        },
        group_name=f"{spec.name}_training",
        kinds={family_name, "mlflow"},
        code_version="1",
        tags={"flightline/task": spec.name},
        op_tags=training_op_tags(family_name),
        description=f"{family_name} model of task {spec.name}, logged and registered in MLflow",
    )
    def model(
        context: dg.AssetExecutionContext,
        config: config_type,
        table: DataFrame,
        mlflow: MlflowResource,
    ) -> dict:  # type: ignore[valid-type]
        import pandas as pd

        registry = mlflow.registry()
        registry.check_reachable()
        window = config.window(table)
        tags = _lineage_tags(context, spec, window)
        run_name = f"{spec.name}-{family_name}-{_window_name(window, spec)}"
        with registry.training_run(spec, family_name, run_name, tags) as run_id:
            split = config.resolve(spec)
            prepared = prepare(spec, window, split, config.label_permutation_seed)
            frames, params, tuning = prepared.frames, config.model_dump(), None
            for knob in TUNING_KNOBS:
                params.pop(knob, None)
            if search is not None and config.tuning_trials != 0:
                best, tuning = _tune(
                    context, spec, fam, search, config, prepared, window, registry, run_id, tags
                )
                params.update(best)  # the best trial, refitted below as the version to review
            result, valid_metrics = fit(family_name, prepared, params, _progress(fam, context.log))
            record = build_record(
                spec,
                family_name,
                window,
                until=config.until,
                split=split,
                params=params,
                code_version=tags["code_version"],
                tuning=tuning,
            )
            registry.log_files(run_id, {RECORD_ARTIFACT: json.dumps(record, indent=1)})
            registry.log_training_data(
                spec,
                {"training": frames.train, "validation": frames.valid},
                "/".join(spec.training_asset),
            )
            curves = learning_curves(result.history, step_name)
            ref = registry.log_model_version(
                spec,
                result.model,
                params={**params, "split": frames.describe(spec)},
                history=result.history,
                metrics={f"valid_{k}": v for k, v in valid_metrics.items()}
                | _numbers(result.summary)
                | _numbers(tuning or {}),
                tags=tags | record_tags(record) | _tuning_tags(tuning),
                example=frames.holdout.head(5) if len(frames.holdout) else frames.valid.head(5),
                train_end=prepared.train_end,
                summary=result.summary,
                figures={"learning_curves.png": curves},
            )
        context.add_output_metadata(
            {
                "model_version": f"{ref.name} v{ref.version}",
                "mlflow_run": dg.MetadataValue.url(mlflow.run_url(ref.experiment_id, run_id)),
                "mlflow_model": dg.MetadataValue.url(
                    mlflow.model_version_url(ref.name, ref.version)
                ),
                "train_rows": len(frames.train),
                "valid_roc_auc": valid_metrics["roc_auc"],
                "valid_log_loss": valid_metrics["log_loss"],
                "training": metric_table(
                    pd.DataFrame(
                        [{"summary": k, "value": v} for k, v in _numbers(result.summary).items()]
                        + [{"summary": "device", "value": result.summary.get("device", "cpu")}]
                    ).astype({"value": str})
                ),
                "learning_curves": picture(
                    curves,
                    "learning curves",
                    mlflow.artifact_url(run_id, "plots/learning_curves.png"),
                ),
                "reproduce": dg.MetadataValue.md(
                    f"`flightline reproduce --task {spec.name} --version {ref.version}` "
                    f"(data version {record_tags(record)['data.version']}, "
                    f"code {record['code']['version']})"
                ),
            }
            | (
                {
                    "tuning": dg.MetadataValue.json(tuning),
                    "best_params": dg.MetadataValue.json(params),
                }
                if tuning
                else {}
            )
        )
        return ref.as_dict()

    return model


def _progress(fam: ModelFamily, log):
    """A callback logging each step of a family whose steps are long (epochs), or None."""
    if not fam.progress:
        return None

    def on_epoch(epoch: int, h: dict) -> None:
        log.info(
            f"{fam.step_unit} {epoch + 1}: train loss {h['train_loss'][-1]:.4f}, "
            f"valid loss {h['valid_loss'][-1]:.4f} ({h['epoch_seconds'][-1]:.1f}s)"
        )

    return on_epoch


def _tuning_tags(tuning: dict | None) -> dict:
    if not tuning:
        return {}
    return {"tuning.study": tuning["study"], "tuning.best_trial": str(tuning["best_trial"])}


def _window_name(table: "pd.DataFrame", spec: TaskSpec) -> str:
    """The days a model learned from, for its run name (first..last partition or day)."""
    import pandas as pd

    if table.empty:
        return "empty"
    if PARTITION_COLUMN in table.columns:
        days = table[PARTITION_COLUMN].astype(str)
    else:
        days = pd.to_datetime(table[spec.timestamp_column], utc=True).dt.strftime("%Y-%m-%d")
    return f"{days.min()}..{days.max()}"


def _numbers(summary: dict) -> dict:
    return {
        k: float(v)
        for k, v in summary.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def model_defs(
    spec: TaskSpec,
    family_params: dict[str, dict] | None = None,
    tuning: dict | None = None,
    canary_share: float | None = None,
) -> dg.Definitions:
    """`tuning`: family -> lib.tuning.SearchSpec, for the families to tune before training.
    `canary_share`: the task rolls out in stages (its `rollout` block): a challenger that
    passes the gate enters shadow beside the champion instead of replacing it."""
    prefix = list(spec.asset_prefix)
    params = family_params or {}
    tuning = tuning or {}
    models = [_model_asset(spec, f, params.get(f, {}), tuning.get(f)) for f in spec.families]
    evaluation_key = dg.AssetKey([*prefix, "model_evaluation"])

    @dg.asset(
        key=evaluation_key,
        ins={
            "table": dg.AssetIn(
                key=dg.AssetKey(list(spec.training_asset)),
                metadata={"allow_missing_partitions": True},
            ),
            **{m.key.path[-1]: dg.AssetIn(key=m.key) for m in models},
        },
        group_name=f"{spec.name}_evaluation",
        kinds={"mlflow"},
        code_version="1",
        tags={"flightline/task": spec.name},
        description=f"Challengers of task {spec.name}, the champion and the naive baselines on the same holdout",
    )
    def model_evaluation(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        table: DataFrame,
        mlflow: MlflowResource,
        **challengers: dict,
    ) -> dict:
        registry = mlflow.registry()
        registry.check_reachable()
        refs = [ModelVersionRef.from_dict(c) for c in challengers.values()]
        review = review_challengers(
            spec,
            config.window(table),
            config.resolve(spec),
            refs,
            registry,
            _thresholds(spec, config),
            seed=config.seed,
        )
        report = review.report
        candidate = report["candidate"]
        registry.mark_challenger(spec.registered_model, candidate["version"])
        for ref in refs:
            registry.record_evaluation(
                spec.registered_model,
                ref.version,
                ref.run_id,
                report["metrics"][ref.family],
                {
                    "evaluated_by_run": context.run.run_id,
                    "holdout_start": report["holdout"]["start"],
                },
            )
        curves = evaluation_curves(review.y, review.predictions)
        for ref in refs:  # each challenger's run holds the review it was part of
            registry.log_files(
                ref.run_id,
                {
                    "evaluation/curves.png": curves,
                    "evaluation/report.json": json.dumps(report, indent=1, default=str),
                },
            )
        _model_cards(spec, refs, review, registry, _thresholds(spec, config), config.seed)
        context.add_output_metadata(
            _evaluation_metadata(report, curves, mlflow)
            | _card_link(mlflow, candidate)
            | {
                "gate_criteria": criteria_table(gate_decision(report, _thresholds(spec, config))),
                # What "days neither model trained on" rests on, for whoever audits it.
                "fairness": dg.MetadataValue.json(
                    {
                        "holdout_start": report["holdout"]["start"],
                        "train_ends": [ref.train_end for ref in refs]
                        + ([report["champion"]["train_end"]] if report["champion"] else []),
                        "unfair": report.get("unfair"),
                    }
                ),
            }
        )
        return report

    # Blocking, so that `champion` runs after the verdict is recorded; a refusal is a warning,
    # not an error: it is an outcome (the champion stays), the run succeeds and `champion` yields
    # nothing, so the Bento, the deployment and the drift reference are not rebuilt.
    @dg.asset_check(
        asset=evaluation_key,
        name="model_evaluation_gate",
        blocking=True,
        description="The challenger beats the champion (or the strongest baseline) by the margin, with the "
        "bootstrap interval above zero, and no large slice regresses",
    )
    def gate(
        config: GateConfig, model_evaluation: dict, mlflow: MlflowResource
    ) -> dg.AssetCheckResult:
        decision = gate_decision(model_evaluation, _thresholds(spec, config))
        candidate = model_evaluation["candidate"]
        verdict = "promote" if decision.passed else "refuse"
        mlflow.registry().record_gate_verdict(
            spec.registered_model, candidate["version"], decision.passed, decision.reasons
        )
        return dg.AssetCheckResult(
            passed=decision.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{verdict} {candidate['family']} v{candidate['version']} "
            f"(reference: the {decision.reference}): "
            + (
                "; ".join(decision.reasons)
                or f"AUC {decision.auc_gain:+.4f} over the {decision.reference}"
            ),
            metadata={
                "candidate": f"{candidate['family']} v{candidate['version']}",
                "reference": decision.reference,
                "auc_gain": decision.auc_gain,
                "auc_gain_low": decision.interval.low,
                "auc_gain_high": decision.interval.high,
                "regressed_slices": dg.MetadataValue.json(decision.regressed_slices),
                "criteria": criteria_table(decision),
                **{
                    f"{c.name}_increase_high": c.high
                    for c in decision.criteria
                    if c.name in ("log_loss", "ece") and c.high == c.high  # NaN: not measured
                },
                "log_loss_tolerance": _thresholds(spec, config).max_log_loss_increase,
                "ece_tolerance": _thresholds(spec, config).max_ece_increase,
                "thresholds": dg.MetadataValue.json(_thresholds(spec, config).__dict__),
            },
        )

    @dg.asset(
        key=dg.AssetKey([*prefix, CHAMPION]),
        ins={"model_evaluation": dg.AssetIn(key=evaluation_key)},
        group_name=f"{spec.name}_evaluation",
        kinds={"mlflow"},
        code_version="1",
        tags={"flightline/task": spec.name},
        description=f"The promoted model of task {spec.name}: the MLflow alias @{CHAMPION}",
        output_required=False,  # a refused challenger: nothing promoted, nothing downstream
    )
    def champion(context: dg.AssetExecutionContext, model_evaluation: dict, mlflow: MlflowResource):
        import pandas as pd

        registry = mlflow.registry()
        registry.check_reachable()
        candidate = model_evaluation["candidate"]
        previous_info = model_evaluation["champion"]
        verdict, reasons = registry.gate_verdict(spec.registered_model, candidate["version"])
        if verdict is None:
            raise dg.Failure(
                f"{spec.registered_model} v{candidate['version']} has no gate verdict: "
                "materialize model_evaluation with its check model_evaluation_gate first"
            )
        if verdict != "passed":
            kept = f"v{previous_info['version']}" if previous_info else "none"
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key,
                    metadata={
                        "decision": f"refused {candidate['family']} v{candidate['version']}; "
                        f"champion stays {kept}",
                        "reasons": reasons,
                    },
                )
            )
            context.log.info(
                f"gate refused v{candidate['version']} ({reasons}); champion stays {kept}"
            )
            return
        metrics = model_evaluation["metrics"][candidate["family"]]
        if canary_share is not None and previous_info:
            # A staged rollout: the live gate (the `rollout` asset) moves @champion, later.
            yield from _enter_shadow(context, registry, candidate, previous_info, canary_share)
            return
        replaced = registry.promote(
            spec.registered_model,
            candidate["version"],
            expected_champion=previous_info["version"] if previous_info else None,
            tags={"promoted_by_run": context.run.run_id},
        )
        context.add_output_metadata(
            {
                "champion": f"{spec.registered_model} v{candidate['version']} ({candidate['family']})",
                "model_uri": f"models:/{spec.registered_model}@{CHAMPION}",
                "model_version": dg.MetadataValue.int(int(candidate["version"])),
                "family": candidate["family"],
                "replaced": f"v{replaced}" if replaced else "none (first champion)",
                "holdout_roc_auc": metrics["roc_auc"],
                "holdout_pr_auc": metrics["pr_auc"],
                "holdout_metrics": metric_table(
                    pd.DataFrame([metrics]).T.rename(columns={0: "value"}), index="metric"
                ),
                "holdout": dg.MetadataValue.json(model_evaluation["holdout"]),
                "curves": picture(
                    None,
                    "ROC, PR and calibration on the holdout",
                    mlflow.artifact_url(candidate["run_id"], "evaluation/curves.png"),
                ),
                "mlflow_model": dg.MetadataValue.url(
                    mlflow.model_version_url(spec.registered_model, candidate["version"])
                ),
                "mlflow_run": dg.MetadataValue.url(
                    mlflow.run_url(candidate["experiment_id"], candidate["run_id"])
                ),
            }
            | _card_link(mlflow, candidate)
        )
        yield dg.Output(
            {
                "name": spec.registered_model,
                "version": candidate["version"],
                "family": candidate["family"],
                "replaced": replaced,
                "holdout_metrics": metrics,
                "dagster_run_id": context.run.run_id,
            }
        )

    def _enter_shadow(context, registry, candidate, previous_info, share: float):
        from pipelines.platform.lib.rollout import RolloutState

        champion_version = str(previous_info["version"])
        state = RolloutState(
            "shadow",
            str(candidate["version"]),
            champion_version,
            share,
            f"passed the offline gate; scored in shadow beside champion v{champion_version}",
        )
        superseded = registry.start_rollout(spec.registered_model, state, context.run.run_id)
        context.add_output_metadata(
            {
                "champion": f"{spec.registered_model} v{champion_version} (unchanged)",
                "rollout": f"v{candidate['version']} ({candidate['family']}) enters shadow",
                "superseded_rollout": (
                    f"v{superseded.challenger_version} ({superseded.stage})"
                    if superseded
                    else "none"
                ),
                "model_uri": f"models:/{spec.registered_model}@{CHAMPION}",
                "model_version": dg.MetadataValue.int(int(champion_version)),
            }
        )
        yield dg.Output(
            {
                "name": spec.registered_model,
                "version": champion_version,
                "rollout": state.as_dict(),
                "dagster_run_id": context.run.run_id,
            }
        )

    @dg.op(
        name=f"{spec.name}_rollback_op",
        description="Point @champion back at the version it replaced",
    )
    def rollback_op(
        context: dg.OpExecutionContext,
        mlflow: MlflowResource,
        deployment: ServiceDeploymentResource,
    ) -> None:
        registry = mlflow.registry()
        registry.check_reachable()
        left, back_to = registry.rollback(spec.registered_model)
        context.log.info(f"{spec.registered_model}: champion v{left} -> v{back_to}")
        if deployment.namespace:  # on a cluster the service follows the champion back
            rollout = deployment.target(spec.name).roll_back_to_model(
                back_to, deployment.rollout_timeout_s
            )
            context.log.info(f"service serves {rollout.bento} again (revision {rollout.revision})")

    @dg.job(
        name=f"{spec.name}_rollback",
        description=f"Roll the {spec.name} champion back one promotion",
    )
    def rollback_job():
        rollback_op()

    return dg.Definitions(
        assets=[*models, model_evaluation, champion], asset_checks=[gate], jobs=[rollback_job]
    )


def _model_cards(spec, refs, review, registry, thresholds, seed: int) -> None:
    """A card per challenger (every registered version is evaluated once), in its run."""
    from mlflow.exceptions import MlflowException

    from pipelines.platform.lib.model_card import (
        CARD_HTML,
        CARD_MD,
        build_card,
        comparisons,
        render_html,
    )

    report = review.report
    references = [*report["baselines"], *([CHAMPION] if report["champion"] else [])]
    for ref in refs:
        try:
            record = json.loads(registry.read_artifact(ref.run_id, RECORD_ARTIFACT))
        except (OSError, MlflowException):
            record = None  # trained before reproduction records: the card says so
        p = review.predictions[ref.family]
        card = build_card(
            spec,
            ref.as_dict(),
            report,
            comparisons(
                review.y,
                review.predictions,
                ref.family,
                references,
                thresholds.bootstrap_samples,
                seed,
            ),
            {"mean_predicted": float(p.mean()), "observed_rate": float(review.y.mean())},
            record,
        )
        title = f"{spec.name} v{ref.version} model card"
        registry.log_files(ref.run_id, {CARD_MD: card, CARD_HTML: render_html(card, title)})


def _card_link(mlflow: MlflowResource, version: dict) -> dict:
    from pipelines.platform.lib.model_card import CARD_HTML

    return {
        "model_card": dg.MetadataValue.url(
            mlflow.artifact_page_url(version["experiment_id"], version["run_id"], CARD_HTML)
        )
    }


def criteria_table(decision: GateDecision) -> dg.MetadataValue:
    """Each criterion of the gate, passed or failed, with its numbers."""
    rows = [
        "| criterion | verdict | candidate - reference | interval | rule |",
        "|---|---|---|---|---|",
    ]
    for c in decision.criteria:
        interval = "" if c.low != c.low else f"[{c.low:+.4f}, {c.high:+.4f}]"  # NaN: none
        observed = "" if c.observed != c.observed else f"{c.observed:+.4f}"
        verdict = "passed" if c.passed else "**failed**"
        rows.append(f"| {c.name} | {verdict} | {observed} | {interval} | {c.limit} |")
    return dg.MetadataValue.md("\n".join(rows))


def _evaluation_metadata(report: dict, curves: bytes, mlflow: MlflowResource) -> dict:
    import pandas as pd

    metrics = pd.DataFrame(report["metrics"]).T[
        ["roc_auc", "pr_auc", "log_loss", "brier", "ece", "rows"]
    ]
    candidate = report["candidate"]
    reference = report["reference"]
    diff = report["auc_difference"]
    comparison = (
        f"**candidate** {candidate['family']} v{candidate['version']} vs **{reference}**"
        + (
            f" v{report['champion']['version']} ({report['champion']['family']})"
            if report["champion"]
            else ""
        )
        + f": AUC {metrics.loc[candidate['family'], 'roc_auc']:.4f} vs {metrics.loc[reference, 'roc_auc']:.4f}, "
        f"difference {diff['mean']:+.4f} ({diff['confidence']:.0%} paired bootstrap interval "
        f"[{diff['low']:+.4f}, {diff['high']:+.4f}], {diff['samples']} resamples)"
    )
    if report.get("unfair"):
        comparison += f"\n\n**Not a fair comparison**: {report['unfair']}; the gate refuses it."
    slices = pd.DataFrame(report["slices"])
    if len(slices):
        slices = slices.assign(delta=slices[candidate["family"]] - slices[reference]).sort_values(
            "delta"
        )
    return {
        "holdout": dg.MetadataValue.json(report["holdout"]),
        "data_sufficiency": dg.MetadataValue.json(report["sufficiency"]),
        "metrics": metric_table(metrics, index="model"),
        "comparison": dg.MetadataValue.md(comparison),
        "candidate_roc_auc": float(metrics.loc[candidate["family"], "roc_auc"]),
        "reference_roc_auc": float(metrics.loc[reference, "roc_auc"]),
        "slices": metric_table(slices) if len(slices) else "no slices",
        "curves": picture(
            curves,
            "ROC, PR and calibration",
            mlflow.artifact_url(candidate["run_id"], "evaluation/curves.png"),
        ),
        "mlflow_run": dg.MetadataValue.url(
            mlflow.run_url(candidate["experiment_id"], candidate["run_id"])
        ),
    }
