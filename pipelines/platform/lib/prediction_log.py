"""The prediction log: every served prediction appended durably, off the request path.

On local disk each record is one JSON line (no bare NaN: a missing value is null) appended to
`<root>/<day>/<writer>.jsonl` (day = the flight's scheduled local day, the partition monitoring
reads) by one write() before the answer leaves: a crashed or killed process loses no record of
an answer it gave (the kernel holds the line); a writer thread fsyncs every flush interval, so
a machine crash can lose at most that interval. A torn last line is skipped (and counted) by the
reader, never misread.

On the object store (an s3:// root: the service's pod has no disk the monitoring pod can read)
S3 cannot append: each batch becomes one object `<root>/<day>/<writer>-<seq>.jsonl`, put under a
temporary key and renamed, so a reader sees whole batches only. Batches are gathered for
`remote_flush_s` there, to keep the object count low.
"""

from __future__ import annotations

import atexit
import collections
import json
import math
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.platform.lib.object_store import (
    filesystem_for,
    is_remote,
    store_for,
    unavailable_as_error,
    write_bytes_atomic,
)

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd


class PredictionLogWriter:
    def __init__(
        self,
        root: str | Path,
        flush_every_s: float | None = None,
        max_queue: int = 100_000,
        remote_flush_s: float = 2.0,
    ):
        self.remote = is_remote(str(root))
        self.root = str(root) if self.remote else Path(root)
        if self.remote:
            self._store = store_for(self.root)
            self._fs, self._base = filesystem_for(self.root)
            self._store.check()  # a service whose log cannot be written must not start
            self._seq = 0
        else:
            self.root.mkdir(parents=True, exist_ok=True)
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if flush_every_s is None:  # the environment can stretch it (a test of the final drain)
            flush_every_s = float(os.environ.get("FLIGHTLINE_PREDICTION_LOG_FLUSH_S", "0.2"))
        self.flush_every_s = remote_flush_s if self.remote else flush_every_s
        self.max_queue = max_queue
        self.failed_batches = 0
        # A deque, not a Queue: appending takes no lock and wakes no thread, so the request path
        # never waits on the writer; the writer wakes every flush_every_s and takes what is there.
        self._pending: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._files: dict[str, object] = {}
        self._fds: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        # A stopping service (SIGTERM) drains what it answered before it exits.
        atexit.register(self.close)

    def append(self, day: str, record: dict) -> None:
        """Local disk: the line is written (to the kernel) before this returns. Object store:
        queued, never blocking the request; max_queue records behind, the drop is counted."""
        if not self.remote:
            line = json_line(record).encode()
            with self._lock:
                if day not in self._fds:
                    folder = self.root / day
                    folder.mkdir(parents=True, exist_ok=True)
                    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                    self._fds[day] = os.open(folder / f"{self.name}.jsonl", flags, 0o644)
                os.write(self._fds[day], line)
                self._dirty.add(day)
                self.written += 1
            return
        if len(self._pending) >= self.max_queue:
            self.dropped += 1
            return
        self._pending.append((day, record))

    def _file(self, day: str):
        if day not in self._files:
            folder = self.root / day
            folder.mkdir(parents=True, exist_ok=True)
            self._files[day] = open(folder / f"{self.name}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        return self._files[day]

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every_s):
            self._drain()
            self._sync()
        self._drain()
        self._sync(close=True)
        self._close_files()

    def _sync(self, close: bool = False) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            fds = [self._fds[day] for day in dirty]
            if close:
                closing, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.fsync(fd)
        for fd in closing if close else ():
            os.close(fd)

    def _drain(self) -> None:
        batch = []
        while self._pending:
            batch.append(self._pending.popleft())
        if batch:
            self._write(batch)

    def _write(self, batch: list) -> None:
        if self.remote:
            return self._put(batch)
        touched = set()
        for i, (day, record) in enumerate(batch):
            self._file(day).write(json_line(record))
            touched.add(day)
            if i % 8 == 7:
                time.sleep(0)  # let a request thread have the interpreter between records
        for day in touched:
            self._files[day].flush()
            os.fsync(self._files[day].fileno())
        self.written += len(batch)

    def _put(self, batch: list) -> None:
        by_day: dict[str, list[str]] = {}
        for i, (day, record) in enumerate(batch):
            by_day.setdefault(day, []).append(json_line(record).rstrip("\n"))
            if i % 8 == 7:
                time.sleep(0)  # as in _write: a request thread gets the interpreter
        self._seq += 1
        for day, lines in by_day.items():
            key = f"{self._base}/{day}/{self.name}-{self._seq:06d}.jsonl"
            try:
                with unavailable_as_error(self._store):
                    write_bytes_atomic(self._fs, key, ("\n".join(lines) + "\n").encode())
                self.written += len(lines)
            except OSError as exc:  # the store is down: count the loss, keep serving
                self.failed_batches += 1
                self.dropped += len(lines)
                print(f"prediction log: {exc}", flush=True)

    def _close_files(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Drain what is queued, then stop."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


def _finite(value):
    """NaN and infinities as null: JSON has no token for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_line(record: dict) -> str:
    """One record as a JSON line; refuses (ValueError) rather than write a bare NaN."""
    return json.dumps(_finite(record), default=str, allow_nan=False) + "\n"


def read_day(root: str | Path, day: str) -> tuple[pd.DataFrame, int]:
    """All records logged for a day, and the number of torn lines skipped."""
    import pandas as pd
    import pyarrow.fs as pafs

    fs, base = filesystem_for(str(root))
    records, torn = [], 0
    with unavailable_as_error(store_for(str(root))):
        listing = fs.get_file_info(pafs.FileSelector(f"{base}/{day}", allow_not_found=True))
        for path in sorted(i.path for i in listing if i.path.endswith(".jsonl")):
            with fs.open_input_stream(path) as stream:
                for line in stream.read().decode("utf-8").splitlines():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        torn += 1
    return pd.json_normalize(records) if records else pd.DataFrame(), torn


def logged_days(root: str | Path) -> list[str]:
    """The days that have a log folder, in order."""
    import pyarrow.fs as pafs

    fs, base = filesystem_for(str(root))
    with unavailable_as_error(store_for(str(root))):
        listing = fs.get_file_info(pafs.FileSelector(str(base), allow_not_found=True))
    return sorted(i.base_name for i in listing if i.type == pafs.FileType.Directory)
