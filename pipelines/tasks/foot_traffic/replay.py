"""Replay 2015-2016 day by day: one file of counts per Melbourne day into the landing folder (the
counts arrive as a daily export; each row still says which hour it counts)."""

from datetime import date
from pathlib import Path

from pipelines.platform.lib.landing import LandedFile, land_file
from pipelines.tasks.foot_traffic.source import day_key, read_counts

FIRST_DAY = date(2015, 1, 1)
LAST_DAY = date(2016, 12, 31)


def replay_days(landing_dir: Path | str, start: date, end: date) -> list[LandedFile]:
    """Drop the day files of [start, end] under <landing>/counts/<YYYY-MM-DD>.csv, as if each had
    just arrived; a file already there is rewritten only if its content differs."""
    if start > end:
        raise ValueError(f"replay start {start} is after its end {end}")
    if start < FIRST_DAY or end > LAST_DAY:
        raise ValueError(f"the counts cover {FIRST_DAY}..{LAST_DAY}; got {start}..{end}")
    frame = read_counts()
    days = day_key(frame["date_time"])
    wanted = days.between(start.isoformat(), end.isoformat())
    landed = []
    for key, rows in frame[wanted].groupby(days[wanted], sort=True):
        content = rows.to_csv(index=False).encode()
        # atomic, and left alone when identical: a watcher never sees half a file
        landed.append(land_file(landing_dir, "counts", key, content, rows=len(rows)))
    return landed
