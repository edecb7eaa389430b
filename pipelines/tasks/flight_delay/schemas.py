"""The flight-delay service's request: a flight as known when it is scheduled."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.platform.lib.local_time import to_utc
from pipelines.tasks.flight_delay.source import read_table

# Codes the service accepts: the reference tables the graph ingests (the package's own data).
KNOWN_CARRIERS = frozenset(read_table("airlines")["carrier"].astype(str))
KNOWN_AIRPORTS = frozenset(read_table("airports")["faa"].astype(str))
ORIGINS = frozenset({"EWR", "JFK", "LGA"})  # the model knows departures from New York only
LOCAL_TZ = "America/New_York"


class Flight(BaseModel):
    """A flight as known when it is scheduled (nothing known only after departure)."""

    model_config = ConfigDict(extra="forbid")

    # The known codes are in the OpenAPI document too (enum), so clients and fuzzers see them.
    carrier: str = Field(
        min_length=2,
        max_length=2,
        examples=["UA"],
        json_schema_extra={"enum": sorted(KNOWN_CARRIERS)},
    )
    flight: int = Field(ge=1, le=9999, examples=[1545])
    tailnum: str | None = Field(default=None, max_length=8, examples=["N14228"])
    origin: str = Field(examples=["EWR"], json_schema_extra={"enum": sorted(ORIGINS)})
    dest: str = Field(examples=["IAH"], json_schema_extra={"enum": sorted(KNOWN_AIRPORTS)})
    sched_dep: datetime = Field(
        description="Scheduled departure; a time without offset is New York local time",
        examples=["2013-01-31T17:00:00-05:00"],
    )
    distance: float = Field(gt=0, le=6000, examples=[1400.0])

    @field_validator("carrier")
    @classmethod
    def _known_carrier(cls, value: str) -> str:
        if value not in KNOWN_CARRIERS:
            raise ValueError(f"unknown carrier code {value!r}")
        return value

    @field_validator("origin")
    @classmethod
    def _known_origin(cls, value: str) -> str:
        if value not in ORIGINS:
            raise ValueError(f"origin must be one of {sorted(ORIGINS)}, got {value!r}")
        return value

    @field_validator("dest")
    @classmethod
    def _known_dest(cls, value: str) -> str:
        if value not in KNOWN_AIRPORTS:
            raise ValueError(f"unknown airport code {value!r}")
        return value

    @field_validator("sched_dep")
    @classmethod
    def _exists_in_new_york(cls, value: datetime) -> datetime:
        return to_utc(value, LOCAL_TZ)  # a wall-clock time is New York local time

    def to_row(self) -> dict:
        """The row the task's request_frame reads (departure as UTC)."""
        return {**self.model_dump(exclude={"sched_dep"}), "sched_dep_ts": self.sched_dep}
