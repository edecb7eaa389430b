"""What in the landing folder is not ingested yet: the landing sensor's plain logic.

A partition (a "day" below; an hour for an hourly task) is ready when every landing table of
the task has its file. A day is new when nothing of it was ingested, replaced when what was
ingested (the content hashes the ingestion recorded in the instance, whoever launched it) differs
from what lies there now, so touching a file without changing it re-runs nothing while a
corrected file re-runs its day. A file whose name is not a partition of the task is reported as
stray and left alone. The sensor's cursor only caches each file's hash by (size, mtime): an empty
cursor costs one hash of every file, never a re-run.

The landing root is a folder or s3://<bucket>/landing/<task>: one listing per table through
pyarrow's filesystem (on S3, mtime is the object's LastModified, whole seconds), and a file is
read only when its (size, mtime) moved. Whole seconds are coarse: a same-size correction within
the second of the file it corrects would keep (size, mtime), so a remote file younger than
UNSETTLED_S is recorded without its mtime and hashed again at the next scan (git's "racily
clean" rule).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pipelines.platform.lib.landing import SUPPORTED_SUFFIXES
from pipelines.platform.lib.object_store import filesystem_for, store_for, unavailable_as_error

# pyarrow is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pyarrow.fs as pafs

# Covers the store's whole-second timestamps and some clock skew between a pod and the store.
UNSETTLED_S = 5
# The metadata key of the ingestion's per-partition observation: the landed file's content hash.
LANDED_SHA256 = "landed_sha256"


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha256: str


@dataclass
class LandingChanges:
    new_days: list[str] = field(default_factory=list)
    replaced_days: list[str] = field(default_factory=list)
    incomplete_days: dict[str, list[str]] = field(default_factory=dict)  # day -> missing tables
    ambiguous: list[str] = field(default_factory=list)  # a day landed as .csv and .parquet
    stray: list[str] = field(default_factory=list)  # files named like no partition of the task
    in_flight: list[str] = field(default_factory=list)  # not ingested yet, but a run has them
    state: dict[str, FileState] = field(default_factory=dict)  # the new cursor's content

    @property
    def nothing_new(self) -> bool:
        return not self.new_days and not self.replaced_days

    def new_ranges(self, next_key: Callable[[str], str] | None = None) -> list[tuple[str, str]]:
        """Consecutive new days grouped: a gap of several days becomes one backfill."""
        return contiguous_ranges(self.new_days, next_key)

    def fingerprint(self, day: str) -> str:
        """One hash of a day's files: the run key of a (re-)run of that day."""
        return fingerprint_of(
            {_table_of(key): v.sha256 for key, v in self.state.items() if _day_of(key) == day}
        )


def fingerprint_of(digests: dict[str, str]) -> str:
    """A day's fingerprint from its tables' content hashes (table -> sha256)."""
    return "-".join(digests[table][:12] for table in sorted(digests))


def load_state(cursor: str | None) -> dict[str, FileState]:
    if not cursor:
        return {}
    return {key: FileState(**value) for key, value in json.loads(cursor)["files"].items()}


def dump_state(state: dict[str, FileState]) -> str:
    return json.dumps({"files": {k: v.__dict__ for k, v in sorted(state.items())}})


def _day_of(key: str) -> str:
    return Path(key).stem


def _table_of(key: str) -> str:
    return key.split("/", 1)[0]


def _fingerprints(state: dict[str, FileState]) -> dict[str, str]:
    by_day: dict[str, dict[str, str]] = {}
    for key, value in state.items():
        by_day.setdefault(_day_of(key), {})[_table_of(key)] = value.sha256
    return {day: fingerprint_of(digests) for day, digests in by_day.items()}


def scan_landing(
    landing_dir: str | Path,
    previous: dict[str, FileState],
    tables: Sequence[str],
    ingested: dict[str, str] | Callable[[list[str]], dict[str, str]] | None = None,
    is_partition: Callable[[str], bool] | None = None,
    in_flight: set[str] | frozenset[str] = frozenset(),
) -> LandingChanges:
    """`previous`: the cached file states (the cursor). `ingested`: day -> fingerprint of what
    the instance ingested, or a function giving it for the complete days found (None: what
    `previous` holds, for callers without an instance).
    `is_partition`: whether a file's name is a partition of the task. `in_flight`: days a queued
    or running run will ingest (not requested again)."""
    root = str(landing_dir)
    fs, base = filesystem_for(root)
    store = store_for(root)
    # Local mtimes have nanoseconds: the embedded profile trusts them as it always has.
    settled_before = time.time_ns() - UNSETTLED_S * 10**9 if store else None
    with unavailable_as_error(store):
        changes = _scan(fs, base, previous, tables, settled_before, is_partition)
    current = _fingerprints(changes.state)
    if ingested is None:
        done = _fingerprints(previous)
    elif callable(ingested):
        done = ingested(sorted(current))
    else:
        done = ingested
    for day in sorted(current):
        if done.get(day) == current[day]:
            continue
        if day in in_flight:
            changes.in_flight.append(day)
        elif day in done:
            changes.replaced_days.append(day)
        else:
            changes.new_days.append(day)
    return changes


def stray_files(
    landing_dir: str | Path, tables: Sequence[str], is_partition: Callable[[str], bool]
) -> list[str]:
    """Files in the landing folder named like no partition of the task (`2013-02-30.csv`,
    `latest.csv`): listed, never hashed or read, for an alert that stays open until they go."""

    root = str(landing_dir)
    fs, base = filesystem_for(root)
    with unavailable_as_error(store_for(root)):
        return [
            f"{table}/{info.base_name}"
            for table, info, name in _day_files(fs, base, tables)
            if not is_partition(name.stem)
        ]


def _day_files(fs: pafs.FileSystem, base: str, tables: Sequence[str]):
    """(table, file info, name) of every file a table's folder holds in a supported format, in
    name order; `.tmp-*` files of a write in progress and other names are not day files."""
    import pyarrow.fs as pafs

    for table in tables:
        listing = fs.get_file_info(pafs.FileSelector(f"{base}/{table}", allow_not_found=True))
        for info in sorted(listing, key=lambda i: i.base_name):
            name = PurePosixPath(info.base_name)
            if name.suffix in SUPPORTED_SUFFIXES and info.type == pafs.FileType.File:
                yield table, info, name


def _sha256(fs: pafs.FileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _scan(
    fs: pafs.FileSystem,
    base: str,
    previous: dict[str, FileState],
    tables: Sequence[str],
    settled_before: int | None,
    is_partition: Callable[[str], bool] | None,
) -> LandingChanges:
    state: dict[str, FileState] = {}
    tables_by_day: dict[str, set[str]] = {}
    changes = LandingChanges()
    for table, info, name in _day_files(fs, base, tables):
        key = f"{table}/{info.base_name}"
        if is_partition is not None and not is_partition(name.stem):
            changes.stray.append(key)
            continue
        size, mtime_ns = info.size, info.mtime_ns or 0
        known = previous.get(key)
        if known and (known.size, known.mtime_ns) == (size, mtime_ns):
            state[key] = known
        else:
            state[key] = FileState(size, mtime_ns, _sha256(fs, info.path))
        if settled_before is not None and mtime_ns >= settled_before:
            state[key] = FileState(size, 0, state[key].sha256)  # hash it again next time
        day = name.stem
        if table in tables_by_day.setdefault(day, set()):
            changes.ambiguous.append(f"{table}/{day}")
        tables_by_day[day].add(table)
    for day in sorted(tables_by_day):
        missing = sorted(set(tables) - tables_by_day[day])
        if missing:
            changes.incomplete_days[day] = missing
    # An incomplete day is not recorded yet: when its last table lands, it is new.
    changes.state = {k: v for k, v in state.items() if _day_of(k) not in changes.incomplete_days}
    return changes


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def contiguous_ranges(
    days: list[str], next_key: Callable[[str], str] | None = None
) -> list[tuple[str, str]]:
    """`next_key`: the partition after a key (default: the next calendar day)."""
    following = next_key or _next_day
    ranges: list[tuple[str, str]] = []
    for day in sorted(days):
        if ranges and following(ranges[-1][1]) == day:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges
