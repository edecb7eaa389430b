"""The flight-delay task: the first user of the generic model half."""

from pipelines.platform.lib.task import TaskSpec
from pipelines.tasks.flight_delay.feast_declarations import FEATURE_SERVICE, served_features

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


def flight_delay_spec() -> TaskSpec:
    served = served_features(FEATURE_SERVICE)
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
