"""The prediction log: every served prediction appended durably, off the request path.

The service hands records to a deque; one writer thread appends them as JSON lines to
`<root>/<day>/<writer>.jsonl` (day = the flight's scheduled local day, the partition monitoring
reads) and flushes after each batch. A crash can lose at most the batch being written, and a
torn last line is skipped (and counted) by the reader, never misread.
"""

import atexit
import collections
import json
import os
import threading
import time
import uuid
from pathlib import Path

import pandas as pd


class PredictionLogWriter:
    def __init__(self, root: str | Path, flush_every_s: float = 0.2, max_queue: int = 100_000):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.flush_every_s = flush_every_s
        self.max_queue = max_queue
        # A deque, not a Queue: appending takes no lock and wakes no thread, so the request path
        # never waits on the writer; the writer wakes every flush_every_s and takes what is there.
        self._pending: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._files: dict[str, object] = {}
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        # A stopping service (SIGTERM) drains what it answered before it exits.
        atexit.register(self.close)

    def append(self, day: str, record: dict) -> None:
        """Never blocks the request: if the writer falls max_queue records behind, count the
        drop."""
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
        self._drain()
        self._close_files()

    def _drain(self) -> None:
        batch = []
        while self._pending:
            batch.append(self._pending.popleft())
        if batch:
            self._write(batch)

    def _write(self, batch: list) -> None:
        touched = set()
        for i, (day, record) in enumerate(batch):
            self._file(day).write(json.dumps(record, default=str) + "\n")
            touched.add(day)
            if i % 8 == 7:
                time.sleep(0)  # let a request thread have the interpreter between records
        for day in touched:
            self._files[day].flush()
            os.fsync(self._files[day].fileno())
        self.written += len(batch)

    def _close_files(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Drain what is queued, then stop."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


def read_day(root: str | Path, day: str) -> tuple[pd.DataFrame, int]:
    """All records logged for a day, and the number of torn lines skipped."""
    folder = Path(root) / day
    records, torn = [], 0
    for path in sorted(folder.glob("*.jsonl")) if folder.exists() else []:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    torn += 1
    return pd.json_normalize(records) if records else pd.DataFrame(), torn
