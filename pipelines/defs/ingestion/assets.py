"""Raw tables: day files from the landing folder, and the reference tables of the source package."""

import dagster as dg
import pandas as pd

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.landing import LandingError
from pipelines.platform.partitions import daily_partitions, partition_keys, single_run_backfill
from pipelines.platform.resources import LandingZone
from pipelines.tasks.flight_delay.source import read_table


def _ingest_days(
    context: dg.AssetExecutionContext, landing: LandingZone, table: str
) -> pd.DataFrame:
    """Read every day file of the run as it landed; a bad file fails the run with its reason."""
    frames, files, errors = [], [], []
    for day in partition_keys(context):
        try:
            landed = landing.read_day(table, day)
        except LandingError as exc:
            errors.append(str(exc))
            continue
        archived = landing.archive(landed)
        frames.append(landed.frame.assign(**{PARTITION_COLUMN: day}))
        files.append(
            {
                "day": day,
                "file": str(landed.path),
                "rows": len(landed.frame),
                "sha256": landed.sha256[:12],
                "archived_as": archived,
            }
        )
    if errors:
        raise dg.Failure(
            description=f"{len(errors)} {table} day file(s) cannot be ingested:\n"
            + "\n".join(errors),
            metadata={"errors": dg.MetadataValue.json(errors)},
        )
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    shown = files if len(files) <= 31 else [*files[:15], *files[-15:]]
    context.add_output_metadata(
        {
            "days": len(files),
            "landed_files": dg.MetadataValue.md(pd.DataFrame(shown).to_markdown(index=False)),
            "columns": dg.MetadataValue.json({c: str(t) for c, t in frame.dtypes.items()}),
        }
    )
    return frame


RAW_DAILY = {
    "partitions_def": daily_partitions,
    "backfill_policy": single_run_backfill,
    "group_name": "ingestion",
    "kinds": {"pandas", "parquet"},
    "code_version": "1",
}


@dg.asset(**RAW_DAILY)
def raw_flights(context: dg.AssetExecutionContext, landing: LandingZone) -> pd.DataFrame:
    """Flights as they landed, one day file per partition; types are checked, not coerced."""
    return _ingest_days(context, landing, "flights")


@dg.asset(**RAW_DAILY)
def raw_weather(context: dg.AssetExecutionContext, landing: LandingZone) -> pd.DataFrame:
    """Hourly weather at EWR, JFK and LGA as it landed, one day file per partition."""
    return _ingest_days(context, landing, "weather")


def _reference_asset(name: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name="ingestion",
        kinds={"pandas", "parquet"},
        code_version="1",
        description=description,
    )
    def _reference(context: dg.AssetExecutionContext) -> pd.DataFrame:
        frame = read_table(name).copy()
        context.add_output_metadata(
            {"preview": dg.MetadataValue.md(frame.head(5).to_markdown(index=False))}
        )
        return frame

    return _reference


planes = _reference_asset("planes", "FAA registry of the aircraft flying from New York in 2013.")
airports = _reference_asset("airports", "Airport names, locations and time zones.")
airlines = _reference_asset("airlines", "Carrier codes and names.")
