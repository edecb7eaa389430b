"""Training/serving skew: the feature vector the online path builds for a flight against the one
historical retrieval (what training used) builds for the same flight at the same time."""

from typing import TYPE_CHECKING

import pandas as pd

from pipelines.platform.lib.feature_store import historical_features
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.online import compare_vectors, entity_keys, flights_frame, online_vector
from pipelines.platform.lib.task import TaskSpec
from pipelines.tasks.flight_delay.features import EVENT_TIMESTAMP, request_features
from pipelines.tasks.flight_delay.flights import PredictionTiming

# Feast (6-9 s of imports, torch included) is loaded by whoever opens the store; this module only
# receives one, so importing it stays cheap for the code location.
if TYPE_CHECKING:
    from feast import FeatureStore


def feature_skew(
    store: "FeatureStore",
    spec: TaskSpec,
    flights: pd.DataFrame,
    as_of: pd.Timestamp,
    request_features_fn=request_features,
) -> tuple[dict[str, int], int]:
    """Flights are asked about as if scheduled `lead` after `as_of` (the online store's clock):
    the features each path builds must agree. Returns differing features (rows) and rows compared."""
    timing = PredictionTiming()
    flights = flights_frame(flights).assign(
        sched_dep_ts=as_of + pd.Timedelta(minutes=timing.lead_minutes)
    )
    online = online_vector(
        store, flights, spec, request_features_fn=request_features_fn, as_of=as_of
    )
    entities = pd.DataFrame(entity_keys(flights)).assign(
        flight_id=[f"skew-{i}" for i in range(len(flights))],
        **{EVENT_TIMESTAMP: pd.Timestamp(as_of).tz_convert("UTC")},
    )
    entities[EVENT_TIMESTAMP] = entities[EVENT_TIMESTAMP].astype("datetime64[us, UTC]")
    joined = historical_features(store, entities, spec.feature_service)
    offline = pd.concat(
        [
            joined,
            request_features(flights).drop(columns=["carrier", "origin"]).reset_index(drop=True),
        ],
        axis=1,
    )
    return compare_vectors(online.features, feature_frame(offline, spec)), len(flights)
