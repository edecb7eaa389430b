"""Training/serving skew: the feature vector the online path builds for a flight against the one
historical retrieval (what training used) builds for the same flight at the same time."""

import pandas as pd
from feast import FeatureStore

from pipelines.platform.lib.feature_store import historical_features
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.online import compare_vectors, entity_keys, flights_frame, online_vector
from pipelines.platform.lib.task import TaskSpec
from pipelines.tasks.flight_delay.features import EVENT_TIMESTAMP, request_features
from pipelines.tasks.flight_delay.flights import PredictionTiming


def feature_skew(
    store: FeatureStore,
    spec: TaskSpec,
    flights: pd.DataFrame,
    as_of: pd.Timestamp,
    request_features_fn=request_features,
    behind: pd.Timedelta | None = None,
) -> tuple[dict[str, int], int]:
    """Flights are asked about as if scheduled `lead` after `as_of` (the online store's clock):
    the features each path builds must agree. Returns differing features (rows) and rows compared.

    `behind`: ask instead at `as_of - behind`, a request behind the store's clock. Values the
    online path withheld as being from that request's future are left out of the comparison
    (they are flagged, not served); every other value must match the point-in-time join, so a
    value the store no longer holds (older than what it materialized) is reported."""
    if behind is not None:
        as_of = as_of - behind
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
    offline = feature_frame(offline, spec)
    served = online.features.copy()
    views = {
        p.name: [f.name for f in p.features]
        for p in store.get_feature_service(spec.feature_service).feature_view_projections
    }
    for view, rows in online.withheld.items():
        for feature in views.get(view, []):
            if feature in served and rows.any():
                served.loc[rows, feature] = None  # withheld and flagged online: not compared
                offline.loc[rows, feature] = None
    return compare_vectors(served, offline), len(flights)
