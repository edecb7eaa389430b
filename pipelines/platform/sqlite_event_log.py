"""The embedded profile's event log: Dagster's own SQLite event log (same files, same schema, same
readers), with its connections kept open and commits that do not wait on the disk.

Why: Dagster's `SqliteEventLogStorage` builds a SQLAlchemy engine, opens a connection, commits
with a full fsync and disposes the engine for every event, and an asset event writes twice (its
run's shard and the index shard). A ranged run of a year stores ~14,000 events (a planned event
and a materialization per partition and asset, a check evaluation per partition and check):
~20-35 ms each, most of the Dagster side of `benchmarks/pipeline_overhead.py`. Here each shard keeps one engine and its pool,
and each connection runs with `synchronous=NORMAL`: in WAL mode (Dagster sets it) a commit is then
durable against a crashed process, and only an OS crash or power loss may drop the last commits
(never corrupting the file), which is SQLite's recommended setting for WAL.

`dagster.embedded.yaml` selects it (`make setup` writes it into $DAGSTER_HOME/dagster.yaml unless
the production profile's PostgreSQL storage is configured). Private API: it overrides
`SqliteEventLogStorage._connect`, the one place the storage opens a database (the class comes
from compat.py, which says what to re-check on each dagster upgrade;
`tests/platform/test_event_log.py` covers it).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as db
import yaml
from dagster import Field, StringSource

from pipelines.platform.compat import dagster_sqlite_event_log
from pipelines.platform.lib.settings import PROJECT_ROOT

SqliteEventLogStorage, INDEX_SHARD_NAME, SQLITE_BUSY_TIMEOUT_SECONDS = dagster_sqlite_event_log()

# Shards with an open engine: the index shard and the runs being written or read. A long-lived
# process (the webserver, the daemon) reads many runs: the least recently used is closed.
OPEN_SHARDS = 16


def _commit_without_fsync(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log (one database per run plus the index) whose engines outlive an event.

    `base_dir` defaults to $DAGSTER_HOME/history/runs, where Dagster's default event log lives:
    switching an existing instance to it keeps its history."""

    def __init__(self, base_dir: str | None = None, inst_data=None):
        if base_dir is None:
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise ValueError(
                    "PooledSqliteEventLogStorage: give base_dir or set DAGSTER_HOME "
                    "(its event logs live in $DAGSTER_HOME/history/runs)"
                )
            base_dir = os.path.join(home, "history", "runs")
        self._engines: OrderedDict[str, db.Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._engines_lock = threading.Lock()
        self._tables_present: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> db.Engine:
        with self._engines_lock:
            if self._engines_pid != os.getpid():
                # A forked child must not use its parent's connections: drop them unclosed.
                for engine in self._engines.values():
                    engine.dispose(close=False)
                self._engines.clear()
                self._engines_pid = os.getpid()
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            db.event.listen(engine, "connect", _commit_without_fsync)
            self._engines[shard] = engine
            while len(self._engines) > OPEN_SHARDS:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                sqlite = conn.connection.dbapi_connection
                changes = sqlite.total_changes
                with conn.begin():
                    yield conn
                wrote = sqlite.total_changes != changes
        if wrote and shard != INDEX_SHARD_NAME:
            self._signal_watchers(shard)

    def has_table(self, table_name: str) -> bool:
        """Dagster's asks through a new engine on every asset event (whether the tags table
        exists). Tables are only ever added (by `upgrade`): a table once seen is remembered. Not
        through `_connect`: it is asked inside an index transaction, which holds `_db_lock`."""
        if table_name in self._tables_present:
            return True
        with self._engine(INDEX_SHARD_NAME).connect() as conn:
            present = bool(conn.dialect.has_table(conn, table_name))
        if present:
            self._tables_present.add(table_name)
        return present

    def _signal_watchers(self, run_id: str) -> None:
        """Dagster's run watchers (the UI's live run log) wait for the run's .db file to change.
        With a closing connection, SQLite checkpoints its WAL into the file at once; an open one
        leaves new events in the WAL. A write touches the file instead (a reader never does:
        the watcher reads when it is signalled)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path_for_shard(run_id))

    def wipe(self) -> None:
        self._close_all()
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()

    def _close_all(self) -> None:
        with self._engines_lock:
            engines, self._engines = list(self._engines.values()), OrderedDict()
            self._tables_present = set()
        for engine in engines:
            engine.dispose()


def embedded_profile_yaml() -> str:
    """$DAGSTER_HOME/dagster.yaml as `make setup` writes it for the embedded profile."""
    return "\n".join(
        (PROJECT_ROOT / name).read_text() for name in ("dagster.yaml", "dagster.embedded.yaml")
    )


def embedded_overrides(dagster_home: str | Path) -> dict:
    """The embedded profile's storage as `instance_for_test(overrides=...)` takes it, with its
    event logs under `dagster_home` (a test's or a benchmark's own instance)."""
    doc = yaml.safe_load((PROJECT_ROOT / "dagster.embedded.yaml").read_text())
    storage = doc["event_log_storage"]
    base_dir = str(Path(dagster_home) / "history" / "runs")
    return {"event_log_storage": {**storage, "config": {"base_dir": base_dir}}}
