"""One tick of a task's landing sensor, with Dagster's test context over real files."""

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
