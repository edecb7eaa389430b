"""Training/serving skew: the feature vector the online path builds for a request against the one
historical retrieval (what training used) builds for the same request at the same time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.platform.lib.feature_store import historical_features
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.task import TaskDomain, TaskSpec

EVENT_TIMESTAMP = "event_timestamp"

# Feast (6-9 s of imports, torch included) is loaded by whoever opens the store; this module only
# receives one, so importing it stays cheap for the code location (pandas is imported where used).
if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


def feature_skew(
    store: FeatureStore,
    spec: TaskSpec,
    domain: TaskDomain,
    examples: pd.DataFrame,
    as_of: pd.Timestamp,
    online_domain: TaskDomain | None = None,
    behind: pd.Timedelta | None = None,
) -> tuple[dict[str, int], int]:
    """Examples are asked about as if predicted at `as_of` (the online store's clock): the
    features each path builds must agree. Returns differing features (rows) and rows compared.
    `online_domain`: the task code the online path runs, when it is not `domain` (a deployed
    service built from other code).

    `behind`: ask instead at `as_of - behind`, a request behind the store's clock. Values the
    online path withheld as being from that request's future are left out of the comparison
    (they are flagged, not served), and so are values it no longer holds (stale, served as
    missing); every value it does serve must match the point-in-time join."""
    import pandas as pd

    # The online path (numpy throughout) is imported by whoever uses it, not the code location.
    from pipelines.platform.lib.online import compare_vectors, online_vector

    if behind is not None:
        as_of = as_of - behind
    rows = domain.request_frame(examples)
    rows[spec.timestamp_column] = pd.Timestamp(as_of) + pd.Timedelta(minutes=spec.lead_minutes)
    online = online_vector(store, rows, spec, online_domain or domain, as_of=as_of)
    entities = domain.entity_keys(rows).reset_index(drop=True)
    entities[EVENT_TIMESTAMP] = pd.Series(
        [pd.Timestamp(as_of).tz_convert("UTC")] * len(entities), dtype="datetime64[us, UTC]"
    )
    joined = historical_features(store, entities, spec.feature_service)
    offline = pd.concat([joined, domain.request_features(rows).reset_index(drop=True)], axis=1)
    offline = feature_frame(offline.loc[:, ~offline.columns.duplicated(keep="last")], spec)
    served = online.features.copy()
    views = {
        p.name: [f.name for f in p.features]
        for p in store.get_feature_service(spec.feature_service).feature_view_projections
    }
    for view, withheld in online.withheld.items():
        for feature in views.get(view, []):
            if feature in served and withheld.any():
                served.loc[withheld, feature] = None  # withheld and flagged online: not compared
                offline.loc[withheld, feature] = None
    if behind is not None:
        # Behind its clock, the store may no longer hold what was current then (it keeps the
        # newest value per entity, materialized from `end - ttl`): a missing value is stale, not
        # wrong. What it does serve must be exactly what the point-in-time join gives.
        for feature in served.columns:
            offline.loc[served[feature].isna().to_numpy(), feature] = None
    return compare_vectors(served, offline), len(rows)


def served_requests(log: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prediction-log rows (flattened: `request.<field>`, `features.<name>`) -> the raw requests
    and the features the model was served."""
    requests = log[[c for c in log.columns if c.startswith("request.")]]
    served = log[[c for c in log.columns if c.startswith("features.")]]
    return (
        requests.rename(columns=lambda c: c.removeprefix("request.")).reset_index(drop=True),
        served.rename(columns=lambda c: c.removeprefix("features.")).reset_index(drop=True),
    )


def live_skew(
    store: FeatureStore,
    spec: TaskSpec,
    domain: TaskDomain,
    log: pd.DataFrame,
    unavailable: tuple[str, ...] = (),
) -> tuple[dict[str, float], int]:
    """The live skew check (issue 24): each logged request's served vector against the
    point-in-time join at its prediction time, afterwards. Returns the share of rows that differ
    per column, and the rows compared. Values of a view the answer flagged as withheld, and of
    views declared without a live path (reported unavailable), are not compared: they were not
    served."""
    import pandas as pd

    from pipelines.platform.lib.online import compare_vectors

    if log.empty:
        return {}, 0
    raw, served = served_requests(log)
    rows = domain.request_frame(raw)
    as_of = spec.prediction_time(rows[spec.timestamp_column]).reset_index(drop=True)
    entities = domain.entity_keys(rows).reset_index(drop=True)
    entities[EVENT_TIMESTAMP] = as_of.astype("datetime64[us, UTC]")
    joined = historical_features(store, entities, spec.feature_service)
    offline = pd.concat([joined, domain.request_features(rows).reset_index(drop=True)], axis=1)
    offline = feature_frame(offline.loc[:, ~offline.columns.duplicated(keep="last")], spec)
    served = feature_frame(served.reindex(columns=list(spec.features)), spec)
    views = {
        p.name: [f.name for f in p.features]
        for p in store.get_feature_service(spec.feature_service).feature_view_projections
    }
    withheld = (
        log["withheld_views"].reset_index(drop=True)
        if "withheld_views" in log.columns
        else pd.Series([[]] * len(log))
    )
    for view, features in views.items():
        flagged = withheld.map(lambda names, v=view: v in (names or [])).to_numpy()
        if view in unavailable:
            flagged[:] = True
        for feature in features:
            if feature in served.columns and flagged.any():
                served.loc[flagged, feature] = None
                offline.loc[flagged, feature] = None
    counts = compare_vectors(served, offline)
    return {column: n / len(log) for column, n in counts.items()}, len(log)
