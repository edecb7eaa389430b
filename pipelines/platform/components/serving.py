"""Packaging and serving of a task: its champion as a Bento (the generic service built for the
task), the training/serving skew check, and the log of what the service answered."""

import dagster as dg

from pipelines.platform.components.definition import Task
from pipelines.platform.components.rollout import rollout_decision_keys
from pipelines.platform.frame_type import DataFrame
from pipelines.platform.lib.deployment import RolloutFailed
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.packaging import (
    bento_size_bytes,
    build_bento,
    export_bento,
    import_champion,
    import_rollout,
    latest_bento_for,
    write_latest,
)
from pipelines.platform.lib.prediction_log import read_day
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.lib.skew import feature_skew
from pipelines.platform.metadata import metric_table
from pipelines.platform.partitions import partition_keys, ranged_backfill
from pipelines.platform.resources import (
    BentoResource,
    FeastResource,
    LakeResource,
    MlflowResource,
    ServiceDeploymentResource,
)

# pandas is imported inside the functions that use it: the code location imports this module and
# must load without it (issue 18, tests/platform/test_cold_start.py). Asset signatures name
# frame_type.DataFrame, the Dagster type of pd.DataFrame without pandas.

NO_CLUSTER = "FLIGHTLINE_K8S_NAMESPACE is unset (embedded profile): no cluster to roll"
SKEW_SAMPLE = 200
SKEW_BEHIND_HOURS = 6


def prediction_log_root(task: Task):
    """Each task's service logs under a folder of its own."""
    return DataPaths.from_env().prediction_log_for(task.name)


def serving_defs(task: Task) -> dg.Definitions:
    spec = task.spec
    examples = task.definition.examples.table

    @dg.asset(
        key=task.key("bento"),
        deps=[task.key("champion"), *rollout_decision_keys(task)],
        group_name=task.group("serving"),
        kinds={"bentoml"},
        code_version="1",
        tags=task.tags,
        description=f"The {task.name} champion imported into BentoML's store and built into a "
        "Bento with its exact model tag pinned; an unchanged champion reuses its Bento",
    )
    def bento(
        context: dg.AssetExecutionContext, mlflow: MlflowResource, bento: BentoResource
    ) -> dict:
        import pandas as pd

        bento.check_home()
        registry = mlflow.registry()
        registry.check_reachable()
        model, imported = import_champion(registry, spec.registered_model)
        # A challenger in shadow or canary (@shadow / @canary in the registry, which the
        # `rollout` asset moves) rides in the same Bento: the service scores both.
        rollout = import_rollout(registry, spec.registered_model)
        existing = latest_bento_for(task.name, str(model.tag), rollout)
        built = existing or build_bento(
            task.name,
            str(model.tag),
            {"task": task.name, "mlflow_version": model.info.labels["mlflow_version"]},
            rollout,
        )
        write_latest(bento.latest_pointer(task.name), built, model, rollout)
        # One file in the object store (production): the deployment asset's pods, and the
        # service's, do not share this pod's BentoML store.
        export = export_bento(built, DataPaths.from_env().bento_exports)
        version = model.info.labels["mlflow_version"]
        registered = registry.client.get_model_version(spec.registered_model, version)
        # The evaluation tags the version with its holdout metrics (holdout_<metric>).
        holdout = pd.to_numeric(
            pd.Series(
                {
                    k.removeprefix("holdout_"): v
                    for k, v in registered.tags.items()
                    if k.startswith("holdout_")
                },
                dtype=object,
            ),
            errors="coerce",
        ).dropna()
        run = registry.client.get_run(registered.run_id)
        context.add_output_metadata(
            {
                "bento_tag": str(built.tag),
                "bento_model_tag": str(model.tag),
                "mlflow_model_version": f"{spec.registered_model} v{version}",
                "mlflow_model": dg.MetadataValue.url(
                    mlflow.model_version_url(spec.registered_model, version)
                ),
                "mlflow_run": dg.MetadataValue.url(
                    mlflow.run_url(run.info.experiment_id, registered.run_id)
                ),
                **(
                    {"holdout_metrics": metric_table(holdout.to_frame("value"), index="metric")}
                    if len(holdout)
                    else {}
                ),
                "model_family": model.info.labels.get("model_family", "?"),
                "bento_size_bytes": bento_size_bytes(built),
                "rebuilt": existing is None,
                "model_imported": imported,
                "serve": f"make serve TASK={task.name}",
                "rollout": (
                    f"v{rollout['mlflow_version']} in {rollout['stage']} ({rollout['model']})"
                    if rollout
                    else "none: the champion alone"
                ),
                "export": export,
            }
        )
        return {
            "bento": str(built.tag),
            "model": str(model.tag),
            "rollout": rollout,
            "mlflow_version": version,
            "export": export,
        }

    @dg.asset(
        key=task.key("deployment"),
        ins={"packaged": dg.AssetIn(task.key("bento"))},
        group_name=task.group("serving"),
        kinds={"kubernetes"},
        code_version="1",
        tags=task.tags,
        description=f"The {task.name} service Deployment rolled to the champion's exact Bento "
        "(its export in the object store), through the Kubernetes API; waits for the rollout "
        "and records the revision. A failed rollout fails here with Kubernetes' reason and the "
        "previous Bento keeps serving.",
    )
    def deployment(
        context: dg.AssetExecutionContext,
        packaged: dict,
        deployment: ServiceDeploymentResource,
    ) -> dict:
        if not deployment.namespace:
            context.add_output_metadata({"deployed": False, "why": NO_CLUSTER})
            return {"deployed": False, "bento": packaged["bento"]}
        target = deployment.target(task.name)
        try:
            rollout = target.roll(
                packaged["bento"],
                packaged["export"],
                packaged.get("mlflow_version"),
                deployment.rollout_timeout_s,
            )
        except RolloutFailed as exc:
            raise dg.Failure(description=str(exc)) from exc
        context.add_output_metadata(
            {
                "deployed": True,
                "deployment": target.where,
                "bento_tag": rollout.bento,
                "mlflow_model_version": packaged.get("mlflow_version", "?"),
                "revision": rollout.revision,
                "previous_bento": rollout.previous.bento or "none",
                "previous_revision": rollout.previous.revision or "none",
                "unchanged": rollout.unchanged,
                "rollout_seconds": round(rollout.seconds, 1),
                "image": rollout.previous.image,
            }
        )
        return {
            "deployed": True,
            "bento": rollout.bento,
            "export": packaged["export"],
            "revision": rollout.revision,
            "deployment": target.where,
        }

    @dg.asset_check(
        asset=bento,
        name="bento_feature_skew",
        blocking=True,
        description="For recent examples, the online path's feature vector equals historical "
        "retrieval's",
    )
    def bento_feature_skew(lake: LakeResource, feast: FeastResource) -> dg.AssetCheckResult:
        import pandas as pd

        keys = lake.lake.partitions(task.table(examples))
        if not keys:
            return dg.AssetCheckResult(
                passed=False, description=f"no {examples} partition to sample"
            )
        rows = lake.lake.read(task.table(examples), keys[-1])
        rows = rows.sample(min(SKEW_SAMPLE, len(rows)), random_state=0)
        as_of = pd.Timestamp(task.partition_end(keys[-1]))  # the online store's clock
        skew_behind = pd.Timedelta(hours=SKEW_BEHIND_HOURS)
        store = feast.store()
        differing, compared = feature_skew(store, spec, task.domain, rows, as_of)
        # Requests behind the store's clock (a replay, a late retry): what the online path still
        # serves must equal the point-in-time join; what it withholds is flagged, not served.
        behind, _ = feature_skew(store, spec, task.domain, rows, as_of, behind=skew_behind)
        problems = {**{f"{k} (behind)": v for k, v in behind.items()}, **differing}
        return dg.AssetCheckResult(
            passed=not problems,
            description=(
                f"{compared} examples as of {as_of} and {skew_behind} before: online and "
                "offline vectors agree"
                if not problems
                else f"features differ between online and offline: {sorted(problems)}"
            ),
            metadata={
                "examples_compared": compared,
                "differing_features": dg.MetadataValue.json(differing),
                "differing_features_behind_the_store": dg.MetadataValue.json(behind),
            },
        )

    score = task.definition.serving.score_field

    @dg.asset(
        key=task.key("prediction_log"),
        # What served the predictions: the loop bento -> deployment -> prediction_log ->
        # drift_report / live_performance -> retrain is one path in the lineage.
        deps=[task.key("deployment")],
        partitions_def=task.partitions_def,
        backfill_policy=ranged_backfill,
        group_name=task.group("serving"),
        kinds={"pandas"},
        code_version="1",
        tags=task.tags,
        description="Every prediction the service answered for that partition: request, "
        "features used, model version, latency. Monitoring reads it.",
    )
    def prediction_log(context: dg.AssetExecutionContext) -> DataFrame:
        import pandas as pd

        root = prediction_log_root(task)
        frames, torn = [], 0
        for key in partition_keys(context):
            frame, skipped = read_day(root, key)
            torn += skipped
            frames.append(frame.assign(**{PARTITION_COLUMN: key}) if len(frame) else frame)
        table = (
            pd.concat([f for f in frames if len(f)], ignore_index=True)
            if any(len(f) for f in frames)
            else pd.DataFrame({PARTITION_COLUMN: pd.Series(dtype=object)})
        )
        meta = {"torn_lines_skipped": torn, "predictions": len(table)}
        if len(table):
            meta |= {
                "model_versions": dg.MetadataValue.json(
                    table["model_version"].value_counts().to_dict()
                ),
                "latency_ms_p50": float(table["latency_ms"].median()),
                "latency_ms_p99": float(table["latency_ms"].quantile(0.99)),
                f"mean_{score}": float(table[score].mean()),
            }
            for flag in task.definition.serving.flags:
                meta[f"{flag}_share"] = float(table[flag].mean())
        context.add_output_metadata(meta)
        return table

    return dg.Definitions(
        assets=[bento, deployment, prediction_log], asset_checks=[bento_feature_skew]
    )
