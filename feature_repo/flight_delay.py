"""The flight-delay task's Feast objects, for the Feast CLI (`cd feature_repo && feast plan`),
which scans this folder. The platform builds the same objects in-process from its configuration."""

from pipelines.platform.lib.settings import DataPaths
from pipelines.tasks.flight_delay.feast_declarations import feature_definitions

globals().update(feature_definitions(DataPaths.from_env().lake))
