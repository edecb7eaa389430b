"""The replayed calendar: one partition per local day of 2013."""

import dagster as dg

daily_partitions = dg.DailyPartitionsDefinition(
    start_date="2013-01-01", end_date="2014-01-01", timezone="America/New_York"
)

# A range of days (a backfill, or `make run`) executes as one run per year of its days: per-day
# runs would re-pay Dagster's per-run cost 365 times for a year, and one run over ten years would
# hold them all in memory at once (benchmarks/scale.py: 12.7 GB).
MAX_PARTITIONS_PER_RUN = 366
ranged_backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)


def partition_keys(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[str]:
    """The days a run covers (one for a partition run, many for a ranged backfill)."""
    ctx = (
        context.op_execution_context
        if isinstance(context, dg.AssetCheckExecutionContext)
        else context
    )
    if ctx.has_partition_key_range:
        return list(ctx.partition_keys)
    if ctx.has_partition_key:  # a single-day run (a sensor's partition run, a UI click)
        return [ctx.partition_key]
    return []
