"""The online path: a request as known at prediction time -> the model's feature vector, from
Feast's online store through the same FeatureService and the same task code (entity keys,
request features) as training. Serving calls this; the skew check compares it with historical
retrieval."""

import calendar
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.task import TaskDomain, TaskSpec

# Feast (6-9 s of imports, torch included) is loaded by whoever opens the store; this module only
# receives one, so importing it stays cheap for the code location.
if TYPE_CHECKING:
    from feast import FeatureStore


class OnlineVector:
    """The model input for each request, as plain records (the fast path) or a frame; each is
    built from the other when asked, with `feature_frame`'s types (text or None, float64)."""

    def __init__(
        self,
        spec: TaskSpec,
        known_at: dict[str, np.ndarray],
        withheld: dict[str, np.ndarray] | None = None,
        *,
        records: list[dict] | None = None,
        features: pd.DataFrame | None = None,
    ) -> None:
        self.spec = spec
        # per feature view: epoch seconds its value became known (0: none)
        self.known_at = known_at
        # per feature view: rows whose stored value was stamped after their prediction time and
        # so was withheld (see `stamped_after`); a row with any is not a point-in-time answer
        self.withheld = withheld or {}
        self._records = records
        self._features = features

    def __len__(self) -> int:
        return len(self._records) if self._records is not None else len(self._features)

    @property
    def features(self) -> pd.DataFrame:
        """The model input, one row per request, in the spec's column order."""
        if self._features is None:
            frame = pd.DataFrame.from_records(self._records, columns=list(self.spec.features))
            self._features = feature_frame(frame, self.spec)
        return self._features

    @property
    def records(self) -> list[dict]:
        if self._records is None:
            names = list(self.features.columns)
            self._records = [
                dict(zip(names, row, strict=True))
                for row in self.features.to_numpy(dtype=object)  # NaN stays NaN
            ]
        return self._records

    def missing(self, view: str) -> np.ndarray:
        """Rows for which the store knew nothing in `view` (e.g. an unknown entity)."""
        stamps = self.known_at.get(view)
        return (stamps == 0) if stamps is not None else np.zeros(len(self), bool)

    def point_in_time(self) -> np.ndarray:
        """Per row: every served value was known at the row's prediction time."""
        flags = np.ones(len(self), bool)
        for rows in self.withheld.values():
            flags &= ~rows
        return flags

    def withheld_views(self) -> list[list[str]]:
        """Per row: the views whose value was withheld as being from the row's future."""
        return [[view for view, rows in self.withheld.items() if rows[i]] for i in range(len(self))]


def entity_key_rows(domain: TaskDomain, rows: pd.DataFrame) -> dict[str, list]:
    keys = domain.entity_keys(rows)
    return {column: keys[column].tolist() for column in keys.columns}


@dataclass(frozen=True)
class _ViewRead:
    view: object  # the FeatureView, as the FeatureService projects it
    join_keys: tuple[str, ...]
    key_types: tuple  # the Feast ValueType of each join key
    features: tuple[str, ...]
    ttl_seconds: float  # 0: no TTL


@dataclass(frozen=True)
class _ServicePlan:
    views: list[_ViewRead]
    online_store: object
    config: object
    # (view, key values) -> its EntityKey proto: the same few thousand entities recur, and
    # building a proto costs more than reading its row
    entity_keys: dict = field(default_factory=dict)

    def entity_key(self, read: _ViewRead, values: tuple):
        key = self.entity_keys.get((read.view.name, values))
        if key is None:
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey
            from feast.type_map import python_values_to_proto_values

            key = EntityKey(
                join_keys=list(read.join_keys),
                entity_values=[
                    python_values_to_proto_values([v], t)[0]
                    for v, t in zip(values, read.key_types, strict=True)
                ],
            )
            if len(self.entity_keys) > 200_000:
                self.entity_keys.clear()
            self.entity_keys[(read.view.name, values)] = key
        return key


def _plan(store: "FeatureStore", name: str) -> _ServicePlan:
    """The FeatureService's views, their join keys and TTLs, looked up once per store: each
    registry read costs ~2 ms, more than the whole online read."""
    from pipelines.platform.compat import online_store_impl

    cache = store.__dict__.setdefault("_flightline_plans", {})
    if name not in cache:
        service = store.get_feature_service(name)
        views = []
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name).with_projection(projection)
            columns = {c.name: c.dtype.to_value_type() for c in view.entity_columns}
            keys = tuple(projection.join_key_map.get(k, k) for k in columns)
            views.append(
                _ViewRead(
                    view=view,
                    join_keys=keys,
                    key_types=tuple(columns.values()),
                    features=tuple(f.name for f in projection.features),
                    ttl_seconds=pd.Timedelta(view.ttl or 0).total_seconds(),
                )
            )
        cache[name] = _ServicePlan(views, online_store_impl(store), store.config)
    return cache[name]


def read_online(
    store: "FeatureStore", service: str, keys: dict[str, list]
) -> tuple[dict[str, list], dict[str, np.ndarray]]:
    """The FeatureService's values for each row of entity `keys` (column -> values), straight
    from the online store: per view, the one `online_read` that `get_online_features` makes,
    without its per-call planning (registry lookups, protobuf response assembly: more than half
    of its time here). Same values and stamps: per view, the epoch second of the stored row
    (0: none), and None for a value it does not hold (tested against get_online_features)."""
    from feast.type_map import feast_value_type_to_python_type

    plan = _plan(store, service)
    n = len(next(iter(keys.values()))) if keys else 0
    values: dict[str, list] = {}
    stamps: dict[str, np.ndarray] = {}
    for read in plan.views:
        columns = [keys[k] for k in read.join_keys]
        entity_keys = [
            plan.entity_key(read, tuple(column[i] for column in columns)) for i in range(n)
        ]
        # A fresh list each time: Feast's Redis store appends its "_ts:<view>" field to the list
        # it is given, which grew by one per request (the lookup slowed from 3 to 11 ms in 1,000).
        rows = plan.online_store.online_read(
            plan.config, read.view, entity_keys, list(read.features)
        )
        stamps[read.view.name] = np.array(
            [calendar.timegm(ts.utctimetuple()) if ts is not None else 0 for ts, _ in rows],
            dtype="float64",
        )
        for feature in read.features:
            values[feature] = [
                feast_value_type_to_python_type(data[feature])
                if data is not None and feature in data
                else None
                for _, data in rows
            ]
    return values, stamps


def epoch_array(moments: pd.Series | pd.Timestamp | np.ndarray, n: int) -> np.ndarray:
    if isinstance(moments, np.ndarray):
        return moments
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


def _time_rules(
    plan: _ServicePlan,
    stamps_by_view: dict[str, np.ndarray],
    now: np.ndarray,
    unavailable: tuple[str, ...] = (),
) -> tuple[dict, dict, dict]:
    """Per view: when each served value became known (0: none or dropped), the rows withheld as
    from their future, and the rows dropped (older than the view's TTL at `now`, withheld, or
    of a view the task declares without a live path: reported unavailable, never served)."""
    known_at, withheld, dropped = {}, {}, {}
    for read in plan.views:
        view, ttl = read.view.name, read.ttl_seconds
        stamps = stamps_by_view[view]
        expired = (stamps > 0) & (now - stamps > ttl) if ttl else np.zeros(len(stamps), bool)
        withheld[view] = stamped_after(stamps, now)
        dropped[view] = expired | withheld[view]
        if view in unavailable:
            dropped[view] = np.ones(len(stamps), bool)
        known_at[view] = np.where(dropped[view], 0.0, stamps)
    return known_at, withheld, dropped


def epoch_seconds(value) -> float:
    """One instant (datetime, pandas Timestamp or ISO text; naive means UTC) as epoch seconds."""
    stamp = value if isinstance(value, datetime) else pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def online_records(
    store: "FeatureStore",
    requests: list[dict],
    spec: TaskSpec,
    domain: TaskDomain,
    as_of: np.ndarray | None = None,
    unavailable: tuple[str, ...] = (),
) -> OnlineVector:
    """The online path without pandas, for the task's `request_row`: the same values, rules and
    types as `online_vector` (a test compares them), at a fraction of the cost per request.
    `as_of`: epoch seconds of each prediction time (default: the task's rule)."""
    if as_of is None:
        lead = spec.lead_minutes * 60
        as_of = np.array([epoch_seconds(r[spec.timestamp_column]) - lead for r in requests])
    plan = _plan(store, spec.feature_service)
    pairs = [domain.request_row(r) for r in requests]
    keys = {k: [key[k] for key, _ in pairs] for k in pairs[0][0]} if pairs else {}
    served, stamps_by_view = read_online(store, spec.feature_service, keys)
    known_at, withheld, dropped = _time_rules(plan, stamps_by_view, as_of, unavailable)
    view_of = {f: read.view.name for read in plan.views for f in read.features}
    text = set(spec.categorical_features)
    records = []
    for i, (_, own) in enumerate(pairs):
        record = {}
        for name in spec.features:
            if name in own:  # the request's own value wins over a stored one
                value = own[name]
            elif name in view_of and not dropped[view_of[name]][i]:
                value = served[name][i]
            else:
                value = None
            if name in text:
                record[name] = None if value is None or value != value else value
            else:
                record[name] = math.nan if value is None else float(value)
        records.append(record)
    return OnlineVector(spec, known_at, withheld, records=records)


def online_vector(
    store: "FeatureStore",
    rows: pd.DataFrame,
    spec: TaskSpec,
    domain: TaskDomain,
    as_of: pd.Series | pd.Timestamp | None = None,
    unavailable: tuple[str, ...] = (),
) -> OnlineVector:
    """`rows`: requests normalized by the task's `request_frame`. `as_of`: the prediction time
    (default: the task's rule for each row). A value older than its view's TTL at that time is
    dropped, exactly as the point-in-time join that built the training set drops it (Feast's
    online read does not apply TTLs); a value stamped after that time is withheld
    (`stamped_after`). A task with a `request_row` takes the path the service takes
    (`online_records`), so the skew check compares what is served."""
    if as_of is None:
        as_of = spec.prediction_time(rows[spec.timestamp_column])
    now = epoch_array(as_of, len(rows))
    if domain.request_row is not None:
        return online_records(store, rows.to_dict(orient="records"), spec, domain, now, unavailable)
    plan = _plan(store, spec.feature_service)
    served, stamps_by_view = read_online(store, spec.feature_service, entity_key_rows(domain, rows))
    known_at, withheld, dropped = _time_rules(plan, stamps_by_view, now, unavailable)
    values = {
        feature: [
            None if gone else v
            for v, gone in zip(served[feature], dropped[read.view.name], strict=True)
        ]
        for read in plan.views
        for feature in read.features
    }
    request = domain.request_features(rows).reset_index(drop=True)
    table = pd.concat([pd.DataFrame(values), request], axis=1)
    table = table.loc[:, ~table.columns.duplicated(keep="last")]
    return OnlineVector(spec, known_at, withheld, features=feature_frame(table, spec))


def feature_age_seconds(
    vector: OnlineVector, now: pd.Timestamp | pd.Series
) -> list[dict[str, float | None]]:
    """Per row, the age of each feature view's value at `now` (one instant, or one per row);
    None where the store knows nothing. Negative: the store is ahead of that row's time."""
    n = len(vector)
    at = epoch_array(now, n)
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
