"""Reading day files from the landing folder, with a clear error for every way a file can be bad."""

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.platform.lib.object_store import (
    filesystem_for,
    is_remote,
    store_for,
    unavailable_as_error,
    upload_file,
)

SUPPORTED_SUFFIXES = (".csv", ".parquet")


class LandingError(ValueError):
    """A landed file cannot be ingested; the message says which file and why."""


@dataclass(frozen=True)
class LandedFile:
    """A file a task's replay dropped into its landing folder."""

    table: str
    partition: str
    path: Path
    rows: int


@dataclass(frozen=True)
class LandedDay:
    table: str
    day: str
    path: Path
    sha256: str
    frame: pd.DataFrame


def find_day_file(landing_dir: Path, table: str, day: str) -> Path:
    folder = Path(landing_dir) / table
    candidates = [folder / f"{day}{suffix}" for suffix in SUPPORTED_SUFFIXES]
    present = [p for p in candidates if p.exists()]
    if not present:
        others = sorted(p.name for p in folder.glob(f"{day}.*")) if folder.exists() else []
        hint = f" (found {', '.join(others)}: only .csv or .parquet are read)" if others else ""
        raise LandingError(f"no {table} file for {day} in {folder}{hint}")
    if len(present) > 1:
        raise LandingError(
            f"{table} for {day} landed twice ({', '.join(p.name for p in present)}); "
            "keep one so the partition has a single source of truth"
        )
    return present[0]


def read_day_file(path: Path) -> pd.DataFrame:
    """Parse a landed file as it is: types are checked by validation, not coerced here."""
    if path.stat().st_size == 0:
        raise LandingError(f"{path} is empty (0 bytes)")
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path).to_pandas()
        return pd.read_csv(path, na_values=["NA"], keep_default_na=True, low_memory=False)
    except (
        pa.ArrowInvalid,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
    ) as exc:
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise LandingError(f"{path} is not a readable {kind} file: {exc}") from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_landed_day(landing_dir: Path, table: str, day: str) -> LandedDay:
    path = find_day_file(landing_dir, table, day)
    return LandedDay(table, day, path, sha256_of(path), read_day_file(path))


def archive_landed_file(landed: LandedDay, archive_dir: Path | str) -> Path | str:
    """Keep an immutable copy of every distinct file that landed, named by content hash.

    A corrected file re-landed for the same day never overwrites what was ingested before.
    The archive is a folder, or s3://<bucket>/archive/... in the object store (production: the
    ingesting pod's disk is gone after the step).
    """
    relative = f"{landed.table}/{landed.day}/{landed.sha256[:16]}{landed.path.suffix}"
    if is_remote(str(archive_dir)):
        uri = f"{str(archive_dir).rstrip('/')}/{relative}"
        fs, path = filesystem_for(uri)
        with unavailable_as_error(store_for(uri)):
            if fs.get_file_info(path).type == pafs.FileType.File:
                return uri
        return upload_file(str(archive_dir), relative, landed.path)
    target = Path(archive_dir) / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(landed.path, target)
    return target
