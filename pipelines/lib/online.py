"""The online path: a flight as known at scheduling time -> the model's feature vector, from
Feast's online store through the same FeatureService and the same request-feature code as
training. Serving calls this; the skew check compares it with historical retrieval."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.online_response import TIMESTAMP_POSTFIX

from pipelines.lib.features import departure_hour_key, request_features
from pipelines.lib.flights import UNKNOWN_TAILNUM, PredictionTiming
from pipelines.lib.modeling.dataset import feature_frame
from pipelines.lib.task import TaskSpec

FLIGHT_FIELDS = ("carrier", "flight", "tailnum", "origin", "dest", "sched_dep_ts", "distance")
ENTITY_KEYS = ("origin", "tailnum", "carrier", "route", "dep_hour")


@dataclass(frozen=True)
class OnlineVector:
    features: pd.DataFrame  # the model input, one row per flight
    feature_time: pd.DataFrame  # per feature view: when its value became known (NaT: none)
    unknown_tailnum: np.ndarray  # the plane is not in the store: plane features are missing


def flights_frame(flights: pd.DataFrame) -> pd.DataFrame:
    """Normalize request flights: UTC departure time, text keys, the route."""
    frame = flights.loc[:, list(FLIGHT_FIELDS)].copy()
    frame["sched_dep_ts"] = pd.to_datetime(frame["sched_dep_ts"], utc=True)
    frame["tailnum"] = frame["tailnum"].fillna(UNKNOWN_TAILNUM).astype(str)
    frame["route"] = frame["origin"].astype(str) + "-" + frame["dest"].astype(str)
    return frame.reset_index(drop=True)


def entity_keys(flights: pd.DataFrame) -> dict[str, list]:
    return {
        "origin": flights["origin"].tolist(),
        "tailnum": flights["tailnum"].tolist(),
        "carrier": flights["carrier"].tolist(),
        "route": flights["route"].tolist(),
        "dep_hour": departure_hour_key(flights["sched_dep_ts"]).tolist(),
    }


def _view_ttls(store: FeatureStore, service) -> dict[str, pd.Timedelta]:
    cache = store.__dict__.setdefault("_flightline_ttls", {})
    if service.name not in cache:
        cache[service.name] = {
            p.name: pd.Timedelta(store.get_feature_view(p.name).ttl or 0)
            for p in service.feature_view_projections
        }
    return cache[service.name]


def online_vector(
    store: FeatureStore,
    flights: pd.DataFrame,
    spec: TaskSpec,
    request_features_fn=request_features,
    as_of: pd.Series | pd.Timestamp | None = None,
) -> OnlineVector:
    """`as_of`: the prediction time (default: `lead` before each scheduled departure). A value
    older than its view's TTL at that time is dropped, exactly as the point-in-time join that
    built the training set drops it (Feast's online read does not apply TTLs)."""
    flights = flights_frame(flights)
    if as_of is None:
        as_of = PredictionTiming().prediction_time(flights["sched_dep_ts"])
    service = store.get_feature_service(spec.feature_service)
    response = store.get_online_features(features=service, entity_rows=entity_keys(flights))
    served = pd.DataFrame(response.to_dict(include_event_timestamps=True))
    view_of = {f.name: p.name for p in service.feature_view_projections for f in p.features}
    stamps = [c for c in served.columns if c.endswith(TIMESTAMP_POSTFIX)]
    values = served.drop(columns=stamps + [k for k in ENTITY_KEYS if k in served.columns])
    # Features of one view share their timestamp: report one age per feature view.
    first_of_view = {}
    for column in stamps:
        view = view_of.get(column.removesuffix(TIMESTAMP_POSTFIX))
        if view is not None:
            first_of_view.setdefault(view, column)
    feature_time = pd.DataFrame(
        {
            view: pd.to_datetime(served[column].where(served[column] > 0), unit="s", utc=True)
            for view, column in first_of_view.items()
        }
    )
    ttls = _view_ttls(store, service)
    now = as_of.reset_index(drop=True) if isinstance(as_of, pd.Series) else as_of
    for view, features in _features_by_view(service).items():
        ttl = ttls.get(view)
        if ttl and view in feature_time:
            expired = (now - feature_time[view]) > ttl
            values.loc[expired.to_numpy(), [f for f in features if f in values]] = np.nan
    request = request_features_fn(flights).reset_index(drop=True)
    table = pd.concat([values.reset_index(drop=True), request], axis=1)
    table = table.loc[:, ~table.columns.duplicated(keep="last")]
    unknown = (
        values["plane_year"].isna().to_numpy()
        if "plane_year" in values
        else np.zeros(len(flights), bool)
    )
    return OnlineVector(feature_frame(table, spec), feature_time, unknown)


def _features_by_view(service) -> dict[str, list[str]]:
    return {p.name: [f.name for f in p.features] for p in service.feature_view_projections}


def feature_age_seconds(
    vector: OnlineVector, now: pd.Timestamp | pd.Series
) -> list[dict[str, float | None]]:
    """Per flight, the age of each feature view's value at `now` (one instant, or one per flight);
    None where the store knows nothing. Negative: the store is ahead of that flight's time."""
    if isinstance(now, pd.Series):
        now = now.reset_index(drop=True)
    ages = vector.feature_time.reset_index(drop=True).apply(lambda t: (now - t).dt.total_seconds())
    return [
        {name: (None if pd.isna(v) else round(float(v), 1)) for name, v in row.items()}
        for row in ages.to_dict(orient="records")
    ]


def compare_vectors(
    online: pd.DataFrame, offline: pd.DataFrame, rel_tol: float = 1e-6
) -> dict[str, int]:
    """Features whose online and offline values differ, with the number of rows that differ.
    Both missing counts as equal; one missing does not."""
    differing = {}
    for column in online.columns:
        a, b = online[column], offline[column]
        if a.dtype == object or b.dtype == object:
            same = a.astype(object).where(a.notna(), None) == b.astype(object).where(
                b.notna(), None
            )
            same |= a.isna() & b.isna()
        else:
            x, y = a.to_numpy("float64"), b.to_numpy("float64")
            same = np.isclose(x, y, rtol=rel_tol, atol=1e-9) | (np.isnan(x) & np.isnan(y))
        count = int((~np.asarray(same)).sum())
        if count:
            differing[column] = count
    return differing
