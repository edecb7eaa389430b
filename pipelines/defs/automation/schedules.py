"""The nightly retrain: every task retrains at 02:00 on all labelled data up to yesterday."""

from datetime import timedelta

import dagster as dg

from pipelines.defs.automation.jobs import RETRAIN_JOBS, RETRAIN_TAG, retrain_run_config
from pipelines.tasks import TASKS

NIGHTLY_CRON = "0 2 * * *"
TIMEZONE = "America/New_York"  # the airports' clock, which the daily partitions follow


def nightly_schedule(spec) -> dg.ScheduleDefinition:
    job = RETRAIN_JOBS[spec.name]

    @dg.schedule(
        name=f"{spec.name}_nightly_retrain",
        job=job,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=TIMEZONE,
        description=f"Retrain {spec.name} at 02:00 on everything labelled up to yesterday",
    )
    def _nightly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
        return dg.RunRequest(
            run_key=f"nightly:{spec.name}:{yesterday}",
            run_config=retrain_run_config(spec, yesterday),
            tags={
                RETRAIN_TAG: spec.name,
                "flightline/trigger": "schedule",
                "flightline/until": yesterday,
            },
        )

    return _nightly


defs = dg.Definitions(schedules=[nightly_schedule(spec) for spec in TASKS])
