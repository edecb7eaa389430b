"""Monitoring of a task: the drift reference of each champion, drift reports and live performance
per partition."""

import json
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from pipelines.platform.components.definition import Task
from pipelines.platform.lib.drift import (
    DRIFT_THRESHOLD,
    MIN_ROWS,
    PREDICTION,
    DriftReference,
    detect_drift,
    evidently_report,
    summarize_reference,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.monitoring import (
    MIN_LABELLED_ROWS,
    champion_scores,
    rolling_view,
    score_live_performance,
)
from pipelines.platform.lib.plots import daily_metric_chart, drift_chart, markdown_image
from pipelines.platform.partitions import partition_keys, single_run_backfill
from pipelines.platform.resources import LakeResource, MlflowResource


class DriftReferenceConfig(dg.Config):
    report_sample_rows: int = 2_000  # rows Evidently's HTML report compares against


class DriftReportConfig(dg.Config):
    min_rows: int = MIN_ROWS  # fewer rows: "insufficient", never "no drift"
    html_columns: int = 15  # the most drifted columns shown in the Evidently page
    evidently_html: bool = True


class LivePerformanceConfig(dg.Config):
    min_labelled_rows: int = MIN_LABELLED_ROWS


NO_REFERENCE = (
    "no champion promoted yet: nothing to compare with (drift_reference is built with it)"
)


def _no_reference(context: dg.AssetExecutionContext, days: list[str]) -> pd.DataFrame:
    """Days before the first champion: recorded as such, so that nothing reads them as healthy."""
    context.add_output_metadata({"status": "no_reference", "reason": NO_REFERENCE})
    return pd.DataFrame(
        {PARTITION_COLUMN: days, "status": "no_reference", "rows": 0, "reason": NO_REFERENCE}
    )


def _current_side(
    day: str, training_set: pd.DataFrame, prediction_log: pd.DataFrame, score: str
) -> tuple[pd.DataFrame, np.ndarray | None, str]:
    """What the service used that day (the prediction log), or, where nothing was served, the
    features the point-in-time join gives the day's flights (the same vectors, by the skew check)."""
    served = (
        prediction_log[prediction_log[PARTITION_COLUMN] == day]
        if PARTITION_COLUMN in prediction_log.columns
        else prediction_log.iloc[0:0]
    )
    if len(served):
        # The log's records are flattened on reading: each feature is a "features.<name>" column.
        columns = [c for c in served.columns if c.startswith("features.")]
        features = served[columns].rename(columns=lambda c: c.removeprefix("features."))
        features = features.reset_index(drop=True)
        return features, served[score].to_numpy(dtype="float64"), "prediction_log"
    rows = training_set[training_set[PARTITION_COLUMN] == day]
    return rows, None, "training_set"


def _evidently_html(
    task: Task,
    lake: LakeResource,
    reference: DriftReference,
    day,
    result,
    features,
    predictions,
    n_columns,
    scratch: str,
) -> tuple[Path, str]:
    sample = lake.lake.read(task.table("drift_reference_sample"))
    numeric, categorical = task.spec.numeric_features, task.spec.categorical_features
    shown = [c.column for c in result.top(n_columns)]
    current = features.copy()
    if predictions is not None:
        current[PREDICTION] = predictions
        shown.append(PREDICTION)
    snapshot = evidently_report(
        sample,
        current,
        [c for c in shown if c in numeric or c == PREDICTION],
        [c for c in shown if c in categorical],
        {c: reference.columns[c].threshold for c in shown},
    )
    # Rendered locally (MLflow logs it from there), stored beside the lake's tables: in the
    # object store on a cluster, where the next pod (or a person) reads it.
    path = Path(scratch) / f"{day}.html"
    snapshot.save_html(str(path))
    uri = lake.lake.write_file(task.table("drift_report_html"), day, ".html", path.read_bytes())
    return path, uri


def _log_to_mlflow(
    task: Task, registry, day: str, result, version: str, html: Path | None
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
            f"drift {day}",
            metrics,
            {"day": day, "status": result.status, "champion_version": version},
            [summary_path, *([html] if html else [])],
        )


def _drift_metadata(
    task: Task, table: pd.DataFrame, result, html, link, reference: DriftReference
) -> dict:
    meta: dict = {
        "reference": f"{task.spec.registered_model} v{reference.description['champion_version']} "
        f"(trained on {reference.description['first_day']}..{reference.description['last_day']})",
        "days": dg.MetadataValue.md(
            table[
                [PARTITION_COLUMN, "status", "rows", "source", "drift_share", "prediction_distance"]
            ].to_markdown(index=False, floatfmt=".3f")
        ),
    }
    if len(table) == 1:  # a single day: its numbers are the partition's, plotted across days
        meta |= {
            "status": result.status,
            "rows": result.rows,
            "source": table["source"].iloc[0],
        }
        if result.status == "insufficient":
            return meta | {"reason": result.reason}
        meta |= {
            "drift_share": float(result.drift_share),
            "drifted_columns": dg.MetadataValue.json([c.column for c in result.drifted_columns]),
            "top_drifted": dg.MetadataValue.md(
                pd.DataFrame(
                    [
                        (c.column, c.kind, c.method, c.distance, c.threshold, c.drifted)
                        for c in result.top(10)
                    ],
                    columns=["column", "kind", "method", "distance", "threshold", "drifted"],
                ).to_markdown(index=False, floatfmt=".4f")
            ),
            "drift_chart": dg.MetadataValue.md(
                markdown_image(
                    drift_chart(
                        {c.column: c.distance for c in result.top(20)}
                        | ({PREDICTION: result.prediction.distance} if result.prediction else {}),
                        DRIFT_THRESHOLD,
                        f"drift against the reference, {table[PARTITION_COLUMN].iloc[0]}",
                    ),
                    "drift by column",
                )
            ),
        }
        if result.prediction:
            meta["prediction_distance"] = float(result.prediction.distance)
        if html:
            meta["evidently_html"] = dg.MetadataValue.path(str(html))
    return meta | {"mlflow_report": dg.MetadataValue.url(link)}


def monitoring_defs(task: Task) -> dg.Definitions:
    spec = task.spec
    reference_table = task.table("drift_reference")
    live_table = task.table("live_performance")
    score = task.definition.serving.score_field

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
        config: DriftReferenceConfig,
        training_set: pd.DataFrame,
        champion: dict,
        mlflow: MlflowResource,
        lake: LakeResource,
    ) -> dict:
        """The champion's training data reduced once to quantiles and category shares (and its own
        predictions on it), so that each day's drift check summarizes only the current side."""
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
            description={
                "champion_version": version,
                "model_family": tags.get("model_family", "?"),
                "holdout_roc_auc": float(tags.get("holdout_roc_auc", "nan")),
                "train_end": str(train_end),
                "first_day": str(rows[PARTITION_COLUMN].min()),
                "last_day": str(rows[PARTITION_COLUMN].max()),
            },
        )
        # Evidently's page needs rows, not summaries: a small sample (with predictions) is kept.
        sample = frame.sample(min(config.report_sample_rows, len(frame)), random_state=0)
        lake.lake.write(task.table("drift_reference_sample"), sample.reset_index(drop=True))
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
        backfill_policy=single_run_backfill,
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
        training_set: pd.DataFrame,
        prediction_log: pd.DataFrame,
        mlflow: MlflowResource,
        lake: LakeResource,
    ) -> pd.DataFrame:
        """Data drift of the features the service used, and prediction drift, against the champion's
        reference; with Evidently's report (HTML) for the most drifted columns."""
        days = partition_keys(context) or [context.partition_key]
        if not lake.lake.has_json(reference_table):
            return _no_reference(context, days)
        reference = DriftReference.from_dict(lake.lake.read_json(reference_table))
        version = reference.description["champion_version"]
        registry = mlflow.registry()
        rows, last = [], None
        scratch = tempfile.TemporaryDirectory()
        for day in days:
            current, predictions, source = _current_side(day, training_set, prediction_log, score)
            if predictions is None and len(current) >= config.min_rows:
                predictions = champion_scores(registry, spec, version, current)
            features = feature_frame(current, spec) if source == "training_set" else current
            result = detect_drift(reference, features, predictions, config.min_rows)
            html, local_html = None, None
            if config.evidently_html and result.status != "insufficient":
                local_html, html = _evidently_html(
                    task,
                    lake,
                    reference,
                    day,
                    result,
                    features,
                    predictions,
                    config.html_columns,
                    scratch.name,
                )
            link = mlflow.run_url(*_log_to_mlflow(task, registry, day, result, version, local_html))
            rows.append(
                {
                    PARTITION_COLUMN: day,
                    "status": result.status,
                    "rows": result.rows,
                    "source": source,
                    "drift_share": result.drift_share,
                    "drifted_columns": json.dumps([c.column for c in result.drifted_columns]),
                    "distances": json.dumps(
                        {c.column: round(c.distance, 5) for c in result.columns}
                    ),
                    "prediction_distance": result.prediction.distance
                    if result.prediction
                    else np.nan,
                    "prediction_drifted": bool(result.prediction and result.prediction.drifted),
                    "reference_version": version,
                    "reason": result.reason,
                    "html": str(html or ""),
                    "mlflow_run": link,
                }
            )
            last = (result, html, link)
        scratch.cleanup()
        table = pd.DataFrame(rows)
        context.add_output_metadata(_drift_metadata(task, table, *last, reference))
        return table

    @dg.asset(
        key=task.key("live_performance"),
        partitions_def=task.partitions_def,
        backfill_policy=single_run_backfill,
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
        training_set: pd.DataFrame,
        mlflow: MlflowResource,
        lake: LakeResource,
    ) -> pd.DataFrame:
        """The champion's AUC, PR AUC and calibration on each day once its labels are known, with the
        row-weighted 7-day rolling view."""
        days = partition_keys(context) or [context.partition_key]
        if not lake.lake.has_json(reference_table):
            return _no_reference(context, days)
        described = lake.lake.read_json(reference_table)["description"]
        version = described["champion_version"]
        registry = mlflow.registry()
        rows = []
        for day in days:
            frame = training_set[training_set[PARTITION_COLUMN] == day]
            scores = champion_scores(registry, spec, version, frame)
            result = score_live_performance(spec, frame, scores, config.min_labelled_rows)
            rows.append(
                {
                    PARTITION_COLUMN: day,
                    "day": day,
                    "status": result.status,
                    "rows": result.rows,
                    "champion_version": version,
                    "champion_holdout_roc_auc": described.get("holdout_roc_auc", np.nan),
                    "reason": result.reason,
                    **{
                        k: result.metrics.get(k, np.nan)
                        for k in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "positive_rate")
                    },
                }
            )
        table = pd.DataFrame(rows)
        earlier = lake.lake.read_partitions(
            live_table,
            [d for d in lake.lake.partitions(live_table) if d not in days],
            allow_missing=True,
        )
        history = pd.concat([earlier, table], ignore_index=True) if len(earlier) else table
        view = rolling_view(history, "roc_auc")
        meta: dict = {"champion_version": f"{spec.registered_model} v{version}"}
        if len(table) == 1:
            row = table.iloc[0]
            meta |= {"status": row["status"], "labelled_rows": int(row["rows"])}
            if row["status"] == "ok":
                meta |= {k: float(row[k]) for k in ("roc_auc", "pr_auc", "brier", "ece")}
            else:
                meta["reason"] = row["reason"]
        if days[-1] in view.index:
            meta["roc_auc_rolling_7d"] = float(view.loc[days[-1], "roc_auc_rolling_7d"])
        if len(view) >= 2:
            recent = view.iloc[-60:]
            meta["rolling_view"] = dg.MetadataValue.md(
                markdown_image(
                    daily_metric_chart(recent, ["roc_auc", "pr_auc"], "champion on labelled days"),
                    "live performance by day",
                )
            )
        context.add_output_metadata(meta)
        return table

    return dg.Definitions(assets=[drift_reference, drift_report, live_performance])
