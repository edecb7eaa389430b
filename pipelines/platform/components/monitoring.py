"""Monitoring of a task: the drift reference of each champion, drift reports and live performance
per partition."""

import json
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from pipelines.platform.components.definition import Task
from pipelines.platform.frame_type import DataFrame
from pipelines.platform.lib.drift import (
    PREDICTION,
    DriftReference,
    DriftResult,
    detect_drift,
    evidently_report,
    evidently_verdict,
    summarize_reference,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.monitoring import (
    TRAINED_ON,
    champion_scores,
    latest_verdicts,
    plan_judgements,
    rolling_view,
    score_live_performance,
)
from pipelines.platform.lib.plots import daily_metric_chart, drift_chart
from pipelines.platform.lib.retrain_policy import live_degraded, live_floor
from pipelines.platform.metadata import metric_table, picture
from pipelines.platform.partitions import partition_keys, ranged_backfill
from pipelines.platform.resources import LakeResource, MlflowResource, RetrainPolicy

# numpy and pandas are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py). Asset
# signatures name frame_type.DataFrame, the Dagster type of pd.DataFrame without pandas.
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class DriftReportConfig(dg.Config):
    # Fewer rows: "insufficient", never "no drift". None: the task's monitoring.drift_min_rows.
    min_rows: int | None = None
    evidently_html: bool = True  # Evidently's page of each day (every feature column: seconds)
    # A day already judged keeps its verdict (a backfill of ingestion re-judges nothing); true:
    # judge it again under the current champion, the earlier verdict kept beside the new one.
    rejudge: bool = False


class LivePerformanceConfig(dg.Config):
    min_labelled_rows: int | None = None  # None: the task's monitoring.live_min_labelled_rows
    rejudge: bool = False  # as DriftReportConfig.rejudge
    # The instant labels must be known by (ISO; None: the end of each day, when its file lands).
    as_of: str | None = None


# Only real traffic is evidence: benchmark, test and replay rows are the service's too, but
# never judged (the log says each row's source).
LIVE = "live"


def _judged_at() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


NO_REFERENCE = (
    "no champion promoted yet: nothing to compare with (drift_reference is built with it)"
)


def _no_reference(context: dg.AssetExecutionContext, days: list[str]) -> "pd.DataFrame":
    """Days before the first champion: recorded as such, so that nothing reads them as healthy."""
    import pandas as pd

    context.add_output_metadata({"status": "no_reference", "reason": NO_REFERENCE})
    return pd.DataFrame(
        {PARTITION_COLUMN: days, "status": "no_reference", "rows": 0, "reason": NO_REFERENCE}
    )


def _current_side(
    day: str, training_set: "pd.DataFrame", prediction_log: "pd.DataFrame", score: str
) -> "tuple[pd.DataFrame, np.ndarray | None, str, int]":
    """What the service used that day for live traffic (the prediction log's `live` rows), or,
    where no live request was served, the features the point-in-time join gives the day's
    examples (the same vectors, by the skew check), said so in the `source` column. Rows of other
    sources are counted (the last value), never judged."""
    served = (
        prediction_log[prediction_log[PARTITION_COLUMN] == day]
        if PARTITION_COLUMN in prediction_log.columns
        else prediction_log.iloc[0:0]
    )
    sources = served["source"] if "source" in served.columns else None
    live = served[sources == LIVE] if sources is not None else served.iloc[0:0]
    other = len(served) - len(live)
    served = live
    if len(served):
        # The log's records are flattened on reading: each feature is a "features.<name>" column.
        columns = [c for c in served.columns if c.startswith("features.")]
        features = served[columns].rename(columns=lambda c: c.removeprefix("features."))
        features = features.reset_index(drop=True)
        return features, served[score].to_numpy(dtype="float64"), "prediction_log", other
    rows = training_set[training_set[PARTITION_COLUMN] == day]
    return rows, None, "training_set", other


class VerdictMismatch(RuntimeError):
    """Evidently's page and the cached check disagree: a bug, never a result to publish."""


def _evidently_html(
    task: Task,
    lake: LakeResource,
    reference: DriftReference,
    day,
    result: DriftResult,
    features,
    predictions,
    scratch: str,
) -> tuple[Path, str]:
    """Evidently's page of the day, from the same reference sketch, columns and thresholds as
    the cached check; its own result is read back and must be the check's. Rendered in scratch
    (MLflow logs it from there) and stored beside the lake's tables: in the object store on a
    cluster, where the next pod (or a person) reads it. Returns (local page, its lake URI)."""
    numeric, categorical = task.spec.numeric_features, task.spec.categorical_features
    current = features.copy()
    if predictions is not None:
        current[PREDICTION] = predictions
    snapshot = evidently_report(
        reference.frame(),
        current,
        list(numeric),
        list(categorical),
        {name: column.threshold for name, column in reference.columns.items()},
        extra=[PREDICTION] if predictions is not None else None,
    )
    metrics = snapshot.dict()["metrics"]
    _check_one_verdict(result, evidently_verdict(metrics))
    path = Path(scratch) / f"{day}.html"
    snapshot.save_html(str(path))
    table = task.table("drift_report_html")
    uri = lake.lake.write_file(table, day, ".html", path.read_bytes())
    # Evidently's own numbers beside its page, for whoever checks the verdict later.
    lake.lake.write_file(table, day, ".json", json.dumps(metrics, default=str).encode())
    return path, uri


def _check_one_verdict(result: DriftResult, evidently: dict) -> None:
    ours = {c.column for c in result.drifted_columns}
    theirs = evidently["drifted"] - {PREDICTION}
    measured = sorted(c.column for c in result.columns)
    if (
        ours != theirs
        or sorted(evidently["columns"]) != measured
        or evidently["count"] != len(ours)
        or not math.isclose(evidently["share"], result.drift_share, abs_tol=1e-12)
    ):
        raise VerdictMismatch(
            f"Evidently: {evidently['count']}/{len(evidently['columns'])} drifted "
            f"{sorted(theirs)}; cached check: {len(ours)}/{len(measured)} {sorted(ours)}"
        )


def _log_to_mlflow(
    task: Task, registry, day: str, result: DriftResult, version: str, files: list[Path]
) -> tuple[str, str]:
    """The report as an MLflow run: its UI renders the HTML artifact, one click from Dagster."""
    summary = result.summary()
    metrics = {"drift_share": result.drift_share, "rows": result.rows}
    if result.prediction:
        metrics["prediction_distance"] = result.prediction.distance
    metrics |= {f"distance.{c.column}": c.distance for c in result.columns}
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "drift_summary.json"
        summary_path.write_text(json.dumps(summary, indent=1))
        return registry.log_report(
            f"{task.name}-monitoring",
            f"{task.name}-drift-{day}",
            metrics,
            {"day": day, "status": result.status, "champion_version": version},
            [summary_path, *files],
        )


def _drift_chart(result: DriftResult, day: str, features: set[str]) -> bytes:
    shown = result.top(20) + ([result.prediction] if result.prediction else [])
    return drift_chart(
        {c.column: c.distance for c in shown},
        {c.column: c.threshold for c in shown},
        f"drift against the reference, {day}",
        constant={c: c in features for c in result.constant},
    )


def _verdicts(table: "pd.DataFrame") -> "pd.DataFrame":
    """The newest verdict of each day, with the champion that gave it."""
    columns = [PARTITION_COLUMN, "status", "rows", "source", "drift_share", "reference_version"]
    return table[[c for c in columns if c in table.columns]]


def _drift_metadata(
    task: Task,
    table: "pd.DataFrame",
    result: DriftResult,
    html: str | None,
    links: dict[str, str],
    reference: DriftReference,
) -> dict:
    import pandas as pd

    meta: dict = {
        "reference": f"{task.spec.registered_model} v{reference.description['champion_version']} "
        f"(trained on {reference.description['first_day']}..{reference.description['last_day']})",
    }
    if len(table) == 1:  # a single day: its numbers are the partition's, plotted across days
        meta |= {
            "status": result.status,
            "current_rows": result.rows,  # rows compared (the asset itself has one per day)
            "source": table["source"].iloc[0],
        }
        if result.status == "insufficient":
            return meta | {"reason": result.reason}
        meta |= {
            "drift_share": float(result.drift_share),
            "drifted": f"{len(result.drifted_columns)} of {len(result.columns)} columns",
            "drifted_columns": dg.MetadataValue.json([c.column for c in result.drifted_columns]),
            "top_drifted": metric_table(
                pd.DataFrame(
                    [
                        (c.column, c.kind, c.method, c.distance, c.threshold, c.drifted)
                        for c in result.top(10)
                    ],
                    columns=["column", "kind", "method", "distance", "threshold", "drifted"],
                )
            ),
            "drift_chart": links["chart"],
        }
        if result.missing:
            meta["missing_columns"] = dg.MetadataValue.json(result.missing)
        if result.constant:
            # A model feature constant over the champion's training data: the model learned
            # nothing from it, and any other value live is outside what it has seen.
            meta["constant_in_reference"] = dg.MetadataValue.json(
                {
                    c: "model feature" if c in task.spec.features else "column"
                    for c in result.constant
                }
            )
        if result.prediction:
            meta["prediction_distance"] = float(result.prediction.distance)
        if html:
            meta["evidently_html"] = dg.MetadataValue.path(str(html))
        if "evidently" in links:
            meta["evidently_report"] = dg.MetadataValue.url(links["evidently"])
    return meta | {"mlflow_report": dg.MetadataValue.url(links["run"])}


def _publish_day(
    task: Task,
    lake: LakeResource,
    mlflow: MlflowResource,
    registry,
    reference: DriftReference,
    day: str,
    result: DriftResult,
    features: "pd.DataFrame",
    predictions,
    config: DriftReportConfig,
) -> tuple[str | None, dict]:
    """The day's chart and Evidently page as artifacts of its MLflow run; the page's lake URI and
    the links to them."""
    version = reference.description["champion_version"]
    html, local_html, files, chart = None, None, [], b""
    with tempfile.TemporaryDirectory() as tmp:
        if result.status != "insufficient":
            chart = _drift_chart(result, day, set(task.spec.features))
            files.append(Path(tmp) / "drift_chart.png")
            files[-1].write_bytes(chart)
            if config.evidently_html:
                local_html, html = _evidently_html(
                    task, lake, reference, day, result, features, predictions, tmp
                )
                files.append(local_html)
        experiment_id, run_id = _log_to_mlflow(task, registry, day, result, version, files)
    links = {"run": mlflow.run_url(experiment_id, run_id)}
    if chart:
        links["chart"] = picture(
            chart, "drift by column", mlflow.artifact_url(run_id, "drift_chart.png")
        )
    if local_html:
        links["evidently"] = mlflow.artifact_page_url(experiment_id, run_id, local_html.name)
    return html, links


def monitoring_defs(task: Task) -> dg.Definitions:
    spec = task.spec
    reference_table = task.table("drift_reference")
    live_table = task.table("live_performance")
    score = task.definition.serving.score_field
    monitoring = task.definition.monitoring

    @dg.asset(
        key=task.key("drift_reference"),
        ins={
            "training_set": dg.AssetIn(
                task.key("training_set"), metadata={"allow_missing_partitions": True}
            ),
            "champion": dg.AssetIn(task.key("champion")),
        },
        group_name=task.group("monitoring"),
        kinds={"evidently"},
        code_version="1",
        tags=task.tags,
    )
    def drift_reference(
        context: dg.AssetExecutionContext,
        training_set: DataFrame,
        champion: dict,
        mlflow: MlflowResource,
    ) -> dict:
        """The champion's training data (and its own predictions on it) sketched once: quantiles
        and category proportions, which each day's check and Evidently's page compare with."""
        import pandas as pd

        registry = mlflow.registry()
        registry.check_reachable()
        version = str(champion["version"])
        tags = registry.client.get_model_version(spec.registered_model, version).tags
        train_end = pd.Timestamp(tags["train_end"])
        seen = pd.to_datetime(training_set[spec.timestamp_column], utc=True) <= train_end
        rows = training_set.loc[seen].reset_index(drop=True)
        if rows.empty:
            raise dg.Failure(f"no training_set rows up to the champion's train_end {train_end}")
        # Scoring every reference row (a year: ~2 s) keeps predictions aligned with their days.
        frame = feature_frame(rows, spec).assign(
            **{PREDICTION: champion_scores(registry, spec, version, rows)}
        )
        reference = summarize_reference(
            frame,
            [*spec.numeric_features, PREDICTION],
            list(spec.categorical_features),
            days=rows[PARTITION_COLUMN],
            min_rows=monitoring.drift_min_rows,  # days as small as those it will judge
            description={
                "champion_version": version,
                "model_family": tags.get("model_family", "?"),
                "holdout_roc_auc": float(tags.get("holdout_roc_auc", "nan")),
                "train_end": str(train_end),
                "first_day": str(rows[PARTITION_COLUMN].min()),
                "last_day": str(rows[PARTITION_COLUMN].max()),
            },
        )
        context.add_output_metadata(
            {
                "champion_version": f"{spec.registered_model} v{version}",
                "reference_rows": reference.rows,
                "reference_days": f"{reference.description['first_day']}..{reference.description['last_day']}",
                "columns": len(reference.columns),
            }
        )
        return reference.as_dict()

    @dg.asset(
        key=task.key("drift_report"),
        partitions_def=task.partitions_def,
        backfill_policy=ranged_backfill,
        deps=[drift_reference.key],
        ins={
            "training_set": dg.AssetIn(task.key("training_set")),
            "prediction_log": dg.AssetIn(
                task.key("prediction_log"), metadata={"allow_missing_partitions": True}
            ),
        },
        group_name=task.group("monitoring"),
        kinds={"evidently", "pandas"},
        code_version="1",
        tags=task.tags,
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        config: DriftReportConfig,
        training_set: DataFrame,
        prediction_log: DataFrame,
        mlflow: MlflowResource,
        lake: LakeResource,
    ) -> DataFrame:
        """Data drift of the features the service used, and prediction drift, against the champion's
        reference; with Evidently's page of the same verdict. One row per day."""
        import numpy as np
        import pandas as pd

        days = partition_keys(context) or [context.partition_key]
        if not lake.lake.has_json(reference_table):
            return _no_reference(context, days)
        reference = DriftReference.from_dict(lake.lake.read_json(reference_table))
        version = reference.description["champion_version"]
        trained_through = reference.description["last_day"]
        registry = mlflow.registry()
        history = lake.lake.read_partitions(task.table("drift_report"), days, allow_missing=True)
        rows, last, kept = [], None, []
        min_rows = monitoring.drift_min_rows if config.min_rows is None else config.min_rows
        for plan in plan_judgements(days, history, trained_through, config.rejudge):
            day = plan.day
            if len(history):  # every earlier verdict stays
                rows.extend(history[history[PARTITION_COLUMN] == day].to_dict(orient="records"))
            if plan.action == "keep":
                kept.append(f"{day}: {plan.note}")
                continue
            if plan.action == TRAINED_ON:
                rows.append(
                    {
                        PARTITION_COLUMN: day,
                        "status": TRAINED_ON,
                        "rows": 0,
                        "source": "",
                        "reference_version": version,
                        "reason": f"v{version}: {plan.note}",
                        "judged_at": _judged_at(),
                    }
                )
                continue
            current, predictions, source, other = _current_side(
                day, training_set, prediction_log, score
            )
            if predictions is None and len(current) >= min_rows:
                predictions = champion_scores(registry, spec, version, current)
            features = feature_frame(current, spec) if source == "training_set" else current
            result = detect_drift(reference, features, predictions, min_rows)
            html, links = _publish_day(
                task, lake, mlflow, registry, reference, day, result, features, predictions, config
            )
            reason = result.reason
            if source == "prediction_log" and result.status == "insufficient":
                reason = f"{result.rows} live rows; {reason.split('; ', 1)[-1]}"
            rows.append(
                {
                    PARTITION_COLUMN: day,
                    "status": result.status,
                    "rows": result.rows,
                    "source": source,
                    "other_source_rows": other,
                    "drift_share": result.drift_share,
                    "drifted_columns": json.dumps([c.column for c in result.drifted_columns]),
                    "distances": json.dumps(
                        {c.column: round(c.distance, 5) for c in result.columns}
                    ),
                    "constant_columns": json.dumps(result.constant),
                    "prediction_distance": result.prediction.distance
                    if result.prediction
                    else np.nan,
                    "prediction_drifted": bool(result.prediction and result.prediction.drifted),
                    "reference_version": version,
                    "reason": reason,
                    "missing_columns": json.dumps(result.missing),
                    "html": str(html or ""),
                    "mlflow_run": links["run"],
                    "judged_at": _judged_at(),
                }
            )
            last = (result, html, links)
        table = pd.DataFrame(rows)
        newest = latest_verdicts(table)
        meta = (
            _drift_metadata(task, newest, *last, reference)
            if last is not None
            else {"reference": f"{spec.registered_model} v{version}"}
        )
        meta["judged_by"] = f"{spec.registered_model} v{version}"
        meta["verdicts"] = metric_table(_verdicts(newest), digits=3)
        if len(newest) == 1:  # a single day: its standing verdict, new or kept
            meta.setdefault("status", str(newest["status"].iloc[0]))
        if kept:
            meta["kept_verdicts"] = dg.MetadataValue.md(
                "Already judged, kept (materialize with `rejudge: true` to judge again):\n\n"
                + "\n".join(f"- {k}" for k in kept)
            )
        context.add_output_metadata(meta)
        return table

    @dg.asset(
        key=task.key("live_performance"),
        partitions_def=task.partitions_def,
        backfill_policy=ranged_backfill,
        deps=[drift_reference.key],
        ins={"training_set": dg.AssetIn(task.key("training_set"))},
        group_name=task.group("monitoring"),
        kinds={"pandas"},
        code_version="1",
        tags=task.tags,
    )
    def live_performance(
        context: dg.AssetExecutionContext,
        config: LivePerformanceConfig,
        training_set: DataFrame,
        mlflow: MlflowResource,
        lake: LakeResource,
        retrain_policy: RetrainPolicy,
    ) -> DataFrame:
        """The champion's AUC, PR AUC and calibration on each day once its labels are known, with the
        row-weighted 7-day rolling view; `degraded` by the rule that makes the drift sensor retrain."""
        import numpy as np
        import pandas as pd

        days = partition_keys(context) or [context.partition_key]
        if not lake.lake.has_json(reference_table):
            return _no_reference(context, days)
        described = lake.lake.read_json(reference_table)["description"]
        version = str(described["champion_version"])
        holdout_auc = float(described.get("holdout_roc_auc", np.nan))
        thresholds = retrain_policy.thresholds()
        registry = mlflow.registry()
        stored = lake.lake.read_partitions(
            live_table, lake.lake.partitions(live_table), allow_missing=True
        )
        prior_rows = (
            stored[stored[PARTITION_COLUMN].isin(days)] if len(stored) else stored.iloc[0:0]
        )
        earlier = stored[~stored[PARTITION_COLUMN].isin(days)] if len(stored) else stored
        min_labelled_rows = (
            monitoring.live_min_labelled_rows
            if config.min_labelled_rows is None
            else config.min_labelled_rows
        )
        new_rows, kept = [], []
        for plan in plan_judgements(days, prior_rows, described["last_day"], config.rejudge):
            day = plan.day
            if plan.action == "keep":
                kept.append(f"{day}: {plan.note}")
                continue
            row = {
                PARTITION_COLUMN: day,
                "day": day,
                "champion_version": version,
                "champion_holdout_roc_auc": holdout_auc,
                "judged_at": _judged_at(),
            }
            if plan.action == TRAINED_ON:
                new_rows.append(
                    row | {"status": TRAINED_ON, "rows": 0, "reason": f"v{version}: {plan.note}"}
                )
                continue
            frame = training_set[training_set[PARTITION_COLUMN] == day]
            scores = champion_scores(registry, spec, version, frame)
            # scored when the day's file lands (its end), or at config.as_of: later labels wait
            as_of = config.as_of or task.partition_end(day).isoformat()
            result = score_live_performance(spec, frame, scores, min_labelled_rows, as_of)
            new_rows.append(
                row
                | {"status": result.status, "rows": result.rows, "reason": result.reason}
                | {"pending_labels": result.pending, "scored_as_of": as_of}
                | {
                    k: result.metrics.get(k, np.nan)
                    for k in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "positive_rate")
                }
            )
        added = pd.DataFrame(new_rows)
        history = pd.concat([earlier, prior_rows, added], ignore_index=True)
        # The rolling view of the current champion's own verdicts decides "degraded": the same
        # function the drift sensor applies, so a status and a retrain never disagree.
        view = rolling_view(
            latest_verdicts(history, version).assign(day=lambda f: f[PARTITION_COLUMN]), "roc_auc"
        )
        floor = live_floor(holdout_auc, thresholds)
        for index, row in added.iterrows():
            if row["status"] != "ok" or row[PARTITION_COLUMN] not in view.index:
                continue
            rolling = float(view.loc[row[PARTITION_COLUMN], "roc_auc_rolling_7d"])
            added.loc[index, "roc_auc_rolling_7d"] = rolling
            added.loc[index, "degraded_below"] = floor
            reason = live_degraded(rolling, holdout_auc, thresholds)
            if reason:
                added.loc[index, ["status", "reason"]] = ["degraded", reason]
        table = pd.concat([prior_rows, added], ignore_index=True)
        newest = latest_verdicts(table)
        meta: dict = {
            "champion_version": f"{spec.registered_model} v{version}",
            "degraded_below": dg.MetadataValue.float(float(floor)),
            "rule": f"degraded when the 7-day row-weighted AUC < champion holdout AUC "
            f"{holdout_auc:.3f} - {thresholds.max_live_auc_drop} (the drift sensor's rule)",
            "verdicts": metric_table(
                newest[
                    [
                        c
                        for c in (
                            PARTITION_COLUMN,
                            "status",
                            "rows",
                            "roc_auc",
                            "roc_auc_rolling_7d",
                            "champion_version",
                        )
                        if c in newest.columns
                    ]
                ],
                digits=3,
            ),
        }
        if kept:
            meta["kept_verdicts"] = dg.MetadataValue.md(
                "Already judged, kept (materialize with `rejudge: true` to judge again):\n\n"
                + "\n".join(f"- {k}" for k in kept)
            )
        if len(newest) == 1:
            row = newest.iloc[0]
            meta |= {"status": row["status"], "labelled_rows": int(row["rows"])}
            if "pending_labels" in row and row["pending_labels"] == row["pending_labels"]:
                meta["pending_labels"] = int(row["pending_labels"])
            if row["status"] in ("ok", "degraded"):
                meta |= {k: float(row[k]) for k in ("roc_auc", "pr_auc", "brier", "ece")}
            if row.get("reason"):
                meta["reason"] = str(row["reason"])
        if days[-1] in view.index:
            meta["roc_auc_rolling_7d"] = float(view.loc[days[-1], "roc_auc_rolling_7d"])
        if len(view) >= 2 and len(added):
            recent = view.iloc[-60:]
            chart = daily_metric_chart(
                recent,
                ["roc_auc", "pr_auc"],
                f"champion v{version} on labelled days",
                rolling="roc_auc_rolling_7d",
                floor=(floor, f"degraded below {floor:.3f} (retrain rule)"),
            )
            experiment_id, run_id = registry.log_report(
                f"{task.name}-monitoring",
                f"{task.name}-live-{days[0]}..{days[-1]}",
                {k: v for k, v in meta.items() if isinstance(v, float)},
                {"champion_version": version, "dagster.run_id": context.run.run_id},
                pictures={"live_performance.png": chart},
            )
            meta["rolling_view"] = picture(
                chart,
                "live performance by day",
                mlflow.artifact_url(run_id, "live_performance.png"),
            )
            meta["mlflow_report"] = dg.MetadataValue.url(mlflow.run_url(experiment_id, run_id))
        context.add_output_metadata(meta)
        return table

    return dg.Definitions(assets=[drift_reference, drift_report, live_performance])
