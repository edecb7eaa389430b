"""The wind-power service's request: a turbine, and when the prediction is made."""

from datetime import datetime

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.platform.lib.local_time import to_utc
from pipelines.tasks.wind_power.source import LOCAL_TZ, TURBINES


class TurbineNow(BaseModel):
    """Will this turbine's mean output over the hour starting an hour after predicted_at be at
    least 205 kW above its mean output over the hour before predicted_at?"""

    model_config = ConfigDict(extra="forbid")

    turbine: str = Field(examples=["R80711"], description=", ".join(TURBINES))
    predicted_at: datetime = Field(
        description="When the prediction is made; a time without offset is Paris local time",
        examples=["2014-10-16T09:00:00+02:00"],
    )

    @field_validator("turbine")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in TURBINES:
            raise ValueError(f"unknown turbine {value!r}; turbines: {', '.join(TURBINES)}")
        return value

    @field_validator("predicted_at")
    @classmethod
    def _exists_in_paris(cls, value: datetime) -> datetime:
        return to_utc(value, LOCAL_TZ)  # a wall-clock time is Paris local time

    def to_row(self) -> dict:
        return {"turbine": self.turbine, "predicted_at": pd.Timestamp(self.predicted_at)}
