"""Features of the flight-delay task: entities, feature views over the lake tables, and the
versioned FeatureService that training and serving both read.

Every view's timestamp is the moment its values became known; the leakage test checks that no
post-departure column (dep_delay, arr_delay, ...) of the *flight being predicted* is a feature.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64, String

from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.settings import DataPaths
from pipelines.tasks.flight_delay.features import TODAY_COLUMNS, WEATHER_COLUMNS

TIMESTAMP = "event_timestamp"

origin_airport = Entity(
    name="origin_airport",
    join_keys=["origin"],
    value_type=ValueType.STRING,
    description="Departure airport (FAA code)",
)
plane = Entity(
    name="plane",
    join_keys=["tailnum"],
    value_type=ValueType.STRING,
    description="Aircraft tail number",
)
carrier = Entity(
    name="carrier",
    join_keys=["carrier"],
    value_type=ValueType.STRING,
    description="Two-letter carrier code",
)
route = Entity(
    name="route", join_keys=["route"], value_type=ValueType.STRING, description="ORIGIN-DEST"
)
departure_hour = Entity(
    name="departure_hour",
    join_keys=["dep_hour"],
    value_type=ValueType.STRING,
    description="Local scheduled departure hour, YYYY-MM-DDTHH",
)


ENTITIES = [origin_airport, plane, carrier, route, departure_hour]


def _source(lake: Lake, table: str) -> FileSource:
    return FileSource(name=table, path=lake.glob(table), timestamp_field=TIMESTAMP)


# Operational features must be fresh at request time: departures and landings are pushed into
# the online store as they happen (`flightline push-events`); the lake tables stay their batch
# source for training and the nightly materialization.
PUSH_SOURCES = {
    "origin_recent_departures": "departures_push",
    "aircraft_last_arrival": "arrivals_push",
}


def _push_source(lake: Lake, table: str) -> PushSource:
    return PushSource(name=PUSH_SOURCES[table], batch_source=_source(lake, table))


def _floats(*names: str) -> list[Field]:
    return [Field(name=n, dtype=Float64) for n in names]


def _trailing_stats(prefix: str) -> list[Field]:
    fields = []
    for window in (7, 28):
        fields += [
            Field(name=f"{prefix}_flights_{window}d", dtype=Int64),
            Field(name=f"{prefix}_delay_rate_{window}d", dtype=Float64),
            Field(name=f"{prefix}_mean_arr_delay_{window}d", dtype=Float64),
        ]
    return fields + _floats(*(f"{prefix}_{name}" for name in TODAY_COLUMNS))


def _delay_stats_view(lake: Lake, entity: Entity) -> FeatureView:
    prefix = entity.join_key
    return FeatureView(
        name=f"{prefix}_delay_stats",
        entities=[entity],
        ttl=timedelta(days=2),
        schema=_trailing_stats(prefix),
        source=_source(lake, f"{prefix}_delay_stats"),
        description=f"Trailing delay statistics of the {prefix} from labels known by local midnight, and its delays known so far that day",
    )


def feature_definitions(lake_root: str) -> dict:
    """Every Feast object of the task, with sources in the lake at `lake_root`, by name."""
    lake = Lake(lake_root)
    weather_hourly = FeatureView(
        name="weather_hourly",
        entities=[origin_airport],
        ttl=timedelta(hours=3),
        schema=_floats(*(f"weather_{c}" for c in WEATHER_COLUMNS)),
        source=_source(lake, "weather_features"),
        description="Hourly METAR observations at the origin, stamped at observation time",
    )

    plane_attributes = FeatureView(
        name="plane_attributes",
        entities=[plane],
        ttl=timedelta(0),  # static attributes never expire
        schema=[
            *_floats("plane_year", "plane_seats", "plane_engines"),
            Field(name="plane_manufacturer", dtype=String),
            Field(name="plane_engine_type", dtype=String),
        ],
        source=_source(lake, "plane_features"),
        description="FAA registry attributes of the aircraft",
    )

    scheduled_traffic = FeatureView(
        name="scheduled_traffic",
        entities=[origin_airport, departure_hour],
        ttl=timedelta(days=2),
        schema=[
            Field(name="origin_hour_scheduled", dtype=Int64),
            Field(name="origin_day_scheduled", dtype=Int64),
        ],
        source=_source(lake, "scheduled_traffic"),
        description="Scheduled departures at the origin in the flight's hour and day; published the day before",
    )

    origin_recent_departures = FeatureView(
        name="origin_recent_departures",
        entities=[origin_airport],
        ttl=timedelta(hours=2),
        schema=_floats(
            "origin_dep_delay_mean_2h", "origin_dep_delayed_share_2h", "origin_departures_2h"
        ),
        source=_push_source(lake, "origin_recent_departures"),
        description="Departure delays at the origin over the 2 hours before; stamped when each departure happened",
    )

    aircraft_last_arrival = FeatureView(
        name="aircraft_last_arrival",
        entities=[plane],
        ttl=timedelta(hours=24),
        schema=_floats(
            "tail_prev_arr_delay",
            "tail_prev_dep_delay",
            "tail_turnaround_slack_min",
            "tail_legs_today",
        ),
        source=_push_source(lake, "aircraft_last_arrival"),
        description="The aircraft after its latest departure or landing: delays, turnaround slack before its next departure",
    )

    carrier_delay_stats, route_delay_stats, origin_delay_stats = (
        _delay_stats_view(lake, entity) for entity in (carrier, route, origin_airport)
    )

    flight_delay_v1 = FeatureService(
        name="flight_delay_v1",
        features=[
            weather_hourly,
            plane_attributes,
            scheduled_traffic,
            origin_recent_departures,
            aircraft_last_arrival,
            carrier_delay_stats,
            route_delay_stats,
            origin_delay_stats,
        ],
        description="Flight delay features as known one hour before scheduled departure (v1)",
    )
    return {e.name: e for e in ENTITIES} | {
        "weather_hourly": weather_hourly,
        "plane_attributes": plane_attributes,
        "scheduled_traffic": scheduled_traffic,
        "origin_recent_departures": origin_recent_departures,
        "aircraft_last_arrival": aircraft_last_arrival,
        "carrier_delay_stats": carrier_delay_stats,
        "route_delay_stats": route_delay_stats,
        "origin_delay_stats": origin_delay_stats,
        "flight_delay_v1": flight_delay_v1,
    }


# Module-level objects for the Feast CLI, which scans this file; the platform calls
# feature_definitions() with its configured lake root instead.
globals().update(feature_definitions(DataPaths.from_env().lake))
FEATURE_SERVICE = "flight_delay_v1"
