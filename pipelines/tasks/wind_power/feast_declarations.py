"""Wind power's Feast objects: one entity (the turbine), one feature view of its recent SCADA
readings stamped when each 10-minute interval ended, and the versioned FeatureService training
and serving read. Feast is imported only when the objects are built (it costs seconds at
code-location load)."""

from collections.abc import Callable
from datetime import timedelta

from pipelines.tasks.wind_power.features import FEATURE_COLUMNS

FEATURE_SERVICE = "wind_power_v1"
VIEW = "turbine_recent_scada"
# A prediction may use a reading for this long; an older one is stale and reads as missing.
TTL = timedelta(hours=1)


def served_features(service: str = FEATURE_SERVICE) -> tuple[str, ...]:
    """The features the FeatureService serves, in order (declarations only: no Feast)."""
    if service != FEATURE_SERVICE:
        raise KeyError(service)
    return FEATURE_COLUMNS


def feature_definitions(table_path: Callable[[str], str]) -> dict:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    turbine = Entity(
        name="wind_turbine",
        join_keys=["turbine"],
        value_type=ValueType.STRING,
        description="A turbine of the La Haute Borne wind farm",
    )
    view = FeatureView(
        name=VIEW,
        entities=[turbine],
        ttl=TTL,
        schema=[Field(name=name, dtype=Float64) for name in FEATURE_COLUMNS],
        source=FileSource(
            name="wind_power_scada_features",
            path=table_path("scada_features"),
            timestamp_field="event_timestamp",
        ),
        description="The turbine's and the farm's last hours of SCADA readings, stamped when each 10 minutes ended",
    )
    service = FeatureService(name=FEATURE_SERVICE, features=[view])
    return {o.name: o for o in (turbine, view, service)}
