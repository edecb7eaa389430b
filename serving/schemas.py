"""Request and response models of the prediction service."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.tasks.flight_delay.source import read_table

# Codes the service accepts: the reference tables the graph ingests (the package's own data).
KNOWN_CARRIERS = frozenset(read_table("airlines")["carrier"].astype(str))
KNOWN_AIRPORTS = frozenset(read_table("airports")["faa"].astype(str))
ORIGINS = frozenset({"EWR", "JFK", "LGA"})  # the model knows departures from New York only
MAX_BATCH = 1000


class Flight(BaseModel):
    """A flight as known when it is scheduled (nothing known only after departure)."""

    model_config = ConfigDict(extra="forbid")

    carrier: str = Field(min_length=2, max_length=2, examples=["UA"])
    flight: int = Field(ge=1, le=9999, examples=[1545])
    tailnum: str | None = Field(default=None, max_length=8, examples=["N14228"])
    origin: str = Field(examples=["EWR"])
    dest: str = Field(examples=["IAH"])
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


class Prediction(BaseModel):
    delay_probability: float = Field(description="P(arrival more than 15 minutes late)")
    model_name: str
    model_version: str = Field(description="MLflow model version that answered")
    feature_age_seconds: dict[str, float | None] = Field(
        description="Per feature view, the age of the value used at prediction time; null if none"
    )
    unknown_tailnum: bool = Field(
        description="The plane is not in the feature store: plane features were missing"
    )


class Readiness(BaseModel):
    ready: bool
    model: str
    model_ok: bool
    feature_store_ok: bool
    feature_store_error: str | None = None
