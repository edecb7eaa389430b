"""The flight-delay task: the first user of the generic model half."""

from pipelines.platform.lib.task import TaskSpec
from pipelines.tasks.flight_delay.feast_declarations import FEATURE_SERVICE, feature_definitions

# Text features (LightGBM treats them natively, the MLP embeds them). Of the entity keys only
# carrier and origin are model inputs: tailnum is described by plane_* and route by origin + dest.
CATEGORICAL = ("carrier", "origin", "dest", "plane_manufacturer", "plane_engine_type")
# Computed from the request itself by lib.features.request_features (the same code at serving).
REQUEST_NUMERIC = (
    "distance",
    "sched_dep_hour",
    "sched_dep_minute_of_day",
    "day_of_week",
    "month",
)


def feature_service_features(name: str = FEATURE_SERVICE) -> tuple[str, ...]:
    """The features the versioned FeatureService serves, in its order (declarations only: no store)."""
    service = feature_definitions(lambda table: f"/nonexistent-lake/{table}")[name]
    return tuple(f.name for p in service.feature_view_projections for f in p.features)


def flight_delay_spec() -> TaskSpec:
    served = feature_service_features()
    return TaskSpec(
        name="flight_delay",
        training_asset=("training_set",),
        feature_service=FEATURE_SERVICE,
        entity_keys=("flight_id",),
        timestamp_column="sched_dep_ts",
        label_column="label",
        categorical_features=CATEGORICAL,
        numeric_features=tuple(c for c in served if c not in CATEGORICAL) + REQUEST_NUMERIC,
        slice_columns=("origin", "carrier"),
        baseline_keys=("carrier", "sched_dep_hour"),
    )
