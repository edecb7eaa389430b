"""The live path's perturbation check, shared by the real tasks' tests (issue 24): two worlds
that agree on every fact known by T; in each, the online store is fed event by event by the
platform's `LiveFeed` and every request at or before T is served at its own prediction time.
Served vectors, flags and answers must be identical between the worlds and equal to Feast's
point-in-time join of the same batch tables (0 mismatches)."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.platform.lib.feature_store import historical_features
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.live import LiveFeed, compute_tables
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.online import compare_vectors
from pipelines.platform.lib.predictor import ModelInfo, Predictor
from tests.feast_scratch import task_store


def dict_reader(raw: dict[str, pd.DataFrame]):
    """(landing table, day) -> that day's rows of `raw` (tables with their partition column)."""

    def read(table: str, day: str):
        frame = raw.get(table)
        if frame is None:
            return None
        rows = frame.loc[frame[PARTITION_COLUMN].astype(str) == day]
        return rows.reset_index(drop=True) if len(rows) else None

    return read


class ScoreModel:
    """A real (if small) model: logistic weights over the numeric features, fixed by a seed, so
    that an answer differs whenever a served value does."""

    def __init__(self, spec, seed: int = 0) -> None:
        self.numeric = list(spec.numeric_features)
        self.weights = np.random.default_rng(seed).normal(0, 0.01, len(self.numeric))

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        x = features[self.numeric].to_numpy("float64")
        return 1 / (1 + np.exp(-np.nan_to_num(x, nan=-1.0) @ self.weights))


@dataclass
class WorldRun:
    served: pd.DataFrame  # the model input of each request, as served
    joined: pd.DataFrame  # the point-in-time join for the same rows
    answers: list[dict]


STEP = pd.Timedelta(minutes=10)


def scratch_store(task, read, days, folder):
    """A Feast store of the test's own whose offline side holds the batch tables of `days`
    (what the join reads); its online store starts empty."""
    lake = Lake(str(folder / "lake"))
    partitioned = {f"raw_{t.name}" for t in task.definition.landing_tables}
    for table in task.definition.feature_tables:
        if any(i.table in partitioned for i in table.table_inputs()):
            partitioned.add(table.name)
    for name, frame in compute_tables(task, read, days).items():
        if not any(t.name == name and t.feast_source for t in task.definition.feature_tables):
            continue
        if name in partitioned:
            lake.write_partitions(task.table(name), frame, sorted(frame[PARTITION_COLUMN].unique()))
        else:
            lake.write(task.table(name), frame)
    return task_store(folder, lake, task, "live")


def run_world(task, raw, days, requests, t, folder, step=STEP) -> WorldRun:
    """Batch tables into a scratch lake (the join's side); an empty online store fed by the live
    path up to each request's prediction time, in steps of at most `step`."""
    spec, domain = task.spec, task.domain
    read = dict_reader(raw)
    store = scratch_store(task, read, days, folder)
    feed = LiveFeed(task, store, read)
    predictor = Predictor(
        spec,
        domain,
        store,
        ScoreModel(spec),
        ModelInfo(task.name, "1", f"{task.name}:test"),
        flags=dict(task.definition.serving.flags),
    )
    rows = domain.request_frame(requests)
    as_of = spec.prediction_time(rows[spec.timestamp_column]).reset_index(drop=True)
    assert (as_of <= t).all()
    order = np.argsort(as_of.to_numpy(), kind="stable")
    first = as_of.min()
    feed.advance_to(first - step)
    served, answers = [None] * len(rows), [None] * len(rows)
    records = requests.reset_index(drop=True).to_dict(orient="records")
    for i in order:
        while feed.clock < as_of[i]:  # event by event: never more than `step` at once
            feed.advance_to(min(feed.clock + step, as_of[i]))
        served[i] = predictor.lookup([records[i]])[0]
        answers[i] = predictor.predict([records[i]])[0]
    feed.advance_to(t)  # the store reaches T, as the acceptance asks, and stays consistent
    served_frame = feature_frame(
        pd.DataFrame([s["features"] for s in served], columns=list(spec.features)), spec
    )
    entities = domain.entity_keys(rows).reset_index(drop=True)
    entities["event_timestamp"] = as_of.astype("datetime64[us, UTC]")
    joined = historical_features(store, entities, spec.feature_service)
    offline = pd.concat([joined, domain.request_features(rows).reset_index(drop=True)], axis=1)
    offline = feature_frame(offline.loc[:, ~offline.columns.duplicated(keep="last")], spec)
    return WorldRun(served_frame, offline, answers)


def assert_live_equals_join(real: WorldRun, changed: WorldRun) -> None:
    assert compare_vectors(real.served, real.joined) == {}
    assert compare_vectors(real.served, changed.served) == {}
    pd.testing.assert_frame_equal(real.served, changed.served)
    strip = ("feature_age_seconds",)
    a = [{k: v for k, v in x.items() if k not in strip} for x in real.answers]
    b = [{k: v for k, v in x.items() if k not in strip} for x in changed.answers]
    assert a == b
    assert all(x["point_in_time"] and not x["withheld_views"] for x in real.answers)
    # the served vectors carry real values, not a store that knew nothing
    assert real.served.notna().mean().mean() > 0.6
