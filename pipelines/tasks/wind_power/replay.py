"""Replay 2014-2015 day by day: one file of SCADA readings per Paris day into the landing folder
(the farm exports daily; each row still says which 10 minutes it averages)."""

from datetime import date
from pathlib import Path

from pipelines.platform.lib.landing import LandedFile, land_file
from pipelines.tasks.wind_power.source import day_key, read_scada

FIRST_DAY = date(2014, 1, 1)
LAST_DAY = date(2015, 12, 31)


def replay_days(landing_dir: Path | str, start: date, end: date) -> list[LandedFile]:
    """Drop the day files of [start, end] under <landing>/scada/<YYYY-MM-DD>.csv as exported
    (its defects included), as if each had just arrived; a file already there is rewritten only
    if its content differs."""
    if start > end:
        raise ValueError(f"replay start {start} is after its end {end}")
    if start < FIRST_DAY or end > LAST_DAY:
        raise ValueError(f"the SCADA export covers {FIRST_DAY}..{LAST_DAY}; got {start}..{end}")
    frame = read_scada()
    days = day_key(frame["Date_time"])
    wanted = days.between(start.isoformat(), end.isoformat())
    landed = []
    for key, rows in frame[wanted].groupby(days[wanted], sort=True):
        content = rows.to_csv(index=False).encode()
        # atomic, and left alone when identical: a watcher never sees half a file
        landed.append(land_file(landing_dir, "scada", key, content, rows=len(rows)))
    return landed
