"""Writes never roll the online store back: the newest event time per entity wins."""

import pandas as pd
from feast.data_source import PushMode

from pipelines.platform.components.task import load_task
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.tasks.flight_delay import features as F
from pipelines.tasks.flight_delay.feast_declarations import PUSH_SOURCES
from pipelines.tasks.flight_delay.flights import flight_timeline
from tests.conftest import source_day
from tests.feast_scratch import task_store

TASK = load_task("flight_delay")

DAY = "2013-01-05"


def _arrival(tailnum: str, at: str, delay: float) -> dict:
    row = {column: float("nan") for column in F.aircraft_last_arrival(TIMELINE).columns}
    return row | {
        "tailnum": tailnum,
        F.EVENT_TIMESTAMP: pd.Timestamp(at, tz="UTC"),
        "tail_prev_arr_delay": delay,
    }


TIMELINE = flight_timeline(source_day("flights", DAY).assign(**{PARTITION_COLUMN: DAY}))


def _served(store, tailnum: str):
    row = store.get_online_features(
        features=["aircraft_last_arrival:tail_prev_arr_delay"], entity_rows=[{"tailnum": tailnum}]
    ).to_dict()
    return row["tail_prev_arr_delay"][0]


def test_an_older_push_does_not_overwrite_a_newer_value(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write_partitions(
        TASK.table("aircraft_last_arrival"), F.aircraft_last_arrival(TIMELINE), [DAY]
    )
    store = task_store(tmp_path, lake, TASK, "writes")
    source = PUSH_SOURCES["aircraft_last_arrival"]

    def push(*rows):
        frame = pd.DataFrame(list(rows)).drop(columns=[PARTITION_COLUMN])
        frame[F.EVENT_TIMESTAMP] = frame[F.EVENT_TIMESTAMP].astype("datetime64[us, UTC]")
        store.push(source, frame, to=PushMode.ONLINE)

    push(_arrival("N1", "2013-01-05 12:00", 10.0))
    push(_arrival("N1", "2013-01-05 11:00", 99.0))  # a late, older event
    assert _served(store, "N1") == 10.0
    push(_arrival("N1", "2013-01-05 13:00", 20.0))  # a newer one still lands
    assert _served(store, "N1") == 20.0
    # within one batch the newest row wins, whatever its position
    push(_arrival("N2", "2013-01-05 14:00", 5.0), _arrival("N2", "2013-01-05 09:00", 77.0))
    assert _served(store, "N2") == 5.0
