"""Feature tables (stamped with when each value became known), Feast registration and the online store."""

import dagster as dg
import pandas as pd

from pipelines.defs.validation.guard import assert_partitions_validated
from pipelines.platform.lib.feature_store import apply_definitions, materialize_up_to
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.partitions import daily_partitions, partition_keys, single_run_backfill
from pipelines.platform.resources import FeastResource
from pipelines.tasks.flight_delay import features as F
from pipelines.tasks.flight_delay.flights import day_start_utc
from pipelines.tasks.flight_delay.flights import flight_timeline as build_timeline

FEATURE_GROUP = "features"
PARTITIONED = {
    "partitions_def": daily_partitions,
    "backfill_policy": single_run_backfill,
    "group_name": FEATURE_GROUP,
}
# Trailing statistics for day D read the 28 days before it; days not in the lake yet (the start
# of a replay) are skipped and the statistics say how many flights they rest on.
TRAILING_WINDOW = dg.TimeWindowPartitionMapping(
    start_offset=-28, end_offset=0, allow_nonexistent_upstream_partitions=True
)


def _summary(frame: pd.DataFrame, key: str) -> dict:
    return {
        "entities": int(frame[key].nunique()) if len(frame) else 0,
        "first_event": str(frame[F.EVENT_TIMESTAMP].min()) if len(frame) else "-",
        "last_event": str(frame[F.EVENT_TIMESTAMP].max()) if len(frame) else "-",
    }


@dg.asset(**PARTITIONED, kinds={"pandas"}, code_version="1")
def flight_timeline(context: dg.AssetExecutionContext, raw_flights: pd.DataFrame) -> pd.DataFrame:
    """Each flight with typed keys, the times its departure and arrival became known, and its label."""
    assert_partitions_validated(context, dg.AssetKey("raw_flights"), partition_keys(context))
    timeline = build_timeline(raw_flights)
    context.add_output_metadata(
        {
            "flights": len(timeline),
            "cancelled": int(timeline["cancelled"].sum()),
            "diverted": int(timeline["diverted"].sum()),
            "delay_rate": float(timeline["label"].mean())
            if timeline["label"].notna().any()
            else float("nan"),
        }
    )
    return timeline


@dg.asset(**PARTITIONED, kinds={"pandas", "feast"}, code_version="1")
def weather_features(context: dg.AssetExecutionContext, raw_weather: pd.DataFrame) -> pd.DataFrame:
    """Hourly weather per origin airport, stamped at observation time."""
    assert_partitions_validated(context, dg.AssetKey("raw_weather"), partition_keys(context))
    table = F.weather_features(raw_weather)
    context.add_output_metadata(_summary(table, "origin"))
    return table


@dg.asset(group_name=FEATURE_GROUP, kinds={"pandas", "feast"}, code_version="1")
def plane_features(context: dg.AssetExecutionContext, planes: pd.DataFrame) -> pd.DataFrame:
    """Static aircraft attributes by tail number."""
    table = F.plane_features(planes)
    context.add_output_metadata({"planes": len(table)})
    return table


def _timeline_feature_table(name: str, build, entity: str, description: str) -> dg.AssetsDefinition:
    """A feature table computed from the flight timeline of the same days."""

    @dg.asset(
        name=name,
        **PARTITIONED,
        kinds={"pandas", "feast"},
        code_version="1",
        description=description,
    )
    def _table(context: dg.AssetExecutionContext, flight_timeline: pd.DataFrame) -> pd.DataFrame:
        table = build(flight_timeline)
        context.add_output_metadata(_summary(table, entity))
        return table

    return _table


scheduled_traffic = _timeline_feature_table(
    "scheduled_traffic",
    F.scheduled_traffic,
    "origin",
    "Scheduled departures per origin and hour, known from the day before.",
)
origin_recent_departures = _timeline_feature_table(
    "origin_recent_departures",
    F.origin_recent_departures,
    "origin",
    "Fresh operational feature: departure delays at the origin over the 2 hours before, stamped at each departure.",
)
aircraft_last_arrival = _timeline_feature_table(
    "aircraft_last_arrival",
    F.aircraft_last_arrival,
    "tailnum",
    "Fresh operational feature: each aircraft's previous leg, stamped when it landed.",
)


DELAY_STATS = {
    "carrier_delay_stats": "carrier",
    "route_delay_stats": "route",
    "origin_delay_stats": "origin",
}


@dg.multi_asset(
    outs={
        name: dg.AssetOut(kinds={"pandas", "feast"}, code_version="1", group_name=FEATURE_GROUP)
        for name in DELAY_STATS
    },
    ins={
        "history": dg.AssetIn(
            "flight_timeline",
            partition_mapping=TRAILING_WINDOW,
            metadata={"allow_missing_partitions": True},
        ),
    },
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
)
def trailing_delay_stats(context: dg.AssetExecutionContext, history: pd.DataFrame):
    """Trailing 7- and 28-day delay statistics per carrier, route and origin, from known labels only."""
    days = partition_keys(context)
    present = set(history[PARTITION_COLUMN].unique()) if len(history) else set()
    if not set(days) <= present:
        raise dg.Failure(
            f"flight_timeline is missing for {sorted(set(days) - present)}: materialize it first"
        )
    window_days = sorted(present - set(days))
    context.log.info(f"trailing window rests on {len(window_days)} earlier day(s) in the lake")
    for name, entity in DELAY_STATS.items():
        table = F.trailing_delay_stats(history, days, entity, entity)
        yield dg.Output(
            table,
            output_name=name,
            metadata={**_summary(table, entity), "history_days": len(window_days)},
        )


FEATURE_TABLES = [
    weather_features,
    plane_features,
    scheduled_traffic,
    origin_recent_departures,
    aircraft_last_arrival,
    *[dg.AssetKey(n) for n in DELAY_STATS],
]


@dg.asset(group_name=FEATURE_GROUP, kinds={"feast"}, code_version="1", deps=[plane_features])
def feast_definitions(
    context: dg.AssetExecutionContext, feast: FeastResource
) -> dg.MaterializeResult:
    """Entities, feature views and the versioned FeatureService registered in Feast's registry."""
    registered = apply_definitions(feast.store(), feast.lake_root)
    return dg.MaterializeResult(
        metadata={
            **{kind: dg.MetadataValue.json(names) for kind, names in registered.items()},
            "registry": feast.registry_path,
        }
    )


@dg.asset(
    **PARTITIONED,
    kinds={"feast", "sqlite"},
    code_version="1",
    deps=[feast_definitions, *FEATURE_TABLES],
)
def online_features(
    context: dg.AssetExecutionContext, feast: FeastResource
) -> dg.MaterializeResult:
    """Latest feature values in the online store, materialized incrementally up to the run's last day."""
    days = partition_keys(context)
    end = day_start_utc(pd.Series([max(days)])).iloc[0] + pd.Timedelta(days=1)
    result = materialize_up_to(feast.store(), end.to_pydatetime())
    return dg.MaterializeResult(
        metadata={
            "materialized_up_to": str(end),
            "views_materialized": dg.MetadataValue.json(result.materialized_views),
            "views_already_fresher": dg.MetadataValue.json(result.skipped_views),
            "seconds": round(result.seconds, 2),
            "online_store": feast.location.online_store,
        }
    )
