"""The flight-delay task's Feast objects, for the Feast CLI (`cd feature_repo && feast plan`),
which scans this folder. The platform builds the same objects in-process from its configuration
(the feast_definitions asset), with the task's lake tables under its key prefix."""

from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.settings import DataPaths
from pipelines.tasks.flight_delay.feast_declarations import feature_definitions

_lake = Lake(DataPaths.from_env().lake)
globals().update(feature_definitions(lambda table: _lake.glob(f"flight_delay/{table}")))
