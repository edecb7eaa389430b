"""Which of a table's partition files can hold rows stamped in an interval.

Online materialization reads one or two days of a view, but a view's source is every partition
file of its table (`<table>/*.parquet`): DuckDB opened all 364 files of a year to find them, two
thirds of the materialization's time (issue 27). Each file's Parquet footer already holds the
minimum and maximum of its event-time column; they are read once per file and remembered in
`_event_times.json` beside the files, keyed by the file's size, modification time (nanoseconds)
and inode (the lake replaces a partition by renaming a new file over it: a new inode), so a
rewritten partition is read again and a stale entry is never used. The index is a cache:
losing it, or two processes writing it at once (the last rename wins, each entry checked on
use), costs only reading footers again.

Local folders only: on the object store a modification time has a second's resolution, too coarse
to tell a rewrite apart, and the whole glob is read as before (`files_with_events_in` -> None).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

INDEX_NAME = "_event_times.json"
_UNKNOWN = None  # a file without usable statistics: always read


def _micros(value) -> int | None:
    """A Parquet statistic of a timestamp column as microseconds since the epoch, UTC (a naive
    value is UTC, as DuckDB and Feast read it)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return None


def _range_of(path: Path, column: str) -> list[int | None] | None:
    """[first, last] event time of the file's `column` (empty list: the file has no rows), or
    None where its footer cannot tell."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    if meta.num_rows == 0:
        return []
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if column not in names:
        return _UNKNOWN
    index = names.index(column)
    lows, highs = [], []
    for group in range(meta.num_row_groups):
        chunk = meta.row_group(group).column(index)
        stats = chunk.statistics
        if chunk.num_values == 0:
            continue
        if stats is None or not stats.has_min_max:
            return _UNKNOWN
        low, high = _micros(stats.min), _micros(stats.max)
        if low is None or high is None:
            return _UNKNOWN
        lows.append(low)
        highs.append(high)
    return [min(lows), max(highs)] if lows else []


def _load(index_path: Path) -> dict:
    try:
        return json.loads(index_path.read_text())
    except (OSError, ValueError):
        return {}  # absent or torn: rebuilt from the footers


def _save(index_path: Path, index: dict) -> None:
    writer = f"{os.getpid()}.{threading.get_ident()}"  # two writers never share a temporary
    temporary = index_path.with_name(f".{index_path.name}.{writer}.tmp")
    try:
        temporary.write_text(json.dumps(index, separators=(",", ":")))
        os.replace(temporary, index_path)  # readers see the old index or the new one
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only lake: the index is only a cache


def files_with_events_in(
    source: str, column: str, start: datetime, end: datetime
) -> list[str] | None:
    """The files of a `<folder>/*.parquet` source that can hold a row with `column` in
    [start, end] (a file whose footer cannot tell is always among them), in name order; None
    where this cannot be told (the object store, another pattern): read the whole source."""
    if source.startswith("s3://") or not source.endswith("/*.parquet"):
        return None
    folder = Path(source[: -len("/*.parquet")])
    if not folder.is_dir():
        return None
    index_path = folder / INDEX_NAME
    index = _load(index_path)
    known = index.get(column, {})
    fresh, changed = {}, False
    with os.scandir(folder) as entries:
        files = sorted(
            (e.name, e.stat())
            for e in entries
            if e.name.endswith(".parquet") and not e.name.startswith(".") and e.is_file()
        )
    for name, stat in files:
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entry = known.get(name)
        if entry is not None and entry[:3] == key:
            fresh[name] = entry
            continue
        fresh[name] = [*key, _range_of(folder / name, column)]
        changed = True
    if changed or len(fresh) != len(known):
        _save(index_path, {**index, column: fresh})
    low, high = _micros(start), _micros(end)
    chosen = []
    for name, (*_, span) in fresh.items():
        if span is _UNKNOWN or (span and span[0] <= high and span[1] >= low):
            chosen.append(str(folder / name))
    return chosen
