"""Staged rollout of a task's challenger on live evidence (docs/rollout-and-alerts.md), when its
`defs.yaml` turns `rollout.enabled` on: the `rollout` asset between `champion` and `bento`
(each materialization one decision: its stage, the evidence, why), the job that re-decides it
(the sensor's, or a human's promote/abort with typed config) and the sensor that runs it when
new labels land. The decisions themselves are plain Python in lib/rollout.py and
lib/evaluation.py (live_gate)."""

from typing import Literal

import dagster as dg

from pipelines.platform.components.definition import Task
from pipelines.platform.frame_type import DataFrame
from pipelines.platform.metadata import metric_table, picture
from pipelines.platform.resources import LakeResource, MlflowResource

ACTIVE = ("shadow", "canary")


class RolloutDecisionConfig(dg.Config):
    """`auto`: the live gate decides on the evidence logged so far. `promote` (one stage
    forward) or `abort` (roll back): a human's decision, recorded with who and why."""

    action: Literal["auto", "promote", "abort"] = "auto"
    who: str = ""
    why: str = ""


def rollout_job_name(task: Task) -> str:
    return f"{task.name}_rollout_decision"


def rollout_sensor_name(task: Task) -> str:
    return f"{task.name}_rollout_sensor"


def rollout_keys(task: Task) -> list[dg.AssetKey]:
    """The rollout's assets when the task rolls out in stages (the analysis the live gate
    reads, and the decision), else none."""
    enabled = task.definition.rollout.enabled
    return [task.key("live_ab_analysis"), task.key("rollout")] if enabled else []


def rollout_decision_keys(task: Task) -> list[dg.AssetKey]:
    """The rollout's decision (what `bento` packages after), when the task rolls out in stages."""
    return rollout_keys(task)[1:]


def empty_evidence():
    import pandas as pd

    from pipelines.platform.lib.rollout import EVIDENCE_COLUMNS

    return pd.DataFrame({c: pd.Series(dtype="float64") for c in EVIDENCE_COLUMNS})


def _evidence(task: Task, lake, state):
    """The labelled live rows of the rollout's current stage, and the instant labels are known
    by (the end of the newest examples partition in the lake: the replayed clock)."""
    import pandas as pd

    from pipelines.platform.components.serving import prediction_log_root
    from pipelines.platform.lib.prediction_log import logged_days, read_day
    from pipelines.platform.lib.rollout import labelled_live_rows

    settings = task.definition.rollout
    root = prediction_log_root(task)
    days = logged_days(root)[-settings.evidence_days :]
    frames = [f for f in (read_day(root, day)[0] for day in days) if len(f)]
    log = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(log) and "challenger_version" in log.columns:
        log = log[
            (log.get("source", "live") == "live")
            & (log["challenger_version"].astype(str) == state.challenger_version)
            & (log["rollout_stage"] == state.stage)
        ].reset_index(drop=True)
    else:
        log = log.iloc[0:0]
    table = task.table(task.definition.examples.table)
    known = lake.partitions(table)
    as_of = task.partition_end(known[-1]) if known else None
    # A request is logged under its own partition, the one its example is stored in.
    examples = lake.read_partitions(table, [d for d in days if d in known], allow_missing=True)
    if log.empty or examples.empty or as_of is None:
        return (
            pd.DataFrame(columns=["champion_score", "challenger_score", "label"]),
            len(log),
            as_of,
        )
    return labelled_live_rows(log, examples, task.spec, task.domain, as_of), len(log), as_of


def _newest(instance: dg.DagsterInstance, key: dg.AssetKey):
    """The asset's newest materialization record (with its storage id), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=1, ascending=False
    ).records
    return records[0] if records else None


def rollout_defs(task: Task) -> dg.Definitions:
    if not task.definition.rollout.enabled:
        return dg.Definitions()
    spec, settings = task.spec, task.definition.rollout
    examples_key = task.key(task.definition.examples.table)

    @dg.asset(
        key=task.key("live_ab_analysis"),
        # Reads the prediction log outside the graph's edges: the log hangs from `deployment`,
        # which this analysis (through `rollout`) decides.
        deps=[task.key("champion")],
        group_name=task.group("evaluation"),
        kinds={"pandas", "mlflow"},
        code_version="1",
        tags=task.tags,
        description=f"The {task.name} champion and the challenger in rollout compared on the live "
        "requests of the current stage whose labels are known: AUC, log loss, calibration and "
        "score distributions with bootstrap intervals, and a picture. One row per labelled "
        "request (both scores): what the live gate in `rollout` reads.",
    )
    def live_ab_analysis(
        context: dg.AssetExecutionContext, mlflow: MlflowResource, lake: LakeResource
    ) -> DataFrame:

        from pipelines.platform.lib.plots import live_ab_chart
        from pipelines.platform.lib.rollout import EVIDENCE_COLUMNS, live_ab_analysis

        registry = mlflow.registry()
        registry.check_reachable()
        state = registry.rollout_state(spec.registered_model)
        if state is None:
            context.add_output_metadata({"stage": "none", "rows": 0})
            return empty_evidence()
        evidence, logged, as_of = _evidence(task, lake.lake, state)
        evidence = evidence.assign(
            stage=state.stage,
            challenger_version=state.challenger_version,
            champion_version=state.champion_version,
        )
        labelled = evidence.dropna(subset=["label", "champion_score", "challenger_score"])
        y = labelled["label"].to_numpy(dtype="float64")
        meta: dict = {
            "stage": state.stage,
            "version": state.challenger_version,
            "champion_version": state.champion_version,
            "logged_live_requests": logged,
            "labelled_rows": len(labelled),
            "pending_labels": len(evidence) - len(labelled),
            "labels_known_as_of": str(as_of),
        }
        if "served_by" in evidence.columns:
            meta["answered_by_challenger"] = int((evidence["served_by"] == "challenger").sum())
        if len(y) and 0 < y.sum() < len(y):
            names = {
                "champion_score": f"champion v{state.champion_version}",
                "challenger_score": f"challenger v{state.challenger_version}",
            }
            analysis = live_ab_analysis(labelled, "label", list(names), samples=300)
            analysis["model"] = analysis["model"].map(names)
            chart = live_ab_chart(
                y,
                {names[c]: labelled[c].to_numpy(dtype="float64") for c in names},
                f"{task.name} {state.stage} of v{state.challenger_version}",
            )
            experiment_id, run_id = registry.log_report(
                f"{task.name}-rollout",
                f"{task.name}-v{state.challenger_version}-{state.stage}",
                {
                    f"{row['model'].split()[0]}_{metric}": float(row[metric])
                    for _, row in analysis.iterrows()
                    for metric in ("roc_auc", "log_loss", "ece")
                },
                {"stage": state.stage, "dagster.run_id": context.run.run_id},
                pictures={"live_ab.png": chart},
            )
            meta |= {
                "comparison": metric_table(analysis, digits=4),
                "live_ab_chart": picture(
                    chart,
                    "champion and challenger on labelled live requests",
                    mlflow.artifact_url(run_id, "live_ab.png"),
                ),
                "mlflow_report": dg.MetadataValue.url(mlflow.run_url(experiment_id, run_id)),
            }
        context.add_output_metadata(meta)
        keep = [*EVIDENCE_COLUMNS, *spec.slice_columns]
        return evidence[[c for c in keep if c in evidence.columns]]

    @dg.asset(
        key=task.key("rollout"),
        ins={"evidence": dg.AssetIn(task.key("live_ab_analysis"))},
        deps=[task.key("champion")],
        group_name=task.group("evaluation"),
        kinds={"mlflow"},
        code_version="1",
        tags=task.tags,
        description=f"The {task.name} challenger's rollout: shadow (scored on every live request, "
        "the champion answers) -> canary (a stable share of entities) -> champion, or rollback; "
        "each materialization is one decision of the live gate (or a human), with its evidence",
    )
    def rollout(
        context: dg.AssetExecutionContext,
        config: RolloutDecisionConfig,
        mlflow: MlflowResource,
        evidence: DataFrame,
    ) -> dict:
        import pandas as pd

        from pipelines.platform.lib.evaluation import live_gate
        from pipelines.platform.lib.rollout import advance, manual

        registry = mlflow.registry()
        registry.check_reachable()
        state = registry.rollout_state(spec.registered_model)
        if state is None:
            champion = registry.champion_version(spec.registered_model)
            context.add_output_metadata(
                {
                    "stage": "none",
                    "decision": "no challenger in rollout: the champion serves alone",
                    "champion_version": champion or "none",
                }
            )
            return {"stage": "none", "champion_version": champion}
        # Evidence of another stage or challenger (live_ab_analysis older than the state) is none.
        if len(evidence) and not (
            (evidence["stage"] == state.stage).all()
            and (evidence["challenger_version"].astype(str) == state.challenger_version).all()
        ):
            context.log.warning("live_ab_analysis is not of the current stage: no evidence")
            evidence = evidence.iloc[0:0]
        meta: dict = {}
        if config.action == "auto":
            # Named as the gate's reasons name them ("AUC gain ... over the champion").
            named = evidence.rename(
                columns={"champion_score": "champion", "challenger_score": "challenger"}
            )
            verdict = live_gate(
                named,
                "label",
                "challenger",
                "champion",
                list(spec.slice_columns),
                spec.gate,
                settings.min_labelled_rows,
                settings.max_labelled_rows,
            )
            summary = (
                f"{verdict.labelled_rows} labelled live rows in {state.stage} "
                f"({verdict.positives} positive)"
            )
            new = advance(state, verdict.verdict, verdict.reasons, summary)
            meta |= {
                "live_gate": verdict.verdict,
                "live_gate_reasons": "; ".join(verdict.reasons) or "none",
                "labelled_rows": verdict.labelled_rows,
                "positives": verdict.positives,
            }
            if verdict.gate is not None:
                meta["criteria"] = metric_table(
                    pd.DataFrame([c.as_dict() for c in verdict.gate.criteria]), digits=4
                )
        else:
            who = config.who or context.run.tags.get("user", "someone in the UI")
            new = manual(state, config.action, who, config.why or "no reason given")
        replaced = registry.apply_rollout(spec.registered_model, new) if new != state else None
        context.add_output_metadata(
            meta
            | {
                # The alert sensor reads stage, version and decision (components/alerts.py).
                "stage": new.stage,
                "previous_stage": state.stage,
                "version": new.challenger_version,
                "champion_version": (
                    new.challenger_version if new.stage == "champion" else new.champion_version
                ),
                "decision": new.decision or state.decision,
                "canary_share": new.canary_share,
                "mlflow_model": dg.MetadataValue.url(
                    mlflow.model_version_url(spec.registered_model, new.challenger_version)
                ),
            }
        )
        context.log.info(f"rollout of v{new.challenger_version}: {state.stage} -> {new.stage}")
        return new.as_dict() | {"replaced": replaced}

    job = dg.define_asset_job(
        name=rollout_job_name(task),
        selection=dg.AssetSelection.assets(
            *rollout_keys(task), task.key("bento"), task.key("deployment")
        ),
        tags=task.tags,
        description=f"Decide the {task.name} rollout (the live gate, or a human's promote/abort "
        "in the Launchpad's config) and re-package and re-roll the service to match",
    )

    @dg.sensor(
        name=rollout_sensor_name(task),
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"While a {task.name} challenger is in shadow or canary, ask the live gate "
        "again each time new labels land (the examples table materialized)",
    )
    def rollout_sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        latest = _newest(instance, task.key("rollout"))
        if latest is None:
            return dg.SkipReason("no rollout decided yet")
        meta = latest.asset_materialization.metadata
        stage = meta["stage"].value if "stage" in meta else ""
        if stage not in ACTIVE:
            return dg.SkipReason(f"no challenger in shadow or canary (last decision: {stage})")
        labels = _newest(instance, examples_key)
        if labels is None or labels.storage_id <= latest.storage_id:
            return dg.SkipReason(f"in {stage}: no labels landed since the last decision")
        running = instance.get_runs(
            dg.RunsFilter(
                job_name=rollout_job_name(task),
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ],
            ),
            limit=1,
        )
        if running:
            return dg.SkipReason(f"a rollout decision is already in flight ({running[0].run_id})")
        return dg.RunRequest(
            run_key=f"rollout-{latest.storage_id}-{labels.storage_id}",
            tags={"flightline/rollout_stage": stage},
        )

    return dg.Definitions(assets=[live_ab_analysis, rollout], jobs=[job], sensors=[rollout_sensor])
