"""The landing folder: writing day files into it (a task's replay), and reading them back with a
clear error for every way a file can be bad.

The landing root is a local folder (embedded default) or s3://<bucket>/landing/<task> in the
object store (production: the replay, the sensor and ingestion run in different pods). Both are
reached through the same pyarrow filesystem (object_store.filesystem_for): a file lands under a
temporary name and is renamed, so a reader or the sensor never sees half a file.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pipelines.platform.lib.object_store import (
    filesystem_for,
    store_for,
    unavailable_as_error,
    under,
    write_bytes_atomic,
)

# pandas and pyarrow are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.fs as pafs

SUPPORTED_SUFFIXES = (".csv", ".parquet")


class LandingError(ValueError):
    """A landed file cannot be ingested; the message says which file and why."""


@dataclass(frozen=True)
class LandedFile:
    """A file a task's replay dropped into its landing folder."""

    table: str
    partition: str
    path: Path | str  # a local path, or an s3:// URI
    rows: int


@dataclass(frozen=True)
class LandedDay:
    table: str
    day: str
    path: Path | str  # a local path, or an s3:// URI
    sha256: str
    frame: pd.DataFrame
    # The bytes that were hashed and parsed: the archive keeps exactly these.
    content: bytes = field(repr=False)

    @property
    def suffix(self) -> str:
        return suffix_of(self.path)


def suffix_of(path: Path | str) -> str:
    return PurePosixPath(str(path)).suffix


def land_file(
    landing_root: Path | str,
    table: str,
    key: str,
    content: bytes,
    *,
    rows: int,
    suffix: str = ".csv",
    unless_identical: bool = True,
) -> LandedFile:
    """Drop one partition's file of a table into a landing root, atomically.

    `unless_identical`: a file already there with the same bytes is left alone, so a replay is
    idempotent and does not look like a correction to the sensor watching the folder.
    """
    root = str(landing_root)
    fs, base = filesystem_for(root)
    target = f"{base}/{table}/{key}{suffix}"
    with unavailable_as_error(store_for(root)):
        if not (unless_identical and _holds(fs, target, content)):
            write_bytes_atomic(fs, target, content)
    return LandedFile(table, key, under(landing_root, table, f"{key}{suffix}"), rows)


def _holds(fs: pafs.FileSystem, path: str, content: bytes) -> bool:
    import pyarrow.fs as pafs

    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File or info.size != len(content):
        return False
    with fs.open_input_stream(path) as handle:
        return handle.read() == content


def find_day_file(landing_dir: Path | str, table: str, day: str) -> Path | str:
    root = str(landing_dir)
    fs, base = filesystem_for(root)
    with unavailable_as_error(store_for(root)):
        name = _find_day_name(fs, f"{base}/{table}", landing_dir, table, day)
    return under(landing_dir, table, name)


def _find_day_name(fs: pafs.FileSystem, folder: str, root: Path | str, table: str, day: str) -> str:
    import pyarrow.fs as pafs

    candidates = [f"{day}{suffix}" for suffix in SUPPORTED_SUFFIXES]
    infos = fs.get_file_info([f"{folder}/{name}" for name in candidates])
    present = [n for n, i in zip(candidates, infos, strict=True) if i.type == pafs.FileType.File]
    if not present:
        listing = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        others = sorted(i.base_name for i in listing if i.base_name.startswith(f"{day}."))
        hint = f" (found {', '.join(others)}: only .csv or .parquet are read)" if others else ""
        raise LandingError(f"no {table} file for {day} in {under(root, table)}{hint}")
    if len(present) > 1:
        raise LandingError(
            f"{table} for {day} landed twice ({', '.join(present)}); "
            "keep one so the partition has a single source of truth"
        )
    return present[0]


def read_bytes(path: Path | str) -> bytes:
    """The whole content of a landed file (a local path or an s3:// URI)."""
    fs, target = filesystem_for(str(path))
    with unavailable_as_error(store_for(str(path))), fs.open_input_stream(target) as handle:
        return handle.read()


def parse_day_file(path: Path | str, content: bytes) -> pd.DataFrame:
    """Parse a landed file as it is: types are checked by validation, not coerced here."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not content:
        raise LandingError(f"{path} is empty (0 bytes)")
    parquet = suffix_of(path) == ".parquet"
    try:
        if parquet:
            return pq.read_table(pa.BufferReader(content)).to_pandas()
        return pd.read_csv(
            io.BytesIO(content), na_values=["NA"], keep_default_na=True, low_memory=False
        )
    except (
        pa.ArrowInvalid,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
    ) as exc:
        kind = "Parquet" if parquet else "CSV"
        raise LandingError(f"{path} is not a readable {kind} file: {exc}") from exc


def read_landed_day(landing_dir: Path | str, table: str, day: str) -> LandedDay:
    """Read a day's file once: the bytes hashed are the bytes parsed (and archived)."""
    path = find_day_file(landing_dir, table, day)
    content = read_bytes(path)
    frame = parse_day_file(path, content)
    return LandedDay(table, day, path, hashlib.sha256(content).hexdigest(), frame, content)


def archive_landed_file(landed: LandedDay, archive_dir: Path | str) -> Path | str:
    """Keep an immutable copy of every distinct file that landed, named by content hash.

    A corrected file re-landed for the same day never overwrites what was ingested before.
    The archive is a folder, or s3://<bucket>/archive/... in the object store (production: the
    ingesting pod's disk is gone after the step).
    """
    import pyarrow.fs as pafs

    name = f"{landed.sha256[:16]}{landed.suffix}"
    root = str(archive_dir)
    fs, base = filesystem_for(root)
    target = f"{base}/{landed.table}/{landed.day}/{name}"
    with unavailable_as_error(store_for(root)):
        if fs.get_file_info(target).type != pafs.FileType.File:
            write_bytes_atomic(fs, target, landed.content)
    return under(archive_dir, landed.table, landed.day, name)
