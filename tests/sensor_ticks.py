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
