"""The live skew check of a task (issue 24): the vectors its service served (the prediction log)
joined point-in-time afterwards, column by column, per day; it fails on any column whose share
of differing rows exceeds the task's `monitoring.live_skew_tolerance`, naming the column."""

import dagster as dg

from pipelines.platform.compat import check_targets
from pipelines.platform.components.definition import Task
from pipelines.platform.partitions import partition_keys
from pipelines.platform.resources import FeastResource

LIVE_SOURCES = ("live",)  # the prediction log's `source` of real traffic (where it is recorded)


def live_skew_checks(task: Task) -> dg.AssetChecksDefinition:
    log_key = task.key("prediction_log")
    spec = dg.AssetCheckSpec(
        "prediction_log_live_skew",
        asset=log_key,
        # The join it compares with reads the day's feature tables: in a day's run, the check
        # waits for them (without this it could run first and compare with yesterday's rows).
        additional_deps=[
            task.key(t.name) for t in task.definition.feature_tables if t.feast_source
        ],
        description="Served vectors of live requests equal the point-in-time join at their "
        "prediction time, column by column (within the task's declared tolerance)",
        partitions_def=task.partitions_def,
    )
    tolerance = task.definition.monitoring.live_skew_tolerance

    @dg.multi_asset_check(specs=[spec], name=f"{task.name}_live_skew")
    def _check(context: dg.AssetCheckExecutionContext, feast: FeastResource):
        from pipelines.platform.components.serving import prediction_log_root
        from pipelines.platform.lib.live import unavailable_views
        from pipelines.platform.lib.prediction_log import read_day
        from pipelines.platform.lib.skew import live_skew

        if spec.key not in context.selected_asset_check_keys:
            return
        keys = partition_keys(context)
        targets = check_targets(context.instance, log_key, keys)
        store, unavailable = feast.store(), unavailable_views(task)
        for day in keys:
            log, _ = read_day(prediction_log_root(task), day)
            if len(log) and "source" in log.columns:
                log = log.loc[log["source"].isin(LIVE_SOURCES)].reset_index(drop=True)
            shares, compared = live_skew(store, task.spec, task.domain, log, unavailable)
            beyond = {c: round(s, 4) for c, s in shares.items() if s > tolerance}
            yield dg.AssetCheckEvaluation(
                asset_key=log_key,
                check_name=spec.name,
                passed=not beyond,
                partition=day,
                target_materialization_data=targets.get(day),
                description=(
                    f"{compared} live requests: served vectors equal the point-in-time join"
                    if not beyond
                    else "served vectors differ from the point-in-time join: "
                    + ", ".join(f"{c} in {s:.1%} of rows" for c, s in sorted(beyond.items()))
                ),
                metadata={
                    "requests_compared": compared,
                    "tolerance": tolerance,
                    "differing_share": dg.MetadataValue.json(
                        {c: round(s, 4) for c, s in shares.items()}
                    ),
                    "unavailable_views": dg.MetadataValue.json(list(unavailable)),
                },
            )
        # The check's output, with no evaluation of its own (as the raw tables' checks do): a
        # partitioned check records one evaluation per day above.
        yield dg.Output(None, output_name=context.job_def.asset_layer.get_op_output_name(spec.key))

    return _check
