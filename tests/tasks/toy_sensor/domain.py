"""A toy second task, in an hourly grain, that lives only in the tests: machines report a
temperature and a load every hour; at hour t, will the machine run hot (over 75) at t + 2 h?

Which facts become known when: a reading at hour t is known at t; the label of the prediction
made at t is known at t + 2 h (when that reading lands), so the example belongs to the partition
of t + 2 h and its features may only use readings up to t.
"""

from collections.abc import Callable
from datetime import date, timedelta
from datetime import datetime as dt
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PydanticField

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.landing import land_file
from pipelines.platform.lib.task import TaskDomain
from pipelines.platform.lib.validation import ColumnSpec, RangeRule, TableContract

MACHINES = ("m1", "m2", "m3", "m4")
FIRST_HOUR = pd.Timestamp("2024-03-01T00:00", tz="UTC")
DAYS = 14
HORIZON = pd.Timedelta(hours=2)
HOT = 75.0
HOUR_KEY = "%Y-%m-%d-%H:00"


@cache
def readings() -> pd.DataFrame:
    """Two weeks of hourly readings: a persistent (AR(1)) temperature driven by the load."""
    rng = np.random.default_rng(3)
    hours = pd.date_range(FIRST_HOUR, periods=DAYS * 24, freq="h")
    frames = []
    for i, machine in enumerate(MACHINES):
        load = np.clip(0.5 + 0.3 * np.sin(np.arange(len(hours)) * 2 * np.pi / 24 + i), 0, 1)
        load = np.clip(load + rng.normal(0, 0.1, len(hours)), 0, 1)
        temperature = np.empty(len(hours))
        temperature[0] = 65
        for h in range(1, len(hours)):
            temperature[h] = (
                0.8 * temperature[h - 1] + 0.2 * (55 + 30 * load[h]) + rng.normal(0, 2.5)
            )
        frames.append(
            pd.DataFrame(
                {
                    "machine": machine,
                    "ts": hours.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "temperature": temperature.round(2),
                    "load": load.round(3),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def hour_key(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, utc=True).dt.strftime(HOUR_KEY)


READINGS = TableContract(
    table="readings",
    columns=[
        ColumnSpec("machine", "str", key=True),
        ColumnSpec("ts", "str", key=True),
        ColumnSpec("temperature", "number"),
        ColumnSpec("load", "number"),
    ],
    unique_together=["machine", "ts"],
    ranges=[RangeRule("temperature", -20, 150), RangeRule("load", 0, 1)],
    allowed_values={"machine": list(MACHINES)},
    partition_of=lambda frame: hour_key(frame["ts"]),
)


def replay(landing_dir: Path | str, start: date, end: date) -> list:
    """One file per hour of [start, end] under <landing>/readings/<YYYY-MM-DD-HH:00>.csv."""
    frame = readings()
    keys = hour_key(frame["ts"])
    days = pd.to_datetime(frame["ts"], utc=True).dt.date
    wanted = (days >= start) & (days <= end)
    landed = []
    for key, rows in frame[wanted].groupby(keys[wanted], sort=True):
        content = rows.to_csv(index=False).encode()
        landed.append(
            land_file(landing_dir, "readings", key, content, rows=len(rows), unless_identical=False)
        )
    return landed


def reading_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Each reading, stamped when it was taken."""
    return pd.DataFrame(
        {
            "machine": raw["machine"].astype(str),
            "event_timestamp": pd.to_datetime(raw["ts"], utc=True).astype("datetime64[us, UTC]"),
            "temperature": raw["temperature"].astype("float64"),
            "load": raw["load"].astype("float64"),
            PARTITION_COLUMN: raw[PARTITION_COLUMN],
        }
    )


def examples(raw: pd.DataFrame, partition_keys: list[str]) -> pd.DataFrame:
    """The predictions whose label landed in the run's hours: made at t, labelled by the
    reading at t + 2 h (the raw window brings the readings of t)."""
    at = pd.to_datetime(raw["ts"], utc=True)
    labelled = raw.assign(labelled_at=at).loc[raw[PARTITION_COLUMN].isin(partition_keys)]
    made_at = labelled["labelled_at"] - HORIZON
    return pd.DataFrame(
        {
            "example_id": labelled["machine"] + "@" + made_at.dt.strftime("%Y-%m-%dT%H"),
            "machine": labelled["machine"].astype(str),
            "predicted_at": made_at.astype("datetime64[us, UTC]"),
            "label": (labelled["temperature"] > HOT).astype("float64"),
            PARTITION_COLUMN: labelled[PARTITION_COLUMN],
        }
    ).reset_index(drop=True)


def request_frame(rows: pd.DataFrame) -> pd.DataFrame:
    frame = rows.loc[:, ["machine", "predicted_at"]].copy()
    frame["machine"] = frame["machine"].astype(str)
    frame["predicted_at"] = pd.to_datetime(frame["predicted_at"], utc=True)
    return frame.reset_index(drop=True)


def entity_keys(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"machine": rows["machine"].astype(str)}).reset_index(drop=True)


def request_features(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "machine": rows["machine"].astype(str),
            "hour_of_day": rows["predicted_at"].dt.hour.astype("int64"),
        }
    ).reset_index(drop=True)


machine = Entity(name="toy_machine", join_keys=["machine"], value_type=ValueType.STRING)


def feature_definitions(table_path: Callable[[str], str]) -> dict:
    latest = FeatureView(
        name="toy_machine_latest",
        entities=[machine],
        ttl=timedelta(hours=3),
        schema=[Field(name="temperature", dtype=Float64), Field(name="load", dtype=Float64)],
        source=FileSource(
            name="toy_reading_features",
            path=table_path("reading_features"),
            timestamp_field="event_timestamp",
        ),
    )
    service = FeatureService(name="toy_sensor_v1", features=[latest])
    return {o.name: o for o in (machine, latest, service)}


class Reading(BaseModel):
    """A machine, and when the prediction is made."""

    model_config = ConfigDict(extra="forbid")

    machine: str = PydanticField(examples=["m1"])
    predicted_at: dt

    @field_validator("machine")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in MACHINES:
            raise ValueError(f"unknown machine {value!r}")
        return value

    def to_row(self) -> dict:
        return {"machine": self.machine, "predicted_at": pd.Timestamp(self.predicted_at)}


DOMAIN = TaskDomain(
    request_frame=request_frame,
    entity_keys=entity_keys,
    request_features=request_features,
    feature_definitions=feature_definitions,
    replay=replay,
    warm_up_request={"machine": "m1", "predicted_at": FIRST_HOUR + pd.Timedelta(days=10)},
)
