"""Foot traffic's Feast objects: one entity (the sensor), one feature view of its recent counts
stamped when each hour ended, and the versioned FeatureService training and serving read.
Feast is imported only when the objects are built (it costs seconds at code-location load)."""

from collections.abc import Callable
from datetime import timedelta

from pipelines.tasks.foot_traffic.features import COUNT_COLUMNS

FEATURE_SERVICE = "foot_traffic_v1"
VIEW = "sensor_recent_counts"
# A prediction may use an hour's counts for this long; older ones are stale and read as missing.
TTL = timedelta(hours=6)


def served_features(service: str = FEATURE_SERVICE) -> tuple[str, ...]:
    """The features the FeatureService serves, in order (declarations only: no Feast)."""
    if service != FEATURE_SERVICE:
        raise KeyError(service)
    return COUNT_COLUMNS


def feature_definitions(table_path: Callable[[str], str]) -> dict:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    sensor = Entity(
        name="pedestrian_sensor",
        join_keys=["sensor"],
        value_type=ValueType.STRING,
        description="A City of Melbourne pedestrian counter",
    )
    view = FeatureView(
        name=VIEW,
        entities=[sensor],
        ttl=TTL,
        schema=[Field(name=name, dtype=Float64) for name in COUNT_COLUMNS],
        source=FileSource(
            name="foot_traffic_count_features",
            path=table_path("count_features"),
            timestamp_field="event_timestamp",
        ),
        description="The sensor's counts of the last hours, stamped when the hour ended",
    )
    service = FeatureService(name=FEATURE_SERVICE, features=[view])
    return {o.name: o for o in (sensor, view, service)}
