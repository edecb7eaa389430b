"""Replay 2015-2016 hour by hour: one file of counts per UTC hour into the landing folder."""

from datetime import date
from pathlib import Path

import pandas as pd

from pipelines.platform.lib.landing import LandedFile
from pipelines.tasks.foot_traffic.source import hour_key, read_counts

FIRST_DAY = date(2014, 12, 31)  # 2015-01-01 00:00 in Melbourne is 13:00 UTC the day before
LAST_DAY = date(2016, 12, 31)


def replay_hours(landing_dir: Path, start: date, end: date) -> list[LandedFile]:
    """Drop the hour files of the UTC days [start, end] under <landing>/counts/<hour>.csv, as if
    each had just arrived; a file already there is rewritten only if its content differs."""
    if start > end:
        raise ValueError(f"replay start {start} is after its end {end}")
    if start < FIRST_DAY or end > LAST_DAY:
        raise ValueError(f"the counts cover {FIRST_DAY}..{LAST_DAY} (UTC); got {start}..{end}")
    frame = read_counts()
    days = pd.to_datetime(frame["date_time"], utc=True).dt.date
    wanted = frame[(days >= start) & (days <= end)]
    landed = []
    for key, rows in wanted.groupby(hour_key(wanted["date_time"]), sort=True):
        path = Path(landing_dir) / "counts" / f"{key}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        content = rows.to_csv(index=False).encode()
        if not path.exists() or path.read_bytes() != content:
            tmp = path.with_suffix(".csv.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)  # atomic: a watcher never sees half a file
        landed.append(LandedFile("counts", key, path, len(rows)))
    return landed
