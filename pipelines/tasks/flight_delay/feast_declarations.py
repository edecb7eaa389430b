"""Features of the flight-delay task: entities, feature views over the lake tables, and the
versioned FeatureService that training and serving both read.

Every view's timestamp is the moment its values became known; the leakage test checks that no
post-departure column (dep_delay, arr_delay, ...) of the *flight being predicted* is a feature.

The declarations are plain data and Feast's objects are built from them by
`feature_definitions()`: every process that loads the code location builds the task spec from the
served feature names, and importing Feast (it imports torch) costs 6-9 s there.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from pipelines.tasks.flight_delay.features import TODAY_COLUMNS, WEATHER_COLUMNS

TIMESTAMP = "event_timestamp"
# v2 added the destination's recent arrivals. A model trained on v1 still answers (it picks its
# own features, recorded with it, from v2's); v1 stays declared: the service its record names.
FEATURE_SERVICE = "flight_delay_v2"


@dataclass(frozen=True)
class EntityDecl:
    name: str
    join_key: str
    description: str


@dataclass(frozen=True)
class ViewDecl:
    """A feature view over one lake table."""

    name: str
    table: str  # the lake table it reads (its FileSource's name)
    entities: tuple[str, ...]  # entity names
    ttl: timedelta  # 0: never expires
    schema: tuple[tuple[str, str], ...]  # (feature, "float64" | "int64" | "string")
    description: str
    push_source: str | None = None  # also fed by a push source of this name

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.schema)


ENTITIES = (
    EntityDecl("origin_airport", "origin", "Departure airport (FAA code)"),
    EntityDecl("plane", "tailnum", "Aircraft tail number"),
    EntityDecl("carrier", "carrier", "Two-letter carrier code"),
    EntityDecl("route", "route", "ORIGIN-DEST"),
    EntityDecl("destination_airport", "dest", "Arrival airport (FAA code)"),
    EntityDecl("departure_hour", "dep_hour", "Local scheduled departure hour, YYYY-MM-DDTHH"),
)


def _floats(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((n, "float64") for n in names)


def _delay_stats_view(entity: EntityDecl) -> ViewDecl:
    prefix = entity.join_key
    schema: tuple[tuple[str, str], ...] = ()
    for window in (7, 28):
        schema += (
            (f"{prefix}_flights_{window}d", "int64"),
            (f"{prefix}_delay_rate_{window}d", "float64"),
            (f"{prefix}_mean_arr_delay_{window}d", "float64"),
        )
    schema += _floats(*(f"{prefix}_{name}" for name in TODAY_COLUMNS))
    return ViewDecl(
        name=f"{prefix}_delay_stats",
        table=f"{prefix}_delay_stats",
        entities=(entity.name,),
        ttl=timedelta(days=2),
        schema=schema,
        description=f"Trailing delay statistics of the {prefix} from labels known by local midnight, and its delays known so far that day",
    )


_ENTITY = {e.name: e for e in ENTITIES}

# Operational features must be fresh at request time: departures and landings are pushed into
# the online store as they happen (`flightline push-events`); the lake tables stay their batch
# source for training and the nightly materialization.
VIEWS = (
    ViewDecl(
        name="weather_hourly",
        table="weather_features",
        entities=("origin_airport",),
        ttl=timedelta(hours=3),
        schema=_floats(*(f"weather_{c}" for c in WEATHER_COLUMNS)),
        description="Hourly METAR observations at the origin, stamped at observation time",
    ),
    ViewDecl(
        name="plane_attributes",
        table="plane_features",
        entities=("plane",),
        ttl=timedelta(0),  # static attributes never expire
        schema=(
            *_floats("plane_year", "plane_seats", "plane_engines"),
            ("plane_manufacturer", "string"),
            ("plane_engine_type", "string"),
        ),
        description="FAA registry attributes of the aircraft",
    ),
    ViewDecl(
        name="scheduled_traffic",
        table="scheduled_traffic",
        entities=("origin_airport", "departure_hour"),
        ttl=timedelta(days=2),
        schema=(("origin_hour_scheduled", "int64"), ("origin_day_scheduled", "int64")),
        description="Scheduled departures at the origin in the flight's hour and day; published the day before",
    ),
    ViewDecl(
        name="origin_recent_departures",
        table="origin_recent_departures",
        entities=("origin_airport",),
        ttl=timedelta(hours=2),
        schema=_floats(
            "origin_dep_delay_mean_2h", "origin_dep_delayed_share_2h", "origin_departures_2h"
        ),
        description="Departure delays at the origin over the 2 hours before; stamped when each departure happened",
        push_source="departures_push",
    ),
    ViewDecl(
        name="aircraft_last_arrival",
        table="aircraft_last_arrival",
        entities=("plane",),
        ttl=timedelta(hours=24),
        schema=_floats(
            "tail_prev_arr_delay",
            "tail_prev_dep_delay",
            "tail_turnaround_slack_min",
            "tail_legs_today",
        ),
        description="The aircraft after its latest departure or landing: delays, turnaround "
        "slack before its next departure",
        push_source="arrivals_push",
    ),
    *(_delay_stats_view(_ENTITY[name]) for name in ("carrier", "route", "origin_airport")),
    ViewDecl(
        name="dest_recent_arrivals",
        table="dest_recent_arrivals",
        entities=("destination_airport",),
        # The state at the last landing there, for a day: with a 3 h TTL a third of the rows
        # found none (a destination lands a few New York flights a day) and the model lost most
        # of what the view adds (ROC AUC +0.003 instead of +0.005 on model_quality.py's split).
        ttl=timedelta(hours=24),
        schema=_floats("dest_arr_delay_mean_3h", "dest_arr_delayed_share_3h", "dest_arrivals_3h"),
        description="Arrival delays of New York flights at the destination over the 3 hours "
        "before; stamped when each landed",
        push_source="dest_arrivals_push",
    ),
)
_V1_VIEWS = tuple(view.name for view in VIEWS if view.name != "dest_recent_arrivals")

# Service name -> (its views in order, description).
SERVICES = {
    "flight_delay_v1": (
        _V1_VIEWS,
        "Flight delay features as known one hour before scheduled departure (v1)",
    ),
    FEATURE_SERVICE: (
        tuple(view.name for view in VIEWS),
        "v1 and the destination's arrival delays of the 3 hours before (v2)",
    ),
}

# Lake table -> the push source that feeds it.
PUSH_SOURCES = {view.table: view.push_source for view in VIEWS if view.push_source}


def served_features(service: str = FEATURE_SERVICE) -> tuple[str, ...]:
    """The features a FeatureService serves, in its order (declarations only: no Feast, no store)."""
    views = {view.name: view for view in VIEWS}
    return tuple(f for name in SERVICES[service][0] for f in views[name].features)


def feature_definitions(table_path: Callable[[str], str]) -> dict:
    """Every Feast object of the task by name; `table_path` says where each lake table lies (a
    path pattern DuckDB reads)."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.types import Float64, Int64, String

    dtypes = {"float64": Float64, "int64": Int64, "string": String}
    entities = {
        e.name: Entity(
            name=e.name,
            join_keys=[e.join_key],
            value_type=ValueType.STRING,
            description=e.description,
        )
        for e in ENTITIES
    }

    def source(view: ViewDecl):
        batch = FileSource(name=view.table, path=table_path(view.table), timestamp_field=TIMESTAMP)
        return PushSource(name=view.push_source, batch_source=batch) if view.push_source else batch

    views = {
        view.name: FeatureView(
            name=view.name,
            entities=[entities[name] for name in view.entities],
            ttl=view.ttl,
            schema=[Field(name=name, dtype=dtypes[dtype]) for name, dtype in view.schema],
            source=source(view),
            description=view.description,
        )
        for view in VIEWS
    }
    services = {
        name: FeatureService(
            name=name, features=[views[v] for v in view_names], description=description
        )
        for name, (view_names, description) in SERVICES.items()
    }
    return entities | views | services
