"""One tick of a task's landing sensor, with Dagster's test context over real files."""

from contextlib import contextmanager

import dagster as dg

from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.resources import LandingZone


def landing_tick(definitions, instance, task: str, paths: DataPaths, cursor=None):
    context = dg.build_sensor_context(
        instance=instance,
        definitions=definitions,
        cursor=cursor,
        resources={
            "landing": LandingZone(
                landing_dir=str(paths.landing), archive_dir=str(paths.root / "archive")
            )
        },
    )
    return definitions.get_sensor_def(f"{task}_landing_sensor")(context)


def skip_message(result) -> str | None:
    """Why a tick requested nothing (a SkipReason, or a SensorResult that skips), else None."""
    if isinstance(result, dg.SkipReason):
        return result.skip_message
    if isinstance(result, dg.SensorResult) and not result.run_requests and result.skip_reason:
        return result.skip_reason.skip_message
    return None


@contextmanager
def champion_described_as(lake_root, task: str, **description):
    """The task's drift reference as if its champion had been trained on other days (its
    description changed), restored afterwards."""
    from pipelines.platform.lib.lake import Lake

    lake, table = Lake(str(lake_root)), f"{task}/drift_reference"
    reference = lake.read_json(table)
    lake.write_json(
        table, {**reference, "description": {**reference["description"], **description}}
    )
    try:
        yield
    finally:
        lake.write_json(table, reference)
