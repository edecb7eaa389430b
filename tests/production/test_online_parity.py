"""The same feature tables materialized into Redis and into SQLite serve the same values (and the
same event timestamps) for the same entities."""

import secrets

import pandas as pd

from pipelines.platform.components.task import load_task
from pipelines.platform.lib.feature_store import (
    FeastLocation,
    apply_definitions,
    materialize_up_to,
    open_store,
)
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.online import _plan, read_online
from pipelines.platform.lib.settings import PROJECT_ROOT
from pipelines.tasks.flight_delay.domain import entity_keys, flights_frame
from pipelines.tasks.flight_delay.flights import day_start_utc, flight_timeline
from pipelines.tasks.flight_delay.source import day_key, read_table
from tests.pipeline_fixture import DAYS

TASK = load_task("flight_delay")


def test_redis_serves_the_values_sqlite_serves(prod_built, profile, tmp_path, monkeypatch):
    paths = prod_built[0]
    for name, value in profile.object_store.items():  # the built lake lives in the bucket
        monkeypatch.setenv(name, value)
    end = (day_start_utc(pd.Series([DAYS[-1]])).iloc[0] + pd.Timedelta(days=1)).to_pydatetime()
    # Its own project: Redis keys carry the project, so the pipeline's keys are left alone.
    project = f"parity_{secrets.token_hex(3)}"
    stores = {}
    for name, redis_url in (("sqlite", None), ("redis", profile.redis_url)):
        location = FeastLocation(
            project,
            str(tmp_path / name / "registry.db"),
            str(tmp_path / name / "online.db"),
            paths.lake,
            str(PROJECT_ROOT / "feature_repo"),
            redis_url,
        )
        stores[name] = open_store(location)
        apply_definitions(stores[name], TASK.feast_objects(paths.lake), TASK.name)
        materialize_up_to(stores[name], end, TASK.feature_view_names())

    flights = read_table("flights")
    flights = flights[day_key(flights).isin(DAYS[-2:])]
    timeline = flight_timeline(flights.assign(**{PARTITION_COLUMN: day_key(flights)}))
    keys = entity_keys(flights_frame(timeline))
    keys = {c: keys[c].tolist() for c in keys.columns}
    spec = TASK.spec
    served = {
        name: store.get_online_features(
            features=store.get_feature_service(spec.feature_service), entity_rows=keys
        ).to_dict(include_event_timestamps=True)
        for name, store in stores.items()
    }
    assert len(keys["origin"]) > 1000
    assert served["redis"].keys() == served["sqlite"].keys()
    known = 0
    for column, values in served["sqlite"].items():
        assert served["redis"][column] == values, column
        known += sum(v is not None for v in values)
    assert known > len(keys["origin"]) * 5  # most entities have values: not two empty stores

    # The service's own read (straight from each online store, the same values), repeated as a
    # service repeats it: nothing of one read leaks into the next (Feast's Redis store appends to
    # the feature list it is given).
    names = [
        f"{p.name}__{f.name}"
        for p in stores["sqlite"].get_feature_service(spec.feature_service).feature_view_projections
        for f in p.features
    ]
    for name, store in stores.items():
        before = [read.features for read in _plan(store, spec.feature_service).views]
        for _ in range(3):
            values, _ = read_online(store, spec.feature_service, keys)
        assert [read.features for read in _plan(store, spec.feature_service).views] == before
        assert sorted(values) == sorted(n.split("__", 1)[1] for n in names), name
        for column in values:
            assert values[column] == served["sqlite"][column], (name, column)
