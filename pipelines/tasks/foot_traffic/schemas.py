"""The foot-traffic service's request: a sensor, and when the prediction is made."""

from datetime import datetime

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.platform.lib.local_time import to_utc
from pipelines.tasks.foot_traffic.source import LOCAL_TZ, SENSORS


class SensorHour(BaseModel):
    """Will the hour starting two hours after predicted_at be 20% busier at this sensor than the
    same hour a week earlier?"""

    model_config = ConfigDict(extra="forbid")

    sensor: str = Field(examples=["Southern Cross Station"], description=", ".join(SENSORS))
    predicted_at: datetime = Field(
        description="When the prediction is made; a time without offset is Melbourne local time",
        examples=["2015-04-16T00:00:00+10:00"],
    )

    @field_validator("sensor")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SENSORS:
            raise ValueError(f"unknown sensor {value!r}; sensors: {', '.join(SENSORS)}")
        return value

    @field_validator("predicted_at")
    @classmethod
    def _exists_in_melbourne(cls, value: datetime) -> datetime:
        return to_utc(value, LOCAL_TZ)  # a wall-clock time is Melbourne local time

    def to_row(self) -> dict:
        return {"sensor": self.sensor, "predicted_at": pd.Timestamp(self.predicted_at)}
