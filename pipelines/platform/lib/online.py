"""The online path: a request as known at prediction time -> the model's feature vector, from
Feast's online store through the same FeatureService and the same task code (entity keys,
request features) as training. Serving calls this; the skew check compares it with historical
retrieval."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.task import TaskDomain, TaskSpec

# Feast (6-9 s of imports, torch included) is loaded by whoever opens the store; this module only
# receives one, so importing it stays cheap for the code location.
if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass(frozen=True)
class OnlineVector:
    features: pd.DataFrame  # the model input, one row per request
    # per feature view: epoch seconds its value became known (0: none)
    known_at: dict[str, np.ndarray]
    # per feature view: rows whose stored value was stamped after their prediction time and so
    # was withheld (see `stamped_after`); a row with any is not a point-in-time answer
    withheld: dict[str, np.ndarray] = field(default_factory=dict)

    def missing(self, view: str) -> np.ndarray:
        """Rows for which the store knew nothing in `view` (e.g. an unknown entity)."""
        stamps = self.known_at.get(view)
        return (stamps == 0) if stamps is not None else np.zeros(len(self.features), bool)

    def point_in_time(self) -> np.ndarray:
        """Per row: every served value was known at the row's prediction time."""
        flags = np.ones(len(self.features), bool)
        for rows in self.withheld.values():
            flags &= ~rows
        return flags

    def withheld_views(self) -> list[list[str]]:
        """Per row: the views whose value was withheld as being from the row's future."""
        return [
            [view for view, rows in self.withheld.items() if rows[i]]
            for i in range(len(self.features))
        ]


def entity_key_rows(domain: TaskDomain, rows: pd.DataFrame) -> dict[str, list]:
    keys = domain.entity_keys(rows)
    return {column: keys[column].tolist() for column in keys.columns}


@dataclass(frozen=True)
class _ServicePlan:
    service: object
    features_by_view: dict[str, list[str]]
    ttl_seconds: dict[str, float]  # 0: no TTL


def _plan(store: "FeatureStore", name: str) -> _ServicePlan:
    """The FeatureService and its views' TTLs, looked up once per store (2 ms per registry read)."""
    cache = store.__dict__.setdefault("_flightline_plans", {})
    if name not in cache:
        service = store.get_feature_service(name)
        cache[name] = _ServicePlan(
            service=service,
            features_by_view={
                p.name: [f.name for f in p.features] for p in service.feature_view_projections
            },
            ttl_seconds={
                p.name: pd.Timedelta(store.get_feature_view(p.name).ttl or 0).total_seconds()
                for p in service.feature_view_projections
            },
        )
    return cache[name]


def _epoch_seconds(moments: pd.Series | pd.Timestamp, n: int) -> np.ndarray:
    if isinstance(moments, pd.Series):
        return (
            moments.reset_index(drop=True).astype("datetime64[us, UTC]").astype("int64").to_numpy()
            / 1e6
        )
    return np.full(n, pd.Timestamp(moments).timestamp())


def stamped_after(stamps: np.ndarray, as_of: np.ndarray) -> np.ndarray:
    """Values the online store holds that became known after the request's prediction time.

    The online store keeps only the newest value per entity, so a request behind the store's
    clock (a replay, a backfill, a late retry) would otherwise be answered with the future. Such
    values are withheld, as if the store knew nothing yet, and the answer is flagged as not
    point-in-time (`OnlineVector.withheld`), rather than refused: the older value that was current
    then is gone from the online store, and refusing would fail every replayed request.
    """
    return (stamps > 0) & (stamps > as_of)


def online_vector(
    store: "FeatureStore",
    rows: pd.DataFrame,
    spec: TaskSpec,
    domain: TaskDomain,
    as_of: pd.Series | pd.Timestamp | None = None,
) -> OnlineVector:
    """`rows`: requests normalized by the task's `request_frame`. `as_of`: the prediction time
    (default: the task's rule for each row). A value older than its view's TTL at that time is
    dropped, exactly as the point-in-time join that built the training set drops it (Feast's
    online read does not apply TTLs); a value stamped after that time is withheld
    (`stamped_after`)."""
    if as_of is None:
        as_of = spec.prediction_time(rows[spec.timestamp_column])
    from feast.online_response import TIMESTAMP_POSTFIX

    plan = _plan(store, spec.feature_service)
    served = store.get_online_features(
        features=plan.service, entity_rows=entity_key_rows(domain, rows)
    ).to_dict(include_event_timestamps=True)
    now = _epoch_seconds(as_of, len(rows))
    values, known_at, withheld = {}, {}, {}
    for view, features in plan.features_by_view.items():
        stamps = np.asarray(served[features[0] + TIMESTAMP_POSTFIX], dtype="float64")
        ttl = plan.ttl_seconds[view]
        expired = (stamps > 0) & (now - stamps > ttl) if ttl else np.zeros(len(stamps), bool)
        withheld[view] = stamped_after(stamps, now)
        expired = expired | withheld[view]
        known_at[view] = np.where(expired, 0.0, stamps)
        for feature in features:
            column = served[feature]
            values[feature] = [None if gone else v for v, gone in zip(column, expired, strict=True)]
    request = domain.request_features(rows).reset_index(drop=True)
    table = pd.concat([pd.DataFrame(values), request], axis=1)
    table = table.loc[:, ~table.columns.duplicated(keep="last")]
    return OnlineVector(feature_frame(table, spec), known_at, withheld)


def feature_age_seconds(
    vector: OnlineVector, now: pd.Timestamp | pd.Series
) -> list[dict[str, float | None]]:
    """Per row, the age of each feature view's value at `now` (one instant, or one per row);
    None where the store knows nothing. Negative: the store is ahead of that row's time."""
    n = len(vector.features)
    at = _epoch_seconds(now, n)
    ages = {
        view: np.where(stamps > 0, at - stamps, np.nan) for view, stamps in vector.known_at.items()
    }
    return [
        {view: (None if np.isnan(a[i]) else round(float(a[i]), 1)) for view, a in ages.items()}
        for i in range(n)
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
