"""Replay 2013 day by day: write one file per day and table into the landing folder."""

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from pipelines.platform.lib.landing import LandedFile, land_file
from pipelines.tasks.flight_delay.source import DAILY_TABLES, day_key, read_table

FIRST_DAY = date(2013, 1, 1)
LAST_DAY = date(2013, 12, 31)


def days_between(start: date, end: date) -> Iterator[date]:
    if start > end:
        raise ValueError(f"replay start {start} is after its end {end}")
    if start < FIRST_DAY or end > LAST_DAY:
        raise ValueError(f"the replayed year is {FIRST_DAY}..{LAST_DAY}; got {start}..{end}")
    current = start
    while current <= end:
        yield current
        current += timedelta(days=1)


def replay_days(landing_dir: Path | str, start: date, end: date) -> list[LandedFile]:
    """Drop the day files of [start, end] into the landing folder (a local folder or an
    s3:// prefix), as if they had just arrived.

    A file already there is replaced only when its content differs, so a replay is idempotent
    and does not look like a correction to whoever watches the folder.
    """
    wanted = {d.isoformat() for d in days_between(start, end)}
    landed = []
    for table in DAILY_TABLES:
        frame = read_table(table)
        days = day_key(frame)
        for day, rows in frame[days.isin(wanted)].groupby(days[days.isin(wanted)], sort=True):
            content = rows.to_csv(index=False, na_rep="NA").encode()
            # atomic, and left alone when identical: a watcher never sees half a file
            landed.append(land_file(landing_dir, table, day, content, rows=len(rows)))
    return landed
