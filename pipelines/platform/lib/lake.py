"""The lake: one Parquet file per asset and partition, on a local path or an object store URI."""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.platform.lib.object_store import (
    filesystem_for,
    store_for,
    unavailable_as_error,
    write_bytes_atomic,
)

# pandas and pyarrow are imported inside the functions that use them: the code location imports
# this module and must load without them (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

PARTITION_COLUMN = "partition_date"


class MissingPartitionError(FileNotFoundError):
    pass


@dataclass
class Lake:
    root: str

    def __post_init__(self) -> None:
        # A folder, or s3://<bucket>/<prefix> in the object store the environment names.
        self._store = store_for(self.root)
        self._fs, self._base = filesystem_for(self.root)

    def _io(self):
        """Transport failures of the object store become one error naming its endpoint."""
        return unavailable_as_error(self._store)

    def path(self, table: str, partition: str | None = None) -> str:
        name = f"{partition}.parquet" if partition else "data.parquet"
        return f"{self._base}/{table}/{name}"

    def glob(self, table: str) -> str:
        """A path pattern that DuckDB (Feast's offline store) reads as one table."""
        return f"{self.root.rstrip('/')}/{table}/*.parquet"

    def write(self, table: str, frame: pd.DataFrame, partition: str | None = None) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.path(table, partition)
        arrow = _strings_for_nulls(pa.Table.from_pandas(frame, preserve_index=False))
        sink = pa.BufferOutputStream()
        pq.write_table(arrow, sink, coerce_timestamps="us", allow_truncated_timestamps=True)
        with self._io():
            # A temporary name, then a rename (a copy on S3): readers, which list *.parquet,
            # never see a half-written partition, and a failed write leaves the old one.
            write_bytes_atomic(self._fs, path, sink.getvalue().to_pybytes())
        return self.uri(path)

    def uri(self, path: str) -> str:
        """A path of this lake as others name it (s3://... on the object store)."""
        return f"s3://{path}" if self._store is not None else path

    def write_file(self, table: str, partition: str, suffix: str, data: bytes) -> str:
        """A non-table file (an HTML report) beside a table's partitions."""
        path = f"{self._base}/{table}/{partition}{suffix}"
        with self._io():
            write_bytes_atomic(self._fs, path, data)
        return self.uri(path)

    def read_file(self, table: str, partition: str, suffix: str) -> bytes:
        path = f"{self._base}/{table}/{partition}{suffix}"
        with self._io(), self._fs.open_input_stream(path) as stream:
            return stream.read()

    def json_path(self, name: str) -> str:
        return f"{self._base}/{name}/data.json"

    def write_json(self, name: str, document: dict) -> str:
        """Small documents (model references, evaluation reports) beside the tables."""
        path = self.json_path(name)
        with self._io():
            write_bytes_atomic(self._fs, path, json.dumps(document, indent=1, default=str).encode())
        return self.uri(path)

    def read_json(self, name: str) -> dict:
        path = self.json_path(name)
        if not self._is_file(path):
            raise MissingPartitionError(
                f"{name} is not in the lake at {self.uri(path)}; materialize it first"
            )
        with self._io(), self._fs.open_input_stream(path) as stream:
            return json.loads(stream.read())

    def _is_file(self, path: str) -> bool:
        import pyarrow.fs as pafs

        with self._io():
            return self._fs.get_file_info(path).type == pafs.FileType.File

    def has_json(self, name: str) -> bool:
        return self._is_file(self.json_path(name))

    def write_partitions(
        self, table: str, frame: pd.DataFrame, partitions: Iterable[str]
    ) -> dict[str, int]:
        """Split a frame on its partition column; a partition with no rows still gets its (empty) file."""
        rows = {}
        groups = dict(tuple(frame.groupby(PARTITION_COLUMN, sort=False))) if len(frame) else {}
        for partition in partitions:
            part = groups.get(partition, frame.iloc[0:0])
            self.write(table, part, partition)
            rows[partition] = len(part)
        return rows

    def partitions(self, table: str) -> list[str]:
        """The partitions stored for a table, in order."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(f"{self._base}/{table}", allow_not_found=True)
        with self._io():
            names = [info.base_name for info in self._fs.get_file_info(selector)]
        return sorted(
            n.removesuffix(".parquet")
            for n in names
            if n.endswith(".parquet") and n != "data.parquet"
        )

    def exists(self, table: str, partition: str | None = None) -> bool:
        return self._is_file(self.path(table, partition))

    def row_count(self, table: str, partition: str | None = None) -> int:
        """Rows of a stored partition, from the Parquet footer (no data read)."""
        import pyarrow.parquet as pq

        with self._io():
            return pq.ParquetFile(
                self.path(table, partition), filesystem=self._fs
            ).metadata.num_rows

    def read(self, table: str, partition: str | None = None) -> pd.DataFrame:
        if not self.exists(table, partition):
            where = f" partition {partition}" if partition else ""
            raise MissingPartitionError(
                f"{table}{where} is not in the lake at {self.uri(self.path(table, partition))}"
            )
        with self._io():
            return self._read_arrow(self.path(table, partition)).to_pandas()

    def _read_arrow(self, path: str) -> pa.Table:
        import pyarrow.parquet as pq

        # ParquetFile skips the dataset machinery of read_table: a third of the cost per file.
        with self._fs.open_input_file(path) as source:
            return pq.ParquetFile(source).read()

    def read_partitions(
        self, table: str, partitions: Iterable[str], allow_missing: bool = False
    ) -> pd.DataFrame:
        import pandas as pd
        import pyarrow as pa

        partitions = list(partitions)
        stored = set(self.partitions(table))  # one listing, not a request per day
        present = [p for p in partitions if p in stored]
        missing = [p for p in partitions if p not in set(present)]
        if missing and not allow_missing:
            raise MissingPartitionError(
                f"{table}: partitions {_summarise(missing)} are not in the lake; materialize them first"
            )
        if not present:
            return pd.DataFrame()
        # Arrow reads files in parallel threads and converts to pandas once: a year of days is
        # several times faster than 365 reads, conversions and a pandas concat.
        with self._io(), ThreadPoolExecutor(max_workers=8) as pool:
            tables = list(pool.map(lambda p: self._read_arrow(self.path(table, p)), present))
        tables = [t for t in tables if t.num_rows] or tables[:1]
        try:
            combined = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # types pandas can still reconcile
            return pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        return combined.to_pandas()


def _strings_for_nulls(table: pa.Table) -> pa.Table:
    import pyarrow as pa

    # An empty (or all-null) text column has Arrow type null; readers that union many files
    # (DuckDB) would then guess a numeric type for it. Text is what such columns hold here.
    for i, f in enumerate(table.schema):
        if pa.types.is_null(f.type):
            table = table.set_column(
                i, pa.field(f.name, pa.string()), table.column(i).cast(pa.string())
            )
    return table


def _summarise(keys: list[str]) -> str:
    return ", ".join(keys) if len(keys) <= 4 else f"{keys[0]} .. {keys[-1]} ({len(keys)} days)"
